"""A picture to check geometry by eye: one frame from every camera with the 2D skeleton.

Reads through the raw data's source (sources.py) and its calibration, exactly as the store build will.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .geometry import PARENTS

_LEFT = (4, 5, 6, 11, 12, 13)
_RIGHT = (1, 2, 3, 14, 15, 16)


def draw_skeleton(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Draw [17, 2] pixel joints on an RGB image (left side blue, right red, centre green);
    NaN joints (a store without poses) draw nothing."""
    out = img.copy()
    if not np.isfinite(uv).all():
        return out
    thick = max(1, round(img.shape[1] / 300))
    for j, p in enumerate(PARENTS):
        if p < 0:
            continue
        col = (60, 120, 255) if j in _LEFT else (255, 70, 60) if j in _RIGHT else (60, 220, 80)
        cv2.line(out, tuple(np.round(uv[p]).astype(int)), tuple(np.round(uv[j]).astype(int)), col, thick, cv2.LINE_AA)
    for q in uv:
        cv2.circle(out, tuple(np.round(q).astype(int)), thick + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return out


def preview_grid(raw: str | Path, out: str | Path, subject: str | None = None,
                 action: str | None = None, frame: int | None = None) -> Path:
    """Write a PNG grid: frame `frame` of one sequence (a rig: one take, `action`) from every
    camera, with the skeleton projected where there are poses."""
    from .sources import source_for

    raw = Path(raw)
    tiles = source_for(raw).preview_tiles(raw, subject, action, frame)
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, h - t.shape[0], 0, w - t.shape[1], cv2.BORDER_CONSTANT) for t in tiles]
    cols = 2 if len(tiles) <= 4 else 3
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.concatenate([np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)], 0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def store_preview(store: str | Path, out: str | Path, count: int = 6, seed: int = 0) -> Path:
    """Write a PNG of `count` random store rows: crop with its 2D pose, its mask, and a crop
    from the background bank, one column per row."""
    from .store import done_rows, open_store

    g = open_store(store)
    rows = np.flatnonzero(done_rows(g))
    pick = np.sort(np.random.default_rng(seed).choice(rows, min(count, len(rows)), replace=False))
    images = g["images"].get_orthogonal_selection((pick,))
    masks = g["masks"].get_orthogonal_selection((pick,))
    pose2d = g["pose2d"].get_orthogonal_selection((pick,))
    bank = g["backgrounds"]
    bgs = bank.get_orthogonal_selection((np.linspace(0, bank.shape[0] - 1, len(pick)).round().astype(int),))
    cols = [np.concatenate([draw_skeleton(im, p), np.repeat(m[..., None] * 255, 3, -1), bg], 0)
            for im, m, p, bg in zip(images, masks, pose2d, bgs)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(cols, 1), cv2.COLOR_RGB2BGR))
    return out
