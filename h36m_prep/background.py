"""Per-view median backgrounds: the static room, without the person.

For one subject and camera, the per-pixel median over frames sampled evenly across all of that
subject's sequences (paper, section 3.2). Where the person is known to be in a sample (the box
around the projected joints) that sample does not vote, so a person who stands still in a few
sequences leaves no ghost. Memory is bounded by the number of samples, not the video length.
"""
from __future__ import annotations

from pathlib import Path

import warnings

import cv2
import numpy as np

from .geometry import Camera, project
from .raw import RawDataError


def sample_frames(videos: list[tuple[Path, int]], samples: int) -> list[tuple[int, int, np.ndarray]]:
    """Decode `samples` frames spread evenly over the concatenation of (video, usable frames).

    -> [(video index, frame t, RGB frame [H, W, 3] uint8)].
    """
    total = sum(n for _, n in videos)
    picks = np.unique(np.linspace(0, total - 1, min(samples, total)).round().astype(int))
    out, start = [], 0
    for v, (path, n) in enumerate(videos):
        local = picks[(picks >= start) & (picks < start + n)] - start
        start += n
        if not len(local):
            continue
        cap = cv2.VideoCapture(str(path))
        try:
            for t in local:
                cap.set(cv2.CAP_PROP_POS_FRAMES, int(t))
                ok, bgr = cap.read()
                if not ok:
                    raise RawDataError(f"{path}: cannot decode frame {t} (truncated?); replace the "
                                       "file or skip the sequence with --skip-bad")
                out.append((v, int(t), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        finally:
            cap.release()
    return out


def person_box(pose_world: np.ndarray, cam: Camera, grow: float = 0.25, pad: int = 8) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 (px, clipped to the image) around the projected joints, grown by `grow` of
    the box height on each side to cover the body surface beyond the joint centres."""
    uv = project(pose_world, cam)
    x0, y0 = uv.min(axis=0)
    x1, y1 = uv.max(axis=0)
    g = grow * (y1 - y0) + pad
    return (max(0, int(x0 - g)), max(0, int(y0 - g)),
            min(cam.width, int(np.ceil(x1 + g))), min(cam.height, int(np.ceil(y1 + g))))


def median_background(frames: list[np.ndarray], boxes: list[tuple[int, int, int, int]] | None = None) -> np.ndarray:
    """[H, W, 3] uint8 per-pixel median of the frames, leaving out each frame's person box.

    A pixel covered by the person in every sample falls back to the plain median. Computed in
    bands of rows (np.median works on a float copy, large for full-size frames).
    """
    stack = np.stack(frames)
    out = np.empty(stack.shape[1:], dtype=np.uint8)
    for i in range(0, stack.shape[1], 64):
        band = stack[:, i:i + 64].astype(np.float32)
        plain = np.median(band, axis=0)
        if boxes:
            for k, (x0, y0, x1, y1) in enumerate(boxes):
                band[k, max(0, y0 - i):max(0, y1 - i), x0:x1] = np.nan
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: handled below
                robust = np.nanmedian(band, axis=0)
            plain = np.where(np.isnan(robust), plain, robust)
        out[i:i + 64] = np.round(plain).astype(np.uint8)
    return out
