"""`sync-train`: the main job on the built-in synthetic data, and (as they land) the training
and evaluation commands."""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import click

from .config import PRETRAIN_PRESETS, PretrainConfig


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


def _config_options(cls):
    """One --option per config field (default: the preset's value), so every field can be set."""
    def wrap(fn):
        for f in reversed(dataclasses.fields(cls)):
            kind = {"int": int, "float": float, "bool": bool}.get(str(f.type).replace("'", ""), str)
            name = "--" + f.name.replace("_", "-")
            if kind is bool:
                fn = click.option(f"{name}/--no-{f.name.replace('_', '-')}", f.name, default=None)(fn)
            else:
                fn = click.option(name, f.name, type=kind, default=None, help=f"default: the preset's")(fn)
        return fn
    return wrap


@main.command()
@click.option("--store", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="the run folder")
@click.option("--preset", type=click.Choice(["paper", "tiny"]), default="paper", show_default=True)
@click.option("--resume", is_flag=True, help="continue the run in --out from its checkpoint")
@click.option("--stop-after", type=int, default=None, help="stop with a checkpoint after this many steps")
@_config_options(PretrainConfig)
def pretrain(store, out, preset, resume, stop_after, **overrides):
    """Self-supervised pretraining: synchronized / flipped pair classification (loss (1)).

    Multi-GPU or multi-node: torchrun --nproc-per-node N -m train.cli pretrain ...
    """
    from .pretrain import pretrain as run

    base = PRETRAIN_PRESETS[preset]
    try:
        cfg = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
        if resume and (Path(out) / "config.json").exists():
            cfg = PretrainConfig.load(Path(out) / "config.json")
        metrics = run(store, out, cfg, resume=resume, stop_after=stop_after)
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    if metrics:
        click.echo(f"pretext accuracy on the test subjects: sync {metrics['test_acc_sync']:.3f}, "
                   f"flip {metrics['test_acc_flip']:.3f} ({out}/metrics.json)")


if __name__ == "__main__":
    main()
