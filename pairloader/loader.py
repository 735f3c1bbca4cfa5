"""Loaders: `PairLoader` for the Siamese pretext task.

A batch of `batch_size` anchors holds P = 3 * batch_size pairs (synchronized, unsynchronized,
flipped per anchor; see `sampler`). Every batch is a pure function of (store, seed, step, rank,
world_size, sampler config): a loader started at step k yields the same batch k as one that
ran from 0, with any backend and any number of workers (pixels equal up to interpolation
rounding between backends).
"""
from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from h36m_prep.store import StoreReader
from .fetch import read_ahead
from .index import load_index
from .render import render_pairs
from .sampler import PairSampler, Plan, SamplerConfig


def step_range(start: int, steps: int | None):
    """The steps a loader yields: start, start + 1, ... (endless when steps is None)."""
    return itertools.count(start) if steps is None else range(start, start + steps)


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
        return True
    except ImportError:
        return False


def plan_tensors(plan: Plan, step: int) -> dict:
    """The labels and bookkeeping of a batch, as torch tensors."""
    return {
        "sync_label": torch.from_numpy(plan.sync_label.astype(np.int64)),
        "flip_label": torch.from_numpy(plan.flip_label.astype(np.int64)),
        "row1": torch.from_numpy(plan.rows[:, 0].copy()), "row2": torch.from_numpy(plan.rows[:, 1].copy()),
        "mirrored1": torch.from_numpy(plan.mirrored[:, 0].copy()),
        "mirrored2": torch.from_numpy(plan.mirrored[:, 1].copy()),
        "bg_mode1": torch.from_numpy(plan.bg_mode[:, 0].astype(np.int64)),
        "bg_mode2": torch.from_numpy(plan.bg_mode[:, 1].astype(np.int64)),
        "bg_index1": torch.from_numpy(plan.bg_index[:, 0].copy()),
        "bg_index2": torch.from_numpy(plan.bg_index[:, 1].copy()),
        "bg_mirrored1": torch.from_numpy(plan.bg_mirrored[:, 0].copy()),
        "bg_mirrored2": torch.from_numpy(plan.bg_mirrored[:, 1].copy()),
        "step": step,
    }


BACKENDS = ("dali", "opencv", "torch")
AHEAD = 4  # batches whose chunks a loader requests ahead from object storage


def resolve_backend(backend: str, device_id: int | None) -> str:
    """'auto': the DALI pipeline on a GPU (device_id given, DALI installed), else OpenCV."""
    if backend == "auto":
        return "dali" if device_id is not None and dali_available() else "opencv"
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)} or 'auto'")
    return backend


def cpu_batches(batch_of, steps, threads: int):
    """batch_of(step) for each step, in order, computed ahead by `threads` threads of this process
    (0: inline). The CPU backends release the GIL for their heavy work, and a batch made in a
    thread reaches the consumer without the copy into shared memory that worker processes need.
    A batch that fails raises here, in the consumer."""
    if threads <= 0:
        yield from map(batch_of, steps)
        return
    pool, ahead = ThreadPoolExecutor(threads, thread_name_prefix="pairloader"), deque()
    try:
        for step in steps:
            ahead.append(pool.submit(batch_of, step))
            if len(ahead) > 2 * threads:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class PairLoader:
    """Pair batches from a store: dicts with x1, x2 float32 [P, 3, O, O] (normalized),
    sync_label, flip_label [P] (1, 0, -1: not trained), row1, row2 [P] (store rows),
    mirrored1, mirrored2 [P] bool, bg_mode1, bg_mode2 [P] (0 kept, 1 removed, 2 substituted),
    bg_index1, bg_index2 [P] (background-bank row, -1 unless substituted), bg_mirrored1,
    bg_mirrored2 [P] bool (the background shows mirrored), and step.

    backend: 'dali' (the DALI pipeline, GPU when device_id is given), 'opencv' (uint8 OpenCV
    warps, the fast CPU path), 'torch' (the reference), or 'auto' (DALI with a GPU, else
    OpenCV). workers: DALI's reader processes, or the threads that render batches ahead for the
    CPU backends (0: render in the consuming thread); threads: DALI's threads. steps: how many
    batches (None: endless). split: whose frames are anchors ('test' for the pretext accuracy on
    the test subjects). uint8: batches of uint8 pixels (OpenCV backend), a quarter of the bytes,
    normalized after the transfer by `normalize` (as the float path, within float rounding).
    store: a folder or an object-storage URL; ahead: for a store in object storage, how many
    batches ahead of the one being rendered their chunks are requested (0: each chunk when read).
    """

    def __init__(self, store: str | Path, batch_size: int = 16, seed: int = 0, backend: str = "auto",
                 workers: int = 2, start_step: int = 0, steps: int | None = None, rank: int = 0,
                 world_size: int = 1, sampler: SamplerConfig | None = None, threads: int = 2,
                 device_id: int | None = None, split: str = "train", uint8: bool = False, subjects=None,
                 ahead: int = AHEAD):
        backend = resolve_backend(backend, device_id)
        if uint8 and backend != "opencv":
            raise ValueError(f"uint8 batches come from the OpenCV backend, not {backend!r}")
        self.uint8 = uint8
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        cfg = sampler or SamplerConfig()
        cfg = SamplerConfig(**{**cfg.__dict__, "batch": batch_size})
        self.sampler = PairSampler(load_index(store, split, subjects=subjects), cfg)
        self.reader = StoreReader(store)
        self.backend, self.seed, self.workers, self.threads = backend, seed, workers, threads
        self.start_step, self.steps, self.rank, self.world_size = start_step, steps, rank, world_size
        self.device_id, self.ahead = device_id, ahead

    def plan(self, step: int) -> Plan:
        return self.sampler.plan(self.seed, step, self.rank, self.world_size)

    def __iter__(self):
        return self._dali() if self.backend == "dali" else self._cpu()

    def _cpu(self):
        steps = read_ahead(step_range(self.start_step, self.steps), self.plan, self.reader, self.ahead)
        return cpu_batches(self._cpu_batch, steps, self.workers)

    def _cpu_batch(self, step: int) -> dict:
        plan = self.plan(step)
        x = render_pairs(self.reader, plan, self.sampler.cfg.out_size, self.backend, self.uint8)
        return {"x1": x[0], "x2": x[1], **plan_tensors(plan, step)}

    def _dali(self):
        from .pipeline import PlanSource, build_pipeline, to_torch

        source = PlanSource(self.reader, self.sampler, self.seed, self.start_step, self.steps,
                            self.rank, self.world_size, pairs=True, ahead=self.ahead)
        pipe = build_pipeline(source, 2 * 3 * self.sampler.cfg.batch, self.sampler.cfg.out_size,
                              self.workers, self.threads, self.device_id)
        try:
            for step in step_range(self.start_step, self.steps):
                (x,) = pipe.run()
                x = to_torch(x, self.device_id is not None)
                n_pairs = len(x) // 2
                yield {"x1": x[:n_pairs], "x2": x[n_pairs:], **plan_tensors(self.plan(step), step)}
        finally:
            del pipe
