"""`h36m-prep`: make a synthetic dataset, preview raw data, (later) build and inspect the store."""
from __future__ import annotations

import sys

import click

from .geometry import SUBJECTS


def _fail(e: Exception) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(2)


@click.group()
def main() -> None:
    """Prepare Human3.6M-layout data (real or synthetic) for multiview-sync."""


@main.command()
@click.argument("raw", type=click.Path(file_okay=False))
@click.option("--subjects", default=",".join(SUBJECTS), show_default=True, help="comma-separated")
@click.option("--actions", default="Directions,Posing,Walking", show_default=True,
              help="comma-separated: Directions, Greeting, Posing, Walking, WalkTogether "
                   "(a take number may follow, 'Walking 1')")
@click.option("--frames", default=250, show_default=True, help="frames per sequence (50 fps)")
@click.option("--scale", default=0.5, show_default=True, help="resolution relative to the 1000 px cameras")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=0, help="processes (0: one per core)")
@click.option("--preview", "preview_png", type=click.Path(dir_okay=False), default=None,
              help="also write this PNG: one frame of every camera with the 2D skeleton")
def synth(raw, subjects, actions, frames, scale, seed, workers, preview_png):
    """Write a synthetic dataset in the Human3.6M layout under RAW (resumable)."""
    from .preview import preview_grid
    from .synth.dataset import SynthConfig, write_dataset

    try:
        cfg = SynthConfig(subjects=tuple(s.strip() for s in subjects.split(",") if s.strip()),
                          actions=tuple(a.strip() for a in actions.split(",") if a.strip()),
                          frames=frames, scale=scale, seed=seed)
        report = write_dataset(raw, cfg, workers=workers)
    except ValueError as e:
        _fail(e)
    res = ", ".join(f"{c} {w}x{h}" for c, (w, h) in report["resolution"].items())
    click.echo(f"wrote {report['root']}: {len(report['subjects'])} subjects x {len(report['actions'])} "
               f"actions = {report['sequences']} sequences, {report['videos']} videos of "
               f"{report['frames_per_video']} frames ({res}), {report['bytes'] / 1e6:.1f} MB, "
               f"{report['frames_written']} frames rendered in {report['seconds']} s")
    if preview_png:
        click.echo(f"preview: {preview_grid(raw, preview_png)}")


@main.command()
@click.argument("raw", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--subject", default=None)
@click.option("--action", default=None, help="as the files spell it, e.g. 'Walking 1'")
@click.option("--frame", default=None, type=int, help="default: the middle frame")
def preview(raw, out, subject, action, frame):
    """Write a PNG grid: one frame from every camera with the projected 2D skeleton."""
    from .preview import preview_grid
    from .raw import RawDataError

    try:
        click.echo(preview_grid(raw, out, subject, action, frame))
    except (RawDataError, ValueError) as e:
        _fail(e)


if __name__ == "__main__":
    main()
