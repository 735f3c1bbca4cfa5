"""`sync-train pretrain`: the Siamese synchronization / flip network on pair batches."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from h36m_prep import store as S

from models import SiameseSync, accuracy, ssl_loss
from pairloader import PairLoader, normalize

from .config import PretrainConfig, mask_labels
from .run import Run, exclusive_run


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
    with exclusive_run(out):
        return _pretrain(store, out, cfg, resume, progress, stop_after)


def _pretrain(store: str | Path, out: str | Path, cfg: PretrainConfig, resume: bool = False,
              progress: bool = True, stop_after: int | None = None) -> dict:
    torch.manual_seed(cfg.seed)
    trained = training_subjects(store, cfg.holdout)
    run = Run(out, cfg, SiameseSync(cfg.arch, cfg.fusion, cfg.weights, cfg.signed), "pretrain", resume, progress)
    device, gpu = run.device, run.gpu
    loader = PairLoader(store, batch_size=cfg.batch, seed=cfg.seed, backend=cfg.backend, workers=cfg.workers,
                        start_step=run.start, steps=min(cfg.steps, stop_after or cfg.steps) - run.start,
                        rank=run.rank, world_size=run.world, sampler=cfg.sampler_config(),
                        device_id=run.local if gpu and cfg.backend in ("dali", "auto") else None,
                        uint8=cfg.uint8_batches, subjects=trained)
    hits = {"sync": [0, 0], "flip": [0, 0]}
    splits = [sp for sp in ("train", "test") if has_split(store, sp)]
    if "test" not in splits and run.rank == 0:
        tqdm.write(f"note: {NO_TEST_NOTE}")
    note = rate_note(store, cfg)
    if note and run.rank == 0:
        tqdm.write(f"note: {note}")
    run.net.train()
    with run.interruptible():
        for batch in run.batches(loader):
            x1 = normalize(batch["x1"].to(device, non_blocking=True))  # uint8 batches: normalized here
            x2 = normalize(batch["x2"].to(device, non_blocking=True))
            sync_label, flip_label = (t.to(device) for t in mask_labels(batch, cfg.tasks))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.bf16):
                s, f = run.net(x1, x2)
            loss = ssl_loss(s.float(), f.float(), sync_label, flip_label)
            run.step(loss, batch["step"])
            count_hits(hits, s, f, sync_label, flip_label)
            if run.due(batch["step"]):
                run.record({"loss": loss.item(), "acc_sync": rate(hits, "sync"), "acc_flip": rate(hits, "flip")},
                           3 * cfg.batch, "pairs")
                hits = {"sync": [0, 0], "flip": [0, 0]}
            if cfg.eval_every and run.rank == 0 and run.done % cfg.eval_every == 0:
                curve = {"step": run.done}  # the curves of training and test-subject accuracy
                for split in splits:
                    curve |= pretext_accuracy(run.model, store, cfg, device, split, max(1, cfg.eval_batches // 4),
                                              breakdown=False, subjects=trained if split == "train" else None)
                if cfg.holdout:
                    curve |= pretext_accuracy(run.model, store, cfg, device, "train", max(1, cfg.eval_batches // 4),
                                              breakdown=False, subjects=cfg.holdout, prefix="val")
                with open(run.out / "eval.jsonl", "a") as f:
                    f.write(json.dumps(curve) + "\n")
    if not run.finish() or run.rank != 0:
        return {}
    metrics = pretext_accuracy(run.model, store, cfg, device, "test") if "test" in splits else {"test_note": NO_TEST_NOTE}
    metrics |= pretext_accuracy(run.model, store, cfg, device, "train", subjects=trained)  # the gap to test
    if cfg.holdout:  # the validation subjects: what presets and options are chosen on
        metrics |= pretext_accuracy(run.model, store, cfg, device, "train", subjects=cfg.holdout, prefix="val")
    return run.write_metrics(metrics)


def training_subjects(store, holdout) -> list[str] | None:
    """The training split's subjects without the held-out ones (None: all of them); a held-out
    name that is not a training subject is an error."""
    if not holdout:
        return None
    train = S.subjects_of(S.open_store(store), "train")
    unknown = [s for s in holdout if s not in train]
    if unknown:
        raise ValueError(f"--holdout {','.join(unknown)}: not a training subject of {store} (it has {' '.join(train)}); "
                         "hold out a training subject (the test subjects are never trained on)")
    if set(train) <= set(holdout):
        raise ValueError(f"--holdout {','.join(holdout)} leaves no training subject")
    return [s for s in train if s not in holdout]


NO_TEST_NOTE = ("the store has no test split, so the pretext accuracy is reported on the training frames only "
                "(it measures fitting, not generalization); build the store with --test-takes to hold takes out")


PAPER_FPS = 50  # the paper's d_min = 4 and d_max = 128 are frames at Human3.6M's 50 fps


def rate_note(store, cfg: PretrainConfig) -> str | None:
    """A note when the store's frame rate is not the paper's: d_min and d_max count frames of the
    store, so they stand for other times; the values that keep the paper's times."""
    fps = float(S.open_store(store).attrs.get("fps", PAPER_FPS))
    if abs(fps - PAPER_FPS) < 0.5:
        return None
    return (f"the store's videos run at {fps:g} fps: d_min {cfg.d_min} and d_max {cfg.d_max} frames are "
            f"{1000 * cfg.d_min / fps:.0f} ms and {cfg.d_max / fps:.2f} s; the paper's {1000 * 4 / PAPER_FPS:.0f} ms and "
            f"{128 / PAPER_FPS:.2f} s are --d-min {round(4 * fps / PAPER_FPS)} --d-max {round(128 * fps / PAPER_FPS)}")


def has_split(store, split: str) -> bool:
    """Whether the store has written rows of `split` ('train' or 'test')."""
    g = S.open_store(store)
    return bool(S.row_mask(g, split).any())


GAP_BINS = (4, 8, 16, 32, 64, 128)  # |dt| bins of unsynchronized pairs: [4, 8), [8, 16), ...


@torch.no_grad()
def pretext_accuracy(model, store, cfg: PretrainConfig, device, split: str = "test", batches: int | None = None,
                     breakdown: bool = True, subjects=None, prefix: str | None = None) -> dict:
    """Accuracy of both heads on pairs of one split's anchors (cfg.eval_batches batches drawn
    with seed cfg.seed + 1), keys prefixed by the split. With breakdown: the unsynchronized
    pairs' accuracy by |dt| bin and by dt mod 12 (the MPEG-4 writer's keyframe interval:
    synchronized frames share their compression phase), and both kinds by camera pair.
    subjects: only these subjects' anchors; prefix: the keys' prefix instead of the split's."""
    model.eval()
    loader = PairLoader(store, batch_size=cfg.batch, seed=cfg.seed + 1, backend=cfg.backend, workers=cfg.workers,
                        steps=batches or cfg.eval_batches, sampler=cfg.sampler_config(), split=split,
                        subjects=subjects)
    split = prefix or split
    hits = {"sync": [0, 0], "flip": [0, 0]}
    keep = {k: [] for k in ("sync_logit", "sync_label", "row1", "row2")}
    for batch in loader:
        s, f = model(batch["x1"].to(device), batch["x2"].to(device))
        count_hits(hits, s, f, batch["sync_label"], batch["flip_label"])
        for k, v in (("sync_logit", s.float().cpu()), ("sync_label", batch["sync_label"]),
                     ("row1", batch["row1"]), ("row2", batch["row2"])):
            keep[k].append(v.numpy())
    model.train()
    out = {f"{split}_acc_sync": rate(hits, "sync"), f"{split}_acc_flip": rate(hits, "flip"),
           f"{split}_pairs_sync": hits["sync"][1], f"{split}_pairs_flip": hits["flip"][1]}
    if not breakdown:
        return out
    logit, label, r1, r2 = (np.concatenate(keep[k]) for k in ("sync_logit", "sync_label", "row1", "row2"))
    g = S.open_store(store)
    frame, camera, cams = g["frame"][:], g["camera"][:], g.attrs["cameras"]
    trained = label >= 0
    right = ((logit > 0) == (label == 1)) & trained
    dt = np.abs(frame[r2].astype(int) - frame[r1].astype(int))
    un = trained & (label == 0)
    by_gap = {}
    for lo, hi in zip(GAP_BINS[:-1], GAP_BINS[1:]):
        sel = un & (dt >= lo) & (dt < hi)
        if sel.any():
            by_gap[f"{lo}-{hi - 1}"] = {"acc": float(right[sel].mean()), "n": int(sel.sum())}
    by_phase = {str(m): {"acc": float(right[un & (dt % 12 == m)].mean()), "n": int((un & (dt % 12 == m)).sum())}
                for m in range(12) if (un & (dt % 12 == m)).any()}
    by_pair = {}
    for a, b in sorted({tuple(sorted((camera[x], camera[y]))) for x, y in zip(r1[trained], r2[trained])}):
        sel = trained & (np.minimum(camera[r1], camera[r2]) == a) & (np.maximum(camera[r1], camera[r2]) == b)
        key = f"{cams[a]}-{cams[b]}"
        by_pair[key] = {"acc": float(right[sel].mean()), "n": int(sel.sum()),
                        "acc_sync_pairs": float(right[sel & (label == 1)].mean()) if (sel & (label == 1)).any() else None,
                        "acc_unsync_pairs": float(right[sel & (label == 0)].mean()) if (sel & (label == 0)).any() else None}
    out[f"{split}_sync_breakdown"] = {
        "synchronized_pairs": {"acc": float(right[trained & (label == 1)].mean()), "n": int((trained & (label == 1)).sum())},
        "unsynchronized_by_gap": by_gap, "unsynchronized_by_dt_mod_12": by_phase, "by_camera_pair": by_pair}
    return out
