"""`sync-train`: the main job on the built-in synthetic data, and (as they land) the training
and evaluation commands."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click


@click.group()
def main() -> None:
    """Self-supervised multi-view synchronization learning for 3D human pose."""


@main.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(file_okay=False),
              help="everything the demo makes goes here")
@click.option("--frames", default=250, show_default=True, help="frames per synthetic sequence")
@click.option("--scale", default=0.5, show_default=True, help="video resolution relative to 1000 px")
@click.option("--workers", default=0, help="processes (0: one per core)")
def demo(out, frames, scale, workers):
    """The main job on the built-in synthetic data: synth -> preview. Rerun resumes."""
    from h36m_prep.preview import preview_grid
    from h36m_prep.synth.dataset import SynthConfig, write_dataset

    out = Path(out)
    t0 = time.perf_counter()
    click.echo(f"[1/2] synthetic dataset -> {out / 'raw'}")
    try:
        report = write_dataset(out / "raw", SynthConfig(frames=frames, scale=scale), workers=workers)
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(f"      {report['videos']} videos, {report['sequences']} sequences, "
               f"{report['bytes'] / 1e6:.0f} MB")
    click.echo("[2/2] previews: one frame of every camera with the projected skeleton")
    for subject, name in (("S1", "preview_train.png"), ("S9", "preview_test.png")):
        click.echo(f"      {preview_grid(out / 'raw', out / name, subject=subject, action='Walking')}")
    click.echo(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
