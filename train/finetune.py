"""`sync-train finetune`: transfer the pretrained backbone to 3D pose regression (paper, 3.4)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models import PoseRegressor
from models.backbone import freeze
from pairloader import PoseLoader, pose_stats, unstandardize, normalize

from . import checkpoint
from .config import FinetuneConfig, PretrainConfig, frozen_modules
from .metrics import ROOT_CORRECTION, mpjpe
from .run import Run, exclusive_run


def pose_model(cfg: FinetuneConfig) -> PoseRegressor:
    """The regressor with its backbone initialised as cfg.init says: random, an ImageNet
    state-dict file (imagenet:PATH) or the backbone Phi of a pretrain run folder."""
    if cfg.init == "random":
        return PoseRegressor(cfg.arch)
    if cfg.init.startswith("imagenet:"):
        return PoseRegressor(cfg.arch, weights=cfg.init.removeprefix("imagenet:"))
    run = Path(cfg.init)
    if not (run / "checkpoint.pt").is_file():
        raise ValueError(f"init={cfg.init!r}: not a pretrain run folder (no checkpoint.pt); pass one, "
                         f"'random' or 'imagenet:PATH'")
    try:
        pre = PretrainConfig.load(run / "config.json")
    except TypeError:  # fields of another kind of run
        kind = "a finetune run" if (run / "pose_stats.json").exists() else "not a pretrain run"
        raise ValueError(f"init={cfg.init!r}: {kind} (its config.json is not a pretraining config); pass "
                         "the --out of sync-train pretrain, 'random' or 'imagenet:PATH'") from None
    if pre.arch != cfg.arch:
        raise ValueError(f"{run}: pretrained a {pre.arch}, but --arch is {cfg.arch}; pass --arch {pre.arch}")
    model = PoseRegressor(cfg.arch)
    state = checkpoint.load(run / "checkpoint.pt")["model"]
    model.phi.load_state_dict({k.removeprefix("phi."): v for k, v in state.items() if k.startswith("phi.")})
    return model


def finetune(store: str | Path, out: str | Path, cfg: FinetuneConfig, resume: bool = False,
             progress: bool = True, stop_after: int | None = None) -> dict:
    """Train (or continue) the pose run in `out`; returns its final metrics ({} if stopped early).

    The target statistics (per-joint mean and std of the protocol's training poses) are saved
    with every checkpoint and in out/pose_stats.json; evaluation uses those.
    """
    with exclusive_run(out):
        return _finetune(store, out, cfg, resume, progress, stop_after)


def _finetune(store: str | Path, out: str | Path, cfg: FinetuneConfig, resume: bool = False,
              progress: bool = True, stop_after: int | None = None) -> dict:
    torch.manual_seed(cfg.seed)
    model = pose_model(cfg)
    frozen = frozen_modules(cfg.arch, cfg.freeze)
    freeze(model.phi, frozen)
    subjects = cfg.subjects_in(store)
    mean, std = pose_stats(store, subjects)
    stats = {"mean": mean.tolist(), "std": std.tolist()}
    run = Run(out, cfg, model, "finetune", resume, progress, extra={"pose_stats": stats})
    if run.rank == 0:
        (run.out / "pose_stats.json").write_text(json.dumps(stats))
    device, gpu = run.device, run.gpu
    loader = PoseLoader(store, batch_size=cfg.batch, seed=cfg.seed, split="train", backend=cfg.backend,
                        workers=cfg.workers, start_step=run.start,
                        steps=min(cfg.steps, stop_after or cfg.steps) - run.start, flip=cfg.flip,
                        out_size=cfg.input_size, stats=(mean, std), rank=run.rank, world_size=run.world,
                        subjects=subjects, background=cfg.background, uint8=cfg.uint8_batches,
                        device_id=run.local if gpu and cfg.backend in ("dali", "auto") else None)
    run.net.train()
    freeze(model.phi, frozen)  # .train() re-enabled the frozen batch norms
    errors = []
    with run.interruptible():
        for batch in run.batches(loader):
            x, target = normalize(batch["image"].to(device, non_blocking=True)), batch["target"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.bf16):
                pred = run.net(x)
            loss = torch.nn.functional.mse_loss(pred.float(), target)
            run.step(loss, batch["step"])
            errors.append(mpjpe(unstandardize(pred.detach().float().cpu(), mean, std), batch["pose"]).mean().item())
            if run.due(batch["step"]):
                run.record({"loss": loss.item(), "mpjpe": float(np.mean(errors)) * ROOT_CORRECTION},
                           cfg.batch, "images")
                errors = []
    if not run.finish() or run.rank != 0:
        return {}
    metrics = {"train_subjects": list(subjects)}
    if cfg.holdout:  # the validation subjects' every 8th frame: what presets and options are chosen on
        from .evaluate import predict
        from .metrics import summary

        r = predict(run.model, store, cfg.input_size, mean, std, every=8, background=cfg.background, split="train",
                    subjects=cfg.holdout)
        metrics["val"] = summary(r["pred"], r["gt"]) | {"subjects": list(cfg.holdout)}
    return run.write_metrics(metrics)


def load_pose_model(run: str | Path) -> tuple[PoseRegressor, FinetuneConfig, np.ndarray, np.ndarray]:
    """(model in eval mode, config, mean, std) of a finetune run folder."""
    run = Path(run)
    try:
        cfg = FinetuneConfig.load(run / "config.json")
        state = checkpoint.load(run / "checkpoint.pt")
        stats = state["extra"]["pose_stats"]
    except (OSError, TypeError, KeyError, ValueError):
        raise ValueError(f"{run}: not a finetune run folder; pass the --out of sync-train finetune") from None
    model = PoseRegressor(cfg.arch)
    model.load_state_dict(state["model"])
    return model.eval(), cfg, np.asarray(stats["mean"]), np.asarray(stats["std"])
