"""A picture to check geometry by eye: one frame from every camera with the 2D skeleton.

Reads through the raw reader and the calibration file, exactly as the store build will.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .geometry import PARENTS, joints17, project
from .raw import Sequence, calibration_for, discover, iter_frames, read_poses, sequence_length

_LEFT = (4, 5, 6, 11, 12, 13)
_RIGHT = (1, 2, 3, 14, 15, 16)


def draw_skeleton(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Draw [17, 2] pixel joints on an RGB image (left side blue, right red, centre green)."""
    out = img.copy()
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
    """Write a 2 x 2 PNG: frame `frame` of one sequence from all cameras, skeleton drawn."""
    raw = Path(raw)
    seqs = discover(raw, (subject,) if subject else None)
    seq: Sequence = next((s for s in seqs if action in (None, s.name, s.action)), None)
    if seq is None:
        raise ValueError(f"{raw}: no sequence named {action!r} for {subject or 'any subject'}")
    n = sequence_length(seq)
    frame = n // 2 if frame is None else frame
    if not 0 <= frame < n:
        raise ValueError(f"{seq.key}: frame {frame} out of range (0..{n - 1})")
    pose = joints17(read_poses(seq.poses_path)[frame])
    cams = calibration_for(raw)[seq.subject]
    tiles = []
    for cam_id, path in seq.videos.items():
        img = next(iter_frames(path, 1, frame))
        img = draw_skeleton(img, project(pose, cams[cam_id]))
        cv2.putText(img, f"{seq.key} cam {cam_id} t={frame}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(img)
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, h - t.shape[0], 0, w - t.shape[1], cv2.BORDER_CONSTANT) for t in tiles]
    while len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.concatenate([np.concatenate(tiles[i:i + 2], 1) for i in range(0, len(tiles), 2)], 0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return out


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
