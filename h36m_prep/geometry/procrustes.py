"""Procrustes alignment: the similarity transform that best maps one pose onto another."""
from __future__ import annotations

import numpy as np


def procrustes(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares rotation, scale and translation taking `pred` onto `target`.

    pred, target: [..., J, 3] (mm). Returns (aligned [..., J, 3], R [..., 3, 3], s [...],
    t [..., 3]) with aligned = s * pred @ R^T + t and det(R) = +1 (no reflections).
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mu_p = pred.mean(axis=-2, keepdims=True)
    mu_t = target.mean(axis=-2, keepdims=True)
    p0, t0 = pred - mu_p, target - mu_t
    cov = np.swapaxes(t0, -1, -2) @ p0  # [..., 3, 3] = sum_j t_j p_j^T
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.ones(S.shape)
    D[..., -1] = d
    R = U @ (D[..., :, None] * Vt)
    var_p = np.sum(p0 * p0, axis=(-1, -2))
    s = np.sum(S * D, axis=-1) / np.maximum(var_p, 1e-12)
    t = mu_t[..., 0, :] - s[..., None] * np.einsum("...ij,...j->...i", R, mu_p[..., 0, :])
    aligned = s[..., None, None] * (pred @ np.swapaxes(R, -1, -2)) + t[..., None, :]
    return aligned, R, s, t
