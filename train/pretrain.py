"""`sync-train pretrain`: the Siamese synchronization / flip network on pair batches."""
from __future__ import annotations

from pathlib import Path

import torch

from models import SiameseSync, accuracy, ssl_loss
from pairloader import PairLoader

from .config import PretrainConfig, mask_labels
from .run import Run


def count_hits(hits: dict, s, f, sync_label, flip_label) -> None:
    """Add the correct / counted predictions of both heads to hits {'sync': [c, n], 'flip': [c, n]}."""
    for name, logit, label in (("sync", s, sync_label), ("flip", f, flip_label)):
        c, n = accuracy(logit.detach().cpu(), label.cpu())
        hits[name][0] += c
        hits[name][1] += n


def rate(hits: dict, name: str) -> float:
    return hits[name][0] / max(hits[name][1], 1)


def pretrain(store: str | Path, out: str | Path, cfg: PretrainConfig, resume: bool = False,
             progress: bool = True, stop_after: int | None = None) -> dict:
    """Train (or continue) the run in `out`; returns the final metrics ({} if stopped early).

    stop_after: stop with a checkpoint once this many steps are done (a preemptible job runs
    in slices of the same schedule; --resume continues it).
    """
    torch.manual_seed(cfg.seed)
    run = Run(out, cfg, SiameseSync(cfg.arch, cfg.fusion, cfg.weights), "pretrain", resume, progress)
    device, gpu = run.device, run.gpu
    loader = PairLoader(store, batch_size=cfg.batch, seed=cfg.seed, backend=cfg.backend, workers=cfg.workers,
                        start_step=run.start, steps=min(cfg.steps, stop_after or cfg.steps) - run.start,
                        rank=run.rank, world_size=run.world, sampler=cfg.sampler_config(),
                        device_id=run.local if gpu and cfg.backend in ("dali", "auto") else None)
    hits = {"sync": [0, 0], "flip": [0, 0]}
    run.net.train()
    with run.interruptible():
        for batch in run.batches(loader):
            x1, x2 = batch["x1"].to(device, non_blocking=True), batch["x2"].to(device, non_blocking=True)
            sync_label, flip_label = (t.to(device) for t in mask_labels(batch, cfg.tasks))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu and cfg.bf16):
                s, f = run.net(x1, x2)
            loss = ssl_loss(s.float(), f.float(), sync_label, flip_label)
            run.step(loss, batch["step"])
            count_hits(hits, s, f, sync_label, flip_label)
            if run.due(batch["step"]):
                run.record({"loss": loss.item(), "acc_sync": rate(hits, "sync"), "acc_flip": rate(hits, "flip")},
                           3 * cfg.batch, "pairs")
                hits = {"sync": [0, 0], "flip": [0, 0]}
    if not run.finish() or run.rank != 0:
        return {}
    return run.write_metrics(pretext_accuracy(run.model, store, cfg, device))


@torch.no_grad()
def pretext_accuracy(model, store, cfg: PretrainConfig, device) -> dict:
    """Accuracy of both heads on pairs of the test subjects (cfg.eval_batches batches)."""
    model.eval()
    loader = PairLoader(store, batch_size=cfg.batch, seed=cfg.seed + 1, backend=cfg.backend, workers=cfg.workers,
                        steps=cfg.eval_batches, sampler=cfg.sampler_config(), split="test")
    hits = {"sync": [0, 0], "flip": [0, 0]}
    for batch in loader:
        s, f = model(batch["x1"].to(device), batch["x2"].to(device))
        count_hits(hits, s, f, batch["sync_label"], batch["flip_label"])
    model.train()
    return {"test_acc_sync": rate(hits, "sync"), "test_acc_flip": rate(hits, "flip"),
            "test_pairs_sync": hits["sync"][1], "test_pairs_flip": hits["flip"][1]}
