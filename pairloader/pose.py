"""`PoseLoader`: images with standardized 3D pose targets, for fine-tuning and evaluation.

The image is the centred view of the store crop that pretraining shows too (by default the
paper's 224 of 256), resized to the output size, with the background removed (the store mask,
the mean fill: exactly as in pretraining; the paper's main rows) or kept ("with background").
Targets are the
16 non-root joints of `pose3d` (mm, virtual-camera frame, root at zero), standardized per joint
and axis by the mean and standard deviation of the training set (paper, section 3.4). A random
horizontal flip mirrors the image and the pose together: x negated, left and right swapped.
The train split visits `moving` frames in a keyed random order per epoch; the test split (or
any split with evaluation=True: a validation subject's training frames) visits every `every`-th
frame (frame % every == 0) once, in store order, the last batch padded and marked by `valid`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from numba import njit

from h36m_prep import store as S
from h36m_prep.geometry import mirror_pose

from h36m_prep.store import StoreReader
from .fetch import read_ahead
from .loader import AHEAD, cpu_batches, resolve_backend, step_range
from .render import render_cpu
from .draws import key, permute, uniform, view_affine
from .sampler import KEPT, REMOVED, VIEW

BACKGROUNDS = {"kept": KEPT, "removed": REMOVED}


def require_poses(g, store) -> None:
    if not S.has_poses(g):
        raise ValueError(f"{store}: has no poses (a rig built without poses3d.npy); it serves pretraining, and "
                         "fine-tuning and evaluation need a labelled store (Human3.6M, or a rig with poses3d.npy)")


def pose_stats(store: str | Path, subjects=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint mean and standard deviation [17, 3] (mm) of pose3d over the training rows (of
    `subjects`, default all), mirrored copies included (flip augmentation makes them training
    targets too)."""
    g = S.open_store(store)
    require_poses(g, store)
    rows = S.row_mask(g, "train", subjects)
    pose = g["pose3d"][:][rows].astype(np.float64)
    both = np.concatenate([pose, mirror_pose(pose)])
    mean, std = both.mean(axis=0), both.std(axis=0)
    std[0] = 1.0  # the root is fixed at zero
    return mean, np.maximum(std, 1e-6)


@dataclasses.dataclass(frozen=True)
class PosePlan:
    """rows [B] store rows; mirrored [B] bool; affine [B, 2, 3]; valid [B] bool; bg_mode:
    KEPT or REMOVED, for every image."""

    rows: np.ndarray
    mirrored: np.ndarray
    affine: np.ndarray
    valid: np.ndarray
    bg_mode: int = KEPT

    def images(self):
        n = len(self.rows)
        return (self.rows, np.full(n, self.bg_mode, np.int8), np.full(n, -1, np.int64), np.zeros(n, bool),
                self.affine)


@njit(cache=True)
def _plan_poses(seed, rank, world_size, step, batch, rows, shuffle, flip, crop, out_size, window):
    out_rows = np.empty(batch, np.int64)
    mirrored = np.zeros(batch, np.bool_)
    affine = np.empty((batch, 2, 3), np.float64)
    valid = np.ones(batch, np.bool_)
    n = rows.shape[0]
    for i in range(batch):
        pos = (np.int64(step) * world_size + rank) * batch + i
        if shuffle:
            out_rows[i] = rows[permute(pos % n, n, key(seed, 0x9053, pos // n))]
        else:
            valid[i] = pos < n
            out_rows[i] = rows[min(pos, n - 1)]
        if flip:
            u, _ = uniform(key(seed, 0xF11B, pos))
            mirrored[i] = u < 0.5
        view_affine(affine[i], 0.5, 0.5, 0.5, 0.5, mirrored[i], crop, out_size, window, window, 0.0, 0.0)
    return out_rows, mirrored, affine, valid


class PoseSampler:
    """window: the centred view's side, a fraction of the crop; bg_mode: KEPT or REMOVED."""

    def __init__(self, rows: np.ndarray, batch: int, crop: int, out_size: int, shuffle: bool, flip: bool,
                 window: float = VIEW, bg_mode: int = REMOVED):
        self.rows, self.batch, self.crop, self.out_size = rows, batch, crop, out_size
        self.shuffle, self.flip, self.window, self.bg_mode = shuffle, flip, window, bg_mode

    def plan(self, seed: int, step: int, rank: int = 0, world_size: int = 1) -> PosePlan:
        return PosePlan(*_plan_poses(seed, rank, world_size, step, self.batch, self.rows, self.shuffle,
                                     self.flip, self.crop, self.out_size, self.window), bg_mode=self.bg_mode)


class PoseLoader:
    """Batches: image float32 [B, 3, O, O] (normalized), pose [B, 17, 3] mm (mirrored with the
    image), target [B, 16, 3] standardized non-root joints, row [B], mirrored [B], valid [B],
    step. subjects: only these (default: all of the split). stats: (mean, std) [17, 3];
    default pose_stats(store, subjects). background: 'removed' (the store mask and the mean
    fill, as in pretraining) or 'kept'. window: the centred view's side as a fraction of the
    crop (default the paper's 224 of 256, as pretraining shows). backend, workers, threads: as
    for PairLoader; store and ahead too."""

    def __init__(self, store: str | Path, batch_size: int = 16, seed: int = 0, split: str = "train",
                 every: int = 1, backend: str = "auto", workers: int = 2, start_step: int = 0,
                 steps: int | None = None, flip: bool | None = None, out_size: int = 224,
                 stats: tuple[np.ndarray, np.ndarray] | None = None, rank: int = 0, world_size: int = 1,
                 threads: int = 2, device_id: int | None = None, subjects=None, background: str = "removed",
                 window: float = VIEW, uint8: bool = False, evaluation: bool | None = None, ahead: int = AHEAD):
        if split not in ("train", "test"):
            raise ValueError(f"split {split!r}: choose 'train' or 'test'")
        if background not in BACKGROUNDS:
            raise ValueError(f"background {background!r}: choose {' or '.join(BACKGROUNDS)}")
        g = S.open_store(store)
        S.require_complete(g, store)
        require_poses(g, store)
        self.uint8 = uint8
        evaluation = split == "test" if evaluation is None else evaluation
        rows = S.rows(g, split, subjects, moving=None if evaluation else True, every=every)
        if not len(rows):
            raise ValueError(f"{store}: no {split} rows (every={every}, subjects={subjects or 'all'})")
        train = not evaluation
        self.sampler = PoseSampler(rows, batch_size, int(g.attrs["crop_size"]), out_size, train,
                                   train if flip is None else flip, window, BACKGROUNDS[background])
        self.pose3d = g["pose3d"]
        self.mean, self.std = stats if stats is not None else pose_stats(store, subjects)
        if steps is None and not train:
            steps = -(-len(rows) // (batch_size * world_size)) - start_step  # one pass
        self.reader = StoreReader(store)
        self.backend = resolve_backend(backend, device_id)
        self.seed, self.workers, self.threads, self.device_id = seed, workers, threads, device_id
        self.start_step, self.steps, self.rank, self.world_size = start_step, steps, rank, world_size
        self.ahead = ahead

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless loader has no length")
        return self.steps

    def plan(self, step: int) -> PosePlan:
        return self.sampler.plan(self.seed, step, self.rank, self.world_size)

    def _cpu_batch(self, step: int) -> dict:
        plan = self.plan(step)
        return {"image": render_cpu(self.reader, plan, self.sampler.out_size, self.backend, self.uint8),
                **self.targets(plan, step)}

    def targets(self, plan: PosePlan, step: int) -> dict:
        unique, inverse = np.unique(plan.rows, return_inverse=True)
        pose = self.pose3d.get_orthogonal_selection((unique,))[inverse].astype(np.float64)
        pose[plan.mirrored] = mirror_pose(pose[plan.mirrored])
        target = (pose - self.mean) / self.std
        return {"pose": torch.from_numpy(pose.astype(np.float32)),
                "target": torch.from_numpy(target[:, 1:].astype(np.float32)),
                "row": torch.from_numpy(plan.rows.copy()), "mirrored": torch.from_numpy(plan.mirrored.copy()),
                "valid": torch.from_numpy(plan.valid.copy()), "step": step}

    def __iter__(self):
        steps = step_range(self.start_step, self.steps)
        if self.backend != "dali":
            yield from cpu_batches(self._cpu_batch, read_ahead(steps, self.plan, self.reader, self.ahead), self.workers)
            return
        from .pipeline import PlanSource, build_pipeline, to_torch

        source = PlanSource(self.reader, self.sampler, self.seed, self.start_step, self.steps, self.rank,
                            self.world_size, ahead=self.ahead)
        pipe = build_pipeline(source, self.sampler.batch, self.sampler.out_size, self.workers, self.threads,
                              self.device_id)
        for step in steps:
            (x,) = pipe.run()
            plan = self.plan(step)
            yield {"image": to_torch(x, self.device_id is not None), **self.targets(plan, step)}


def unstandardize(target: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """[B, 16, 3] standardized -> [B, 17, 3] mm with the root at zero."""
    m = torch.as_tensor(mean[1:], dtype=target.dtype, device=target.device)
    s = torch.as_tensor(std[1:], dtype=target.dtype, device=target.device)
    pose = target * s + m
    return torch.cat([torch.zeros_like(pose[:, :1]), pose], dim=1)
