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
    """The main job on the built-in synthetic data: synth -> previews -> store. Rerun resumes."""
    from h36m_prep.build import BuildConfig, build
    from h36m_prep.inspect_store import verify
    from h36m_prep.preview import preview_grid, store_preview
    from h36m_prep.synth.dataset import SynthConfig, write_dataset

    out = Path(out)
    t0 = time.perf_counter()
    click.echo(f"[1/3] synthetic dataset -> {out / 'raw'}")
    try:
        report = write_dataset(out / "raw", SynthConfig(frames=frames, scale=scale), workers=workers)
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(f"      {report['videos']} videos, {report['sequences']} sequences, "
               f"{report['bytes'] / 1e6:.0f} MB; {report['frames_written']} frames rendered now")
    click.echo("[2/3] previews: one frame of every camera with the projected skeleton")
    for subject, name in (("S1", "preview_train.png"), ("S9", "preview_test.png")):
        click.echo(f"      {preview_grid(out / 'raw', out / name, subject=subject, action='Walking')}")
    click.echo(f"[3/3] store -> {out / 'store.zarr'}")
    r = build(out / "raw", out / "store.zarr", BuildConfig(), workers=workers)
    problems = verify(out / "store.zarr")
    if problems:
        click.echo("\n".join(f"error: {p}" for p in problems), err=True)
        sys.exit(1)
    click.echo(f"      {r['rows']} frames, {r['bytes'] / 1e9:.2f} GB, verified, "
               f"{r['frames_written']} frames written now; "
               f"{store_preview(out / 'store.zarr', out / 'store_preview.png')}")
    click.echo(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
