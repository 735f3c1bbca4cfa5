"""`sync-train pretrain`: the Siamese synchronization / flip network on pair batches."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from models import SiameseSync, accuracy, ssl_loss
from pairloader import PairLoader

from . import checkpoint
from .config import PretrainConfig, mask_labels


def distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def count_hits(hits: dict, s, f, sync_label, flip_label) -> None:
    """Add the correct / counted predictions of both heads to hits {'sync': [c, n], 'flip': [c, n]}."""
    for name, logit, label in (("sync", s, sync_label), ("flip", f, flip_label)):
        c, n = accuracy(logit.detach().cpu(), label.cpu())
        hits[name][0] += c
        hits[name][1] += n


def rate(hits: dict, name: str) -> float:
    return hits[name][0] / max(hits[name][1], 1)


def cosine(cfg) -> callable:
    """lr factor at step t: cosine from lr to lr_min over cfg.steps."""
    return lambda t: (cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1 + math.cos(math.pi * min(t, cfg.steps) / cfg.steps))) / cfg.lr


def pretrain(store: str | Path, out: str | Path, cfg: PretrainConfig, resume: bool = False,
             progress: bool = True, stop_after: int | None = None) -> dict:
    """Train (or continue) the run in `out`; returns the final metrics ({} if stopped early).

    stop_after: stop with a checkpoint once this many steps are done (a preemptible job runs
    in slices of the same schedule; --resume continues it).
    """
    out = Path(out)
    rank, world, local = distributed()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda", local) if gpu else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    model = SiameseSync(cfg.arch, cfg.fusion, cfg.weights).to(device)
    if gpu and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine(cfg))
    path, start = out / "checkpoint.pt", 0
    if resume:
        state = checkpoint.load(path)
        if state["config"] != cfg.__dict__:
            raise ValueError(f"{out}: was trained with another config; resume with the same options")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        start = state["step"]
    elif path.exists():
        raise ValueError(f"{out}: already holds a run; pass --resume to continue it or choose a new --out")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    if cfg.compile:
        net = torch.compile(net)
    loader = PairLoader(store, batch_size=cfg.batch, seed=cfg.seed, backend=cfg.backend, workers=cfg.workers,
                        start_step=start, steps=min(cfg.steps, stop_after or cfg.steps) - start,
                        rank=rank, world_size=world,
                        sampler=cfg.sampler_config(), device_id=local if gpu and cfg.backend == "dali" else None)

    def save(done: int) -> None:
        if rank == 0:
            checkpoint.save(path, model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                            step=done, config=cfg.__dict__, rng=checkpoint.rng_state())

    log = open(out / "log.jsonl", "a") if rank == 0 else None
    tb = _tensorboard(out) if rank == 0 else None
    hits = {"sync": [0, 0], "flip": [0, 0]}
    done, t0, pairs = start, time.perf_counter(), 3 * cfg.batch * world
    bar = tqdm(total=cfg.steps, initial=start, desc="pretrain", disable=not progress or rank != 0, unit="step")
    net.train()
    try:
        for batch in loader:
            step = batch["step"]
            x1, x2 = batch["x1"].to(device, non_blocking=True), batch["x2"].to(device, non_blocking=True)
            sync_label, flip_label = (t.to(device) for t in mask_labels(batch, cfg.tasks))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu and cfg.bf16):
                s, f = net(x1, x2)
            loss = ssl_loss(s.float(), f.float(), sync_label, flip_label)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done = step + 1
            count_hits(hits, s, f, sync_label, flip_label)
            if rank == 0 and (done % cfg.log_every == 0 or step == start):
                dt = time.perf_counter() - t0
                rec = {"step": done, "loss": loss.item(), "lr": sched.get_last_lr()[0],
                       "acc_sync": rate(hits, "sync"), "acc_flip": rate(hits, "flip"),
                       "steps_per_s": (done - start) / dt, "pairs_per_s": (done - start) * pairs / dt}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if tb:
                    for k, v in rec.items():
                        if k != "step":
                            tb.add_scalar(f"pretrain/{k}", v, done)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", sync=f"{rec['acc_sync']:.2f}",
                                flip=f"{rec['acc_flip']:.2f}", pairs_s=f"{rec['pairs_per_s']:.0f}")
                hits = {"sync": [0, 0], "flip": [0, 0]}
            if done % cfg.checkpoint_every == 0:
                save(done)
            bar.update(1)
    except KeyboardInterrupt:
        save(done)
        bar.close()
        raise SystemExit(f"interrupted: checkpoint at step {done} in {path}; rerun with --resume")
    bar.close()
    save(done)
    metrics = {}
    if done < cfg.steps:  # stopped early on purpose
        return metrics
    if rank == 0:
        metrics = pretext_accuracy(model, store, cfg, device)
        metrics.update({"steps": done, "seconds": round(time.perf_counter() - t0, 1)})
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        log.close()
        if tb:
            tb.close()
    return metrics


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


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time; the JSONL log has the same
        return None
    return SummaryWriter(str(out / "tb"))
