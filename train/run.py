"""What every training command shares: ranks and device, AdamW with a cosine schedule, atomic
checkpoints and exact resume, the JSONL / TensorBoard logs and the progress bar."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint
from h36m_prep.lock import exclusive

from .config import HARMLESS


def distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def cosine(cfg) -> callable:
    """lr factor at step t: cosine from cfg.lr to cfg.lr_min over cfg.steps, after a linear
    warm-up over the first cfg.warmup steps (0: none)."""
    warmup = getattr(cfg, "warmup", 0)

    def factor(t: int) -> float:
        ramp = min(1.0, (t + 1) / warmup) if warmup else 1.0
        return ramp * (cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1 + math.cos(math.pi * min(t, cfg.steps) / cfg.steps))) / cfg.lr
    return factor


def exclusive_run(out: str | Path):
    """The run folder's writer lock (h36m_prep.lock), held by rank 0: a second training command
    into the same --out is refused while this one runs."""
    if int(os.environ.get("RANK", "0")) != 0:
        return contextlib.nullcontext()
    return exclusive(out, "run folder")


class Run:
    """One training run in the folder `out`, for a config with the fields lr, lr_min, steps,
    weight_decay, log_every, checkpoint_every, channels_last, compile.

    The model is built (and seeded) by the caller; its trainable parameters get the optimizer.
    `resume` loads model, optimizer, schedule, step and RNG from out/checkpoint.pt (the config
    must be the same); otherwise `out` must not hold a run yet. `extra` is saved with every
    checkpoint (e.g. the target statistics of a pose model) and `loaded` holds what was saved.
    """

    def __init__(self, out: str | Path, cfg, model: torch.nn.Module, name: str, resume: bool = False,
                 progress: bool = True, extra: dict | None = None):
        self.out, self.cfg, self.name, self.extra = Path(out), cfg, name, extra or {}
        self.rank, self.world, self.local = distributed()
        self.gpu = torch.cuda.is_available()
        self.bf16 = bool(cfg.bf16 if self.gpu else getattr(cfg, "cpu_bf16", False))  # autocast to bfloat16
        self.device = torch.device("cuda", self.local) if self.gpu else torch.device("cpu")
        self.model = model.to(self.device)
        if self.gpu and cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, cosine(cfg))
        self.path, self.start, self.loaded = self.out / "checkpoint.pt", 0, {}
        if resume:
            state = checkpoint.load(self.path)
            now = dataclasses.asdict(cfg)
            differ = sorted(k for k in set(state["config"]) | set(now)
                            if k not in HARMLESS and state["config"].get(k, now.get(k)) != now.get(k))
            if differ:
                raise ValueError(f"{self.out}: was trained with another config ({', '.join(differ)} differ); "
                                 "resume with the same options")
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            checkpoint.set_rng_state(state["rng"])
            self.start, self.loaded = state["step"], state.get("extra", {})
        elif self.path.exists():
            raise ValueError(f"{self.out}: already holds a run; pass --resume to continue it or choose a new --out")
        self.done = self.start
        self.stop_requested = False
        self.net = torch.nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.log = self.tb = None
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.save(self.out / "config.json")
            if resume:  # records written after the checkpoint belong to steps that will be redone
                for log in ("log.jsonl", "eval.jsonl"):
                    _cut_log(self.out / log, self.start)
            self.log = open(self.out / "log.jsonl", "a")
            self.tb = _tensorboard(self.out)
        self.bar = tqdm(total=cfg.steps, initial=self.start, desc=name, unit="step",
                        disable=not progress or self.rank != 0)
        self.t0 = time.perf_counter()

    def step(self, loss: torch.Tensor, step: int) -> None:
        """One optimizer step on `loss`, the batch of `step`; checkpoints every checkpoint_every."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.done = step + 1
        if self.done % self.cfg.checkpoint_every == 0:
            self.save()
        self.bar.update(1)

    def batches(self, loader):
        """The loader's batches; after a Ctrl-C, stop at the end of the step in progress (its
        optimizer step, counter and log line all done)."""
        for batch in loader:
            yield batch
            if self.stop_requested:
                raise KeyboardInterrupt

    def due(self, step: int) -> bool:
        """Whether the batch of `step` is logged (every log_every steps and the first)."""
        return self.rank == 0 and ((step + 1) % self.cfg.log_every == 0 or step == self.start)

    def record(self, values: dict, items_per_step: int, unit: str) -> dict:
        """Log values (plus step, lr, steps/s and `unit`/s) to the JSONL log, TensorBoard and the bar."""
        dt = time.perf_counter() - self.t0
        rec = {"step": self.done, **values, "lr": self.sched.get_last_lr()[0],
               "steps_per_s": (self.done - self.start) / dt,
               f"{unit}_per_s": (self.done - self.start) * items_per_step * self.world / dt}
        self.log.write(json.dumps(rec) + "\n")
        self.log.flush()
        if self.tb:
            for k, v in rec.items():
                if k != "step":
                    self.tb.add_scalar(f"{self.name}/{k}", v, self.done)
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()})
        return rec

    def save(self) -> None:
        if self.rank == 0:
            checkpoint.save(self.path, model=self.model.state_dict(), optimizer=self.opt.state_dict(),
                            scheduler=self.sched.state_dict(), step=self.done, config=dataclasses.asdict(self.cfg),
                            rng=checkpoint.rng_state(), extra=self.extra)

    @contextlib.contextmanager
    def interruptible(self):
        """Ctrl-C or SIGTERM (what SLURM, Kubernetes and `kill` send before killing a job) inside
        writes a checkpoint at a step boundary and exits with how to resume.

        The signal is deferred to the end of the step in progress (see `batches`): a Ctrl-C between the
        optimizer step and the step counter would otherwise save a model one step ahead of its
        counter, and the resumed run would train that batch twice. A second Ctrl-C stops at
        once, without a checkpoint (the last one written stays valid)."""
        def request_stop(signum, frame):
            if self.stop_requested:
                raise SystemExit(f"interrupted twice: no checkpoint written; the last one in {self.path} "
                                 "is intact; rerun with --resume")
            self.stop_requested = True
            self.bar.write(f"{signal.Signals(signum).name}: stopping at the end of this step (again to stop now)")

        main_thread = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
        try:
            yield
            if self.stop_requested:  # the signal came after the last step
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            self.save()
            self.bar.close()
            raise SystemExit(f"interrupted: checkpoint at step {self.done} in {self.path}; rerun with --resume")
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def finish(self) -> bool:
        """Final checkpoint; True when the schedule is complete (not stopped early on purpose)."""
        self.bar.close()
        self.save()
        complete = self.done >= self.cfg.steps
        if self.log:
            self.log.close()
        if self.tb:
            self.tb.close()
        return complete

    def write_metrics(self, metrics: dict) -> dict:
        metrics = {**metrics, "steps": self.done, "seconds": round(time.perf_counter() - self.t0, 1)}
        if self.rank == 0:
            (self.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return metrics


def _cut_log(path: Path, step: int) -> None:
    """Keep the JSONL records of steps <= step (atomically)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(f".tmp.{path.name}")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time; the JSONL log has the same
        return None
    return SummaryWriter(str(out / "tb"))
