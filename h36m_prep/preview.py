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
    from .rig import is_rig

    raw = Path(raw)
    tiles = _rig_tiles(raw, action, frame) if is_rig(raw) else _h36m_tiles(raw, subject, action, frame)
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


def _h36m_tiles(raw: Path, subject: str | None, action: str | None, frame: int | None) -> list[np.ndarray]:
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
    return [_label(draw_skeleton(next(iter_frames(path, 1, frame)), project(pose, cams[cam_id])),
                   f"{seq.key} cam {cam_id} t={frame}") for cam_id, path in seq.videos.items()]


def _rig_tiles(raw: Path, take: str | None, frame: int | None) -> list[np.ndarray]:
    from .rig import discover_rig, read_rig_poses, rig_calibration, take_length

    calib = rig_calibration(raw)
    takes = discover_rig(raw, calib)
    seq = next((t for t in takes if take in (None, t.name)), None)
    if seq is None:
        raise ValueError(f"{raw}: no take named {take!r} (takes: {', '.join(t.name for t in takes)})")
    n = take_length(seq, calib)[0]
    frame = n // 2 if frame is None else frame
    if not 0 <= frame < n:
        raise ValueError(f"{seq.key}: frame {frame} out of range (0..{n - 1})")
    pose = read_rig_poses(seq.poses_path)[frame] if seq.poses_path is not None and calib is not None else None
    tiles = []
    for cam_id, path in seq.videos.items():
        img = next(iter_frames(path, 1, frame + seq.offsets.get(cam_id, 0)))
        if pose is not None:
            img = draw_skeleton(img, project(pose, calib[cam_id]))
        tiles.append(_label(img, f"{seq.name} {cam_id} t={frame}"))
    return tiles


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
