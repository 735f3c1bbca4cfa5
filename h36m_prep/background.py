"""Per-view median backgrounds: the static room, without the person.

For one subject and camera, the per-pixel median over frames sampled evenly across all of that
subject's sequences (paper, section 3.2). Where the person is known to be in a sample (near the
projected skeleton) that sample does not vote, so a person who stands still in a few
sequences leaves no ghost. Memory is bounded by the number of samples, not the video length.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .geometry import Camera, project
from .raw import RawDataError


def sample_frames(videos: list[tuple[Path, int]], samples: int,
                  skip_bad: bool = False) -> list[tuple[int, int, np.ndarray]]:
    """Decode `samples` frames spread evenly over the concatenation of (video, usable frames).

    -> [(video index, frame t, RGB frame [H, W, 3] uint8)]. With skip_bad a video that fails
    to decode gives no samples (the build skips its sequence when it gets there).
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
        got = []
        try:
            for t in local:
                cap.set(cv2.CAP_PROP_POS_FRAMES, int(t))
                ok, bgr = cap.read()
                if not ok:
                    if skip_bad:
                        got = []
                        break
                    raise RawDataError(f"{path}: cannot decode frame {t} (truncated?); replace the "
                                       "file or skip the sequence with --skip-bad")
                got.append((v, int(t), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        finally:
            cap.release()
        out += got
    if not out:
        raise RawDataError(f"{videos[0][0].parent}: no frame of this view could be decoded for the "
                           "median background; replace the videos")
    return out


def person_region(pose_world: np.ndarray, cam: Camera, reach_mm: float = 150.0) -> np.ndarray:
    """[H, W] bool: pixels within about `reach_mm` of the projected skeleton (bones drawn thick,
    torso filled), a generous stand-in for where the body is in this frame."""
    from .geometry import BONES, world_to_camera

    X = world_to_camera(pose_world, cam)
    uv = project(pose_world, cam)
    r = max(2, int(np.ceil(reach_mm * max(cam.f) / max(float(X[:, 2].min()), 1.0))))
    region = np.zeros((cam.height, cam.width), np.uint8)
    pts = np.round(uv).astype(np.int32)
    if np.abs(pts).max() > 1e6:  # behind the camera or absurd: leave the sample out entirely
        return np.ones_like(region, dtype=bool)
    for c, p in BONES:
        cv2.line(region, tuple(pts[p]), tuple(pts[c]), 1, 2 * r)
    cv2.fillConvexPoly(region, cv2.convexHull(pts[[1, 4, 11, 14, 8, 7]]), 1)
    cv2.circle(region, tuple(pts[10]), r, 1, -1)
    return region.astype(bool)


def median_background(frames: list[np.ndarray], person: list[np.ndarray] | None = None) -> np.ndarray:
    """[H, W, 3] uint8 per-pixel median of the frames, leaving out each frame's person region
    ([H, W] bool per frame). A pixel covered by the person in every sample falls back to the
    plain median. Works in bands of rows to bound the temporary memory.
    """
    stack = np.stack(frames)
    n, H = stack.shape[:2]
    covered = np.stack(person) if person else None  # [n, H, W] bool
    out = np.empty(stack.shape[1:], dtype=np.uint8)
    for i in range(0, H, 64):
        band = stack[:, i:i + 64]
        valid = None if covered is None else (~covered[:, i:i + 64]).sum(axis=0)[..., None]  # [h, W, 1]
        median = np.zeros(band.shape[1:], np.float32)
        if valid is None or (valid == 0).any():  # the plain median is needed somewhere
            plain = np.sort(band, axis=0).astype(np.float32)
            median = 0.5 * (plain[(n - 1) // 2] + plain[n // 2])
        if valid is not None:
            # excluded samples sort last as 256; the median of the k valid ones is at (k-1)//2, k//2
            masked = band.astype(np.int16)
            masked[np.broadcast_to(covered[:, i:i + 64, :, None], masked.shape)] = 256
            masked.sort(axis=0)
            lo = np.take_along_axis(masked, (np.maximum(valid - 1, 0) // 2)[None], 0)[0]
            hi = np.take_along_axis(masked, (valid // 2)[None], 0)[0]
            median = np.where(valid > 0, 0.5 * (lo + hi), median)
        out[i:i + 64] = np.round(median).astype(np.uint8)
    return out
