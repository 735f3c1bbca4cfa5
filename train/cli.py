"""`sync-train`: the main job on the built-in synthetic data (`demo`), and the training and
evaluation commands (`pretrain`, `finetune`, `eval`)."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import click
import numpy as np

from h36m_prep.errors import ToolkitError
from h36m_prep.options import Commands, StoreArg, config_options, describe, from_options

from .config import FINETUNE_PRESETS, HARMLESS, PRETRAIN_PRESETS, FinetuneConfig, PretrainConfig


@click.group(cls=Commands)
def main() -> None:
    """Self-supervised multi-view synchronization learning for 3D human pose."""


@main.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(file_okay=False),
              help="everything the demo makes goes here")
@click.option("--frames", default=250, show_default=True, help="frames per synthetic sequence")
@click.option("--scale", default=0.5, show_default=True, help="video resolution relative to 1000 px")
@click.option("--workers", default=0, show_default=True, help="processes (0: one per core)")
@click.option("--data-only", is_flag=True, help="stop after the store (synth, previews, build)")
@click.option("--pretrain-steps", type=int, default=None, help="default: the demo preset's")
@click.option("--finetune-steps", type=int, default=None, help="default: the cpu preset's")
def demo(out, frames, scale, workers, data_only, pretrain_steps, finetune_steps):
    """The main job on the built-in synthetic data: synth -> store -> pretrain (demo) -> finetune
    from the self-supervised model and from random init (frozen as the SSL model is, and
    unfrozen) -> eval all three -> a table comparing them.
    Rerun resumes: finished stages are kept, an interrupted run continues from its checkpoint."""
    from h36m_prep.build import build
    from h36m_prep.config import BuildConfig
    from h36m_prep.inspect_store import verify
    from h36m_prep.preview import preview_grid, store_preview
    from h36m_prep.synth.dataset import SynthConfig, write_dataset

    out = Path(out)
    t0 = time.perf_counter()
    stages = 3 if data_only else 8
    click.echo(f"[1/{stages}] synthetic dataset -> {out / 'raw'}")
    try:
        report = write_dataset(out / "raw", SynthConfig(frames=frames, scale=scale), workers=workers)
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(f"      {report['videos']} videos, {report['sequences']} sequences, "
               f"{report['bytes'] / 1e6:.0f} MB; {report['frames_written']} frames rendered now")
    click.echo(f"[2/{stages}] previews: one frame of every camera with the projected skeleton")
    for subject, name in (("S1", "preview_train.png"), ("S9", "preview_test.png")):
        click.echo(f"      {preview_grid(out / 'raw', out / name, subject=subject, action='Walking')}")
    store = out / "store.zarr"
    click.echo(f"[3/{stages}] store -> {store}")
    r = build(out / "raw", store, BuildConfig(), workers=workers)
    problems = verify(store)
    if problems:
        click.echo("\n".join(f"error: {p}" for p in problems), err=True)
        sys.exit(1)
    click.echo(f"      {r['rows']} frames, {r['bytes'] / 1e9:.2f} GB, verified, "
               f"{r['frames_written']} frames written now; "
               f"{store_preview(store, out / 'store_preview.png')}")
    if not data_only:
        _demo_training(out, store, pretrain_steps, finetune_steps)
    click.echo(f"done in {time.perf_counter() - t0:.0f} s")


def _demo_training(out: Path, store: Path, pretrain_steps: int | None, finetune_steps: int | None) -> None:
    """Stages 4-8 of the demo, each kept when finished and resumed when interrupted."""
    from .evaluate import evaluate
    from .finetune import finetune
    from .pretrain import pretrain
    from .probe import probe

    def stage(fn, run: Path, cfg):
        if (run / "metrics.json").exists():
            return json.loads((run / "metrics.json").read_text())
        return fn(store, run, cfg, resume=(run / "checkpoint.pt").exists())

    pre = PRETRAIN_PRESETS["demo"]
    if pretrain_steps:
        pre = dataclasses.replace(pre, steps=pretrain_steps, warmup=min(pre.warmup, pretrain_steps // 6))
    click.echo(f"[4/8] self-supervised pretraining ({pre.arch}, {pre.steps} steps, {pre.input_size} px) "
               f"-> {out / 'pretrain'}")
    m = stage(pretrain, out / "pretrain", pre)
    click.echo(f"      pretext accuracy on the test subjects: sync {m['test_acc_sync']:.3f}, flip {m['test_acc_flip']:.3f}")
    ft = FINETUNE_PRESETS["cpu"]
    arms = {"ssl": (str(out / "pretrain"), ft.freeze), "random": ("random", ft.freeze),
            "random_unfrozen": ("random", "none")}
    click.echo(f"[5/8] finetune from ssl init, from random init frozen the same way ({ft.freeze}), and "
               "from random init unfrozen")
    for name, (init, frozen) in arms.items():
        cfg = dataclasses.replace(ft, init=init, freeze=frozen, steps=finetune_steps or ft.steps)
        click.echo(f"      {name}: {cfg.steps} steps, protocol {cfg.protocol}, frozen {cfg.freeze}, background "
                   f"{cfg.background} -> {out / f'finetune_{name}'}")
        stage(finetune, out / f"finetune_{name}", cfg)
    click.echo(f"[6/8] evaluation on the test subjects -> {', '.join(str(out / f'eval_{n}') for n in arms)}")
    reports = {name: evaluate(out / f"finetune_{name}", store, out / f"eval_{name}") for name in arms}
    click.echo(f"[7/8] linear probes of the frozen ssl and random-init backbones (protocol {ft.protocol}) -> "
               f"{out / 'probe_ssl'}, {out / 'probe_random'}")
    probes = {}
    for name, init in (("ssl", out / "pretrain"), ("random", "random")):
        path = out / f"probe_{name}" / "probe.json"
        probes[name] = json.loads(path.read_text()) if path.exists() else probe(
            str(init), store, path.parent, protocols=(ft.protocol,), arch=pre.arch, input_size=pre.input_size,
            seed=ft.seed, mirror=False, progress=False)
    click.echo(f"[8/8] results -> {out / 'results.md'}")
    table = results_table(reports, m, probes)
    (out / "results.md").write_text(table)
    click.echo(table)


def results_table(reports: dict, pretext: dict, probes: dict) -> str:
    """The demo's Markdown table: the test metrics of each initialisation with 95 % intervals over
    test instants, the linear probes beside them, and what it can and cannot show."""
    from .stats import format_interval, instant_ids, mean_interval

    def cell(values, inst):
        return format_interval(mean_interval(np.asarray(values)[None], inst))

    any_report = next(iter(reports.values()))
    lines = ["| init | frozen | MPJPE | NMPJPE | PMPJPE |", "|---|---|---|---|---|"]
    for name, rep in reports.items():
        im = rep["per_image"]
        inst = instant_ids(im["subject"], im["sequence"], im["frame"])
        lines.append(f"| {name} | {rep['freeze']} | " + " | ".join(cell(im[k], inst) for k in ("mpjpe", "nmpjpe", "pmpjpe"))
                     + " |")
    lines += ["", "| linear probe (frozen features, ridge) | layer | MPJPE | PMPJPE | test images |", "|---|---|---|---|---:|"]
    for name, rep in probes.items():
        for protocol, r in rep["pose"].items():
            for layer, m in r["layers"].items():
                lines.append(f"| {name} | {layer} | {format_interval(m['mpjpe'])} | {format_interval(m['pmpjpe'])} | "
                             f"{r['test_images']} |")
    probe = next(iter(next(iter(probes.values()))["pose"].values()))
    return ("\n".join(lines) + f"\n\nmm, mean [95 % interval over test instants]. Fine-tuning rows: "
            f"{any_report['overall']['n']} test images (S9, S11, every {any_report['every']}th frame, all cameras), "
            f"protocol {any_report['protocol']}, background {any_report['background']} in fine-tuning and test, "
            f"MPJPE and NMPJPE x 17/16 (root fixed). Probes: ridge from the frozen pooled features, fitted on "
            f"protocol {probe['protocol']}'s frames, strength chosen on {probe['val_subject']}, tested on every "
            f"{probe['test_every']}th test frame. Pretext accuracy of the SSL model after {pretext.get('steps', '?')} "
            f"steps, on the test subjects (chance 0.5): sync {pretext['test_acc_sync']:.3f}, flip "
            f"{pretext['test_acc_flip']:.3f}.\n\n"
            "What this can show: the whole line runs end to end. What it cannot: whether the pretext task helps. "
            "One seed of each at demo size, and the intervals cover the test instants only, not the training "
            "seed; the demo's pretraining stops long before the task is learned (the `cpu` preset's 6000 steps "
            "learn it). Random init with frozen random layers is a handicapped baseline; compare with the unfrozen "
            "one. The answer over seeds, with its intervals, is the SSL study's (docs/results.md).\n")


def _training_command(cls, presets: dict):
    """The options every training command shares, then one --option per field of its config."""
    def wrap(fn):
        fn = config_options(cls, presets)(fn)
        for option in reversed([
            click.option("--store", required=True, type=StoreArg(exists=True),
                         help="the store (h36m-prep build): a folder, or a URL in object storage (s3://bucket/prefix, gs://, az://)"),
            click.option("--out", required=True, type=click.Path(file_okay=False), help="the run folder"),
            click.option("--preset", type=click.Choice(list(presets)), default="paper", show_default=True,
                         help="the values of every option not given (sync-train presets shows them)"),
            click.option("--resume", is_flag=True, help="continue the run in --out from its checkpoint"),
            click.option("--stop-after", type=int, default=None,
                         help="stop with a checkpoint after this many steps [default: run to the end]")]):
            fn = option(fn)
        return main.command()(fn)
    return wrap


def _train(run, cls, presets, store, out, preset, resume, stop_after, overrides) -> dict:
    """The config from the preset and the options, or, resuming, the run's own config with the
    options given now applied: a change that cannot alter the result (HARMLESS) is applied and
    printed, any other is refused, naming each field. A ValueError is reported as an error and
    exit status 2."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        if resume and (Path(out) / "config.json").exists():
            saved = cls.load(Path(out) / "config.json")
            changed = {k: (getattr(saved, k), v) for k, v in given.items() if getattr(saved, k) != v}
            refused = {k: c for k, c in changed.items() if k not in HARMLESS}
            if refused:
                raise ValueError(f"{out}: was trained with other options; --resume continues it as it was. "
                                 "Differing: " + ", ".join(f"--{k.replace('_', '-')} {new} (run: {old})"
                                                          for k, (old, new) in refused.items())
                                 + "; drop them, or start a new run with another --out")
            for k, (old, new) in changed.items():
                click.echo(f"resume: {k} {old} -> {new} (does not change the result)")
            cfg = dataclasses.replace(saved, **{k: new for k, (_, new) in changed.items()})
        else:
            cfg = from_options(cls, presets[preset], given)
        return run(store, out, cfg, resume=resume, stop_after=stop_after)
    except (ToolkitError, ValueError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


@_training_command(PretrainConfig, PRETRAIN_PRESETS)
def pretrain(store, out, preset, resume, stop_after, **overrides):
    """Self-supervised pretraining: synchronized / flipped pair classification (loss (1)).

    Multi-GPU or multi-node: torchrun --nproc-per-node N -m train.cli pretrain ...
    """
    from .pretrain import pretrain as run

    metrics = _train(run, PretrainConfig, PRETRAIN_PRESETS, store, out, preset, resume, stop_after, overrides)
    if metrics and "test_acc_sync" in metrics:
        click.echo(f"pretext accuracy on the test subjects: sync {metrics['test_acc_sync']:.3f}, "
                   f"flip {metrics['test_acc_flip']:.3f} ({out}/metrics.json)")
    elif metrics:
        click.echo(f"note: {metrics['test_note']}")
        click.echo(f"pretext accuracy on the training frames: sync {metrics['train_acc_sync']:.3f}, "
                   f"flip {metrics['train_acc_flip']:.3f} ({out}/metrics.json)")


@_training_command(FinetuneConfig, FINETUNE_PRESETS)
def finetune(store, out, preset, resume, stop_after, **overrides):
    """Transfer to 3D pose: a linear layer on the backbone, from --init RUN | random | imagenet:PATH,
    supervised by the subjects of --protocol S1 | All."""
    from .finetune import finetune as run

    metrics = _train(run, FinetuneConfig, FINETUNE_PRESETS, store, out, preset, resume, stop_after, overrides)
    if metrics:
        click.echo(f"finetuned on {' '.join(metrics['train_subjects'])} in {metrics['seconds']:.0f} s: {out}")


@main.command("eval")
@click.option("--ckpt", required=True, type=click.Path(exists=True, file_okay=False), help="a finetune run folder")
@click.option("--store", required=True, type=StoreArg(exists=True), help="a labelled store")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="the report folder")
@click.option("--pretrain", type=click.Path(exists=True, file_okay=False), default=None,
              help="pretrain run for the synchronization figures (default: the finetune's --init)")
@click.option("--every", default=64, show_default=True, help="test frames with frame % every == 0")
@click.option("--batch", default=32, show_default=True, help="test images per forward pass")
@click.option("--background", type=click.Choice(["removed", "kept"]), default=None,
              help="test images with the background removed or kept (default: what the fine-tuning run used)")
def evaluate(ckpt, store, out, pretrain, every, batch, background):
    """Test subjects S9, S11: MPJPE / NMPJPE / PMPJPE overall and per action (JSON + Markdown), and
    the figures: qualitative, synchronization accuracy against time gap, retrieval."""
    from .evaluate import evaluate as run

    try:
        report = run(ckpt, store, out, pretrain=pretrain, every=every, batch=batch, background=background)
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    m = report["overall"]
    click.echo(f"{m['n']} test images: MPJPE {m['mpjpe']:.1f}, NMPJPE {m['nmpjpe']:.1f}, PMPJPE {m['pmpjpe']:.1f} mm "
               f"-> {out}/report.md")


@main.command()
@click.option("--init", required=True, help="a pretrain run folder, or 'random' (a random-init backbone of --arch)")
@click.option("--store", required=True, type=StoreArg(exists=True), help="a labelled store")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="the report folder (probe.json, probe.md)")
@click.option("--protocol", "protocols", multiple=True, type=click.Choice(["S1", "All"]),
              help="the subjects the ridge regression is fitted on (repeat for both) [default: S1 and All]")
@click.option("--val-subject", default="S8", show_default=True,
              help="a training subject on which the ridge strength is chosen (never a test subject)")
@click.option("--arch", default="resnet18n", show_default=True,
              help="backbone of a random init (a run's own arch otherwise): resnet18, resnet18n, resnet34, resnet50")
@click.option("--input-size", type=int, default=None,
              help="image side in pixels [default: the run's pretraining input size; 64 for random]")
@click.option("--seed", default=0, show_default=True, help="seed of a random-init backbone")
@click.option("--mirror/--no-mirror", default=True, show_default=True,
              help="also the mirror probe (can a linear classifier tell an image from its mirror?)")
def probe(init, store, out, protocols, val_subject, arch, input_size, seed, mirror):
    """Linear probes of frozen features: ridge regression from pooled layer3 / layer4 features to
    the 3D pose (MPJPE, PMPJPE on every 8th test frame, with 95 % intervals over test instants),
    and a mirror probe; no fine-tuning."""
    from .probe import probe as run

    try:
        report = run(init, store, out, protocols or ("S1", "All"), val_subject, arch, input_size, seed, mirror)
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    from .probe import markdown

    click.echo(markdown(report))


@main.command("sync")
@click.argument("rig", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "run", required=True, type=click.Path(exists=True, file_okay=False),
              help="a pretraining run folder (sync-train pretrain --out): its sync head scores every candidate lag")
@click.option("--store", type=StoreArg(exists=True), default=None,
              help="a build of RIG without offsets.toml (h36m-prep build) [default: built here, in a temporary folder]")
@click.option("--max-lag", type=click.FloatRange(0.05, 60), default=2.0, show_default=True,
              help="the search each way, in seconds (narrowed for a short take so that half of it still overlaps)")
@click.option("--crop-size", type=click.IntRange(32, 1024), default=128, show_default=True,
              help="px: the crops of the temporary store (the network sees them at its own input size)")
@click.option("--workers", default=0, show_default=True, help="processes of that build (0: one per core)")
@click.option("--force", is_flag=True, help="write an ambiguous camera's offset as 0 (a guess) instead of leaving "
                                            "it out, commented, for you to fill in")
@click.option("--overwrite", is_flag=True, help="replace an existing RIG/offsets.toml")
def sync(rig, run, store, max_lag, crop_size, workers, force, overwrite):
    """The learned synchronizer: every camera's frame offset in every take of a rig, scored by a
    pretrained sync head over every pair of frames (h36m-prep sync has the label-free methods);
    writes RIG/offsets.toml, one table per take."""
    from h36m_prep.sync import offsets_path, write_offsets

    from .synchronize import sync_rig_learned

    try:
        path = offsets_path(rig, overwrite)
        results = sync_rig_learned(rig, run, store, max_lag, crop_size, workers,
                                   progress=lambda line: click.echo(line, err=True))
    except (ToolkitError, ValueError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    write_offsets(path, results, force, click.echo)


@main.command()
@click.argument("command", type=click.Choice(["pretrain", "finetune"]), required=False)
@click.argument("name", required=False)
def presets(command, name):
    """The presets of pretrain and finetune; with COMMAND and NAME, every value of that preset
    (as options: any of them can be given on the command line)."""
    table = {"pretrain": PRETRAIN_PRESETS, "finetune": FINETUNE_PRESETS}
    if command is None or name is None:
        for cmd, ps in table.items():
            if command in (None, cmd):
                click.echo(f"{cmd}: {', '.join(ps)}  (sync-train presets {cmd} NAME shows one)")
        return
    if name not in table[command]:
        click.echo(f"error: {command} has no preset {name!r}; it has {', '.join(table[command])}", err=True)
        sys.exit(2)
    click.echo(describe(table[command][name]))


if __name__ == "__main__":
    main()
