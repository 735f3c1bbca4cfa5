"""`h36m-prep`: make a synthetic dataset, preview raw data, build the store and inspect it."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .config import BuildConfig
from .errors import ConfigError, ToolkitError
from .geometry import SUBJECTS
from .options import Commands, StoreArg, config_options, from_options
from .synth import WRITERS as SYNTH_WRITERS


def _fail(e: Exception) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(2)


@click.group(cls=Commands)
def main() -> None:
    """Prepare Human3.6M-layout data (real or synthetic) for multiview-sync."""


@main.command()
@click.argument("raw", type=click.Path(file_okay=False))
@click.option("--layout", type=click.Choice(list(SYNTH_WRITERS)), default="h36m", show_default=True,
              help="h36m: the Human3.6M release layout; rig: a synthetic rig of your own kind (5 cameras, 60 fps, "
                   "portrait and landscape, calibration.toml, 2 takes)")
@click.option("--subjects", default=None, help=f"h36m: comma-separated [default: {','.join(SUBJECTS)}]")
@click.option("--actions", default=None,
              help="h36m: comma-separated, of Directions, Greeting, Posing, Walking, WalkTogether (a take number may "
                   "follow, 'Walking 1') [default: Directions,Posing,Walking]")
@click.option("--frames", default=None, type=int,
              help="frames per sequence [default: h36m 250 at 50 fps; rig 300 at 60 fps]")
@click.option("--scale", default=0.5, show_default=True, help="resolution relative to the 1000 px cameras")
@click.option("--seed", default=0, show_default=True, help="seed of every random choice (same seed, same files)")
@click.option("--workers", default=0, show_default=True, help="processes (0: one per core)")
@click.option("--keyframes", type=click.Choice(["per_camera", "aligned"]), default=None,
              help="h36m: per_camera gives each camera its own keyframe phase (cameras started at their own "
                   "moments); aligned puts every camera's keyframes at the same frames (a shortcut for the sync task) "
                   "[default: per_camera]")
@click.option("--start-spread", type=click.FloatRange(0, 10), default=None,
              help="rig: cameras start up to this many seconds apart (each its own offset per take) and stop at "
                   "their own moments, as cameras started by hand; the true offsets go to RIG/offsets_truth.toml "
                   "[default: 0, synchronized]")
@click.option("--preview", "preview_png", type=click.Path(dir_okay=False), default=None,
              help="also write this PNG: one frame of every camera with the 2D skeleton [default: none]")
def synth(raw, layout, subjects, actions, frames, scale, seed, workers, keyframes, start_spread, preview_png):
    """Write a synthetic dataset under RAW (resumable): Human3.6M's layout, or a rig's."""
    from .preview import preview_grid
    from .synth import writer

    split = lambda text: tuple(x.strip() for x in text.split(",") if x.strip()) if text else None  # noqa: E731
    try:
        _, line = writer(layout)(raw, frames, scale, seed, workers, split(subjects), split(actions), keyframes,
                                 start_spread)
    except ValueError as e:
        _fail(e)
    click.echo(line)
    if preview_png:
        click.echo(f"preview: {preview_grid(raw, preview_png)}")


@main.command()
@click.argument("raw", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--subject", default=None, help="the subject (a rig: ignored) [default: the first]")
@click.option("--action", default=None,
              help="the sequence as the files spell it, e.g. 'Walking 1' (a rig: the take) [default: the first]")
@click.option("--frame", default=None, type=int, help="the frame [default: the middle frame]")
def preview(raw, out, subject, action, frame):
    """Write a PNG grid: one frame from every camera with the projected 2D skeleton."""
    from .preview import preview_grid

    try:
        click.echo(preview_grid(raw, out, subject, action, frame))
    except (ToolkitError, ValueError) as e:
        _fail(e)


@main.command()
@click.argument("raw", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=StoreArg())
@click.option("--workers", default=0, show_default=True, help="worker processes on this machine (0: one per core)")
@click.option("--scheduler", default=None,
              help="run the units on the Dask cluster whose scheduler is at tcp://HOST:PORT instead of local worker "
                   "processes (its workers need this toolkit, RAW at the same path, and OUT on a shared filesystem "
                   "or in object storage) [default: none, local processes]")
@config_options(BuildConfig)
def build(raw, out, workers, scheduler, **options):
    """Decode RAW once into the Zarr store OUT (resumable: rerun to finish). OUT is a folder or a
    URL in object storage (s3://bucket/prefix, gs://..., az://...; credentials from the environment)."""
    from .build import build as run_build

    try:
        r = run_build(raw, out, from_options(BuildConfig, BuildConfig(), options), workers=workers, scheduler=scheduler)
    except (ToolkitError, ValueError, OSError) as e:  # each names its file or option and the fix
        _fail(e)
    click.echo(f"{r['store']}: {r['rows']} rows, {r['units_done']} (sequence, camera) units done, "
               f"{r['units_skipped']} skipped, {r['frames_written']} frames written in {r['seconds']} s, "
               f"{r['bytes'] / 1e9:.2f} GB")
    for s in r["skipped"]:
        click.echo(f"skipped {s['sequence']}: {s['error']}")
    for e in r["excluded"]:
        click.echo(f"excluded {e['sequence']}{' camera ' + e['camera'] if e['camera'] else ''}: {e['reason']} "
                   "(--keep-damaged keeps it)")


@main.command()
@click.argument("store", type=StoreArg(exists=True))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def info(store, as_json):
    """What is in a store: subjects, actions, frames, size on disk."""
    import json

    from .inspect_store import info as store_info
    from .store import StoreError

    try:
        i = store_info(store)
    except (StoreError, ToolkitError) as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(i, indent=1))
        return
    click.echo(f"{i['store']} ({i['source']}, format {i['format_version']}, code {i['code_version']}"
               f"{'' if i['complete'] else ', INCOMPLETE'})")
    click.echo(f"  layout    {i['layout']}, {i['fps']:g} fps, {'with' if i['poses'] else 'without'} poses, "
               f"{'calibrated' if i['calibrated'] else 'uncalibrated (square image crops)'}")
    click.echo(f"  subjects  {' '.join(i['subjects'])}")
    click.echo(f"  actions   {' '.join(i['actions'])}")
    for t in i["takes"]:
        click.echo(f"  take      {t['take']}: {t['frames']} frames, {t['split']} (backgrounds of {t['session']})")
    click.echo(f"  cameras   {' '.join(i['cameras'])}")
    if i["build"].get("every", 1) > 1:
        click.echo(f"  every     {i['build']['every']}th frame of the training sequences stored")
    click.echo(f"  frames    {i['frames']['train']} train + {i['frames']['test']} test "
               f"({i['sequences']} sequences, {i['moving_fraction']:.0%} moving), crops {i['crop_size']} px")
    click.echo(f"  units     {i['units']['done']} done, {i['units']['skipped']} skipped, {i['units']['pending']} pending")
    click.echo(f"  on disk   {i['bytes'] / 1e9:.2f} GB; crops {i['image_codec']}, {i['bytes_per_frame'] / 1e3:.1f} KB a "
               f"frame with its mask: a full Human3.6M store (2.5 M frames) would take about "
               f"{i['projected_h36m_bytes'] / 1e9:.0f} GB")
    click.echo(f"  raw data  {i['raw_fingerprint']['files']} files, fingerprint {i['raw_fingerprint']['digest']}")
    for s in i["skipped"]:
        click.echo(f"  skipped   {s['sequence']}: {s['error']}")
    for e in i.get("excluded", []):
        click.echo(f"  excluded  {e['sequence']}{' camera ' + e['camera'] if e['camera'] else ''}: {e['reason']}")
    for note in i.get("notes", []):
        click.echo(f"  note      {note}")


@main.command()
@click.argument("store", type=StoreArg(exists=True))
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="quick check: only the chunks and geometry of this many random rows (default: every chunk)")
@click.option("--mark-damaged", is_flag=True,
              help="mark what is damaged for re-rendering: then rerun `h36m-prep build RAW STORE`")
def verify(store, sample, mark_damaged):
    """Check a store: shapes, dtypes, format, completeness, every chunk (present, decodable),
    geometry. Exit 1 on a problem."""
    from .inspect_store import damaged_chunks, mark_damaged as mark
    from .inspect_store import verify as store_verify

    notes: list[str] = []
    problems = store_verify(store, sample, progress=True, warnings=notes)
    for w in notes:
        click.echo(f"WARN {w}")
    for p in problems:
        click.echo(f"FAIL {p}")
    if mark_damaged and problems:
        from . import store as S

        restored = S.restore_arrays(store, S.unreadable_arrays(S.open_store(store)))
        if restored:
            click.echo(f"wrote the metadata of {', '.join(restored)} anew from the store's format")
        marked = mark(store, damaged_chunks(store))
        click.echo(f"marked for re-rendering: {len(marked['units'])} unit(s) {' '.join(marked['units'][:8])}"
                   f"{' ...' if len(marked['units']) > 8 else ''}; {len(marked['medians'])} median background(s); "
                   f"now rerun `h36m-prep build RAW {store}` with the raw data it was built from")
    if problems:
        sys.exit(1)
    click.echo(f"OK {store}")


if __name__ == "__main__":
    main()


@main.command()
@click.argument("rig", type=click.Path(exists=True, file_okay=False))
@click.option("--method", type=click.Choice(["auto", "motion", "geometry"]), default="auto", show_default=True,
              help="motion: the person's frame-to-frame change, correlated (no calibration needed); geometry: "
                   "the epipolar tangents of the silhouettes, correlated (needs calibration.toml); auto: both, their "
                   "scores added (the tangents weigh more between frames), when the rig has calibration.toml, "
                   "motion otherwise (measured in docs/rig.md). "
                   "The learned method: sync-train sync RIG --model RUN")
@click.option("--max-lag", type=click.FloatRange(0.05, 60), default=2.0, show_default=True,
              help="the search each way, in seconds (narrowed for a short take so that half of it still overlaps)")
@click.option("--calib-units", type=click.Choice(["m", "mm"]), default="m", show_default=True,
              help="units of the translations in calibration.toml")
@click.option("--force", is_flag=True, help="write an ambiguous camera's offset as 0 (a guess) instead of leaving "
                                            "it out, commented, for you to fill in")
@click.option("--overwrite", is_flag=True, help="replace an existing RIG/offsets.toml")
def sync(rig, method, max_lag, calib_units, force, overwrite):
    """Find every camera's frame offset in every take of a rig from its videos alone (no labels,
    no pose detector) and write RIG/offsets.toml, one table per take."""
    from .sync import offsets_path, sync_rig, write_offsets

    path = offsets_path(rig, overwrite)
    results = sync_rig(rig, method, max_lag, calib_units, progress=lambda take: click.echo(f"take {take} ...", err=True))
    write_offsets(path, results, force, click.echo)
