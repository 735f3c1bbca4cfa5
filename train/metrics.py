"""3D pose metrics (paper, section 4), for numpy arrays and torch tensors alike.

Poses are [N, J, 3] millimetres in the same frame. Each metric returns the per-pose error [N]
(mean Euclidean distance over the joints); `summary` averages them.

- mpjpe:  the prediction as it is.
- nmpjpe: the prediction scaled first by the least-squares optimal scale (about the origin,
          which is the root for root-relative poses).
- pmpjpe: the prediction aligned first by Procrustes: rotation, scale and translation.

With the root fixed at zero in both poses, the root adds an error of 0 to the mean over 17
joints; `ROOT_CORRECTION` (17/16) turns that mean into the mean over the 16 predicted joints,
as the paper reports. It applies to mpjpe and nmpjpe (scaling about the origin keeps the root
at zero), not to pmpjpe (the alignment moves the root).
"""
from __future__ import annotations

import numpy as np
import torch

from h36m_prep.geometry import procrustes

ROOT_CORRECTION = 17 / 16


def _numpy(fn):
    """Run fn on float64 numpy arrays; torch inputs come back as tensors of their dtype and device."""
    def wrapped(pred, gt):
        if isinstance(pred, torch.Tensor):
            out = fn(pred.detach().cpu().double().numpy(), gt.detach().cpu().double().numpy())
            return torch.from_numpy(out).to(dtype=pred.dtype, device=pred.device)
        return fn(np.asarray(pred, np.float64), np.asarray(gt, np.float64))
    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


@_numpy
def mpjpe(pred, gt):
    """[N, J, 3] x 2 -> [N] mean joint error (mm)."""
    return np.linalg.norm(pred - gt, axis=-1).mean(-1)


@_numpy
def optimal_scale(pred, gt):
    """[N] scale s minimising |s * pred - gt|^2 per pose."""
    return (pred * gt).sum((-1, -2)) / np.maximum((pred * pred).sum((-1, -2)), 1e-12)


@_numpy
def nmpjpe(pred, gt):
    """[N] mean joint error after scaling the prediction optimally."""
    return mpjpe(optimal_scale(pred, gt)[:, None, None] * pred, gt)


@_numpy
def pmpjpe(pred, gt):
    """[N] mean joint error after Procrustes alignment (rotation, scale, translation)."""
    return mpjpe(procrustes(pred, gt)[0], gt)


def summary(pred, gt, root_fixed: bool = True) -> dict:
    """Mean of the three metrics over N poses (mm), with the 17/16 correction where it applies
    (root_fixed: the root is zero in both poses, so it contributed 0 to the joint mean)."""
    c = ROOT_CORRECTION if root_fixed else 1.0
    out = {"mpjpe": float(mpjpe(pred, gt).mean()) * c, "nmpjpe": float(nmpjpe(pred, gt).mean()) * c,
           "pmpjpe": float(pmpjpe(pred, gt).mean()), "n": int(len(pred))}
    return out
