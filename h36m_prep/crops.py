"""Subject-centred crops of a virtual camera, their poses, and foreground masks.

Stages are functions of arrays. A frame's crop is the image of a pinhole camera at the real
camera's centre, turned by R_v to look at the root joint, undistorted, with a focal length
that makes the joints fill the S x S crop (paper, sections 3.3-3.4).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from .geometry import (Camera, crop_focal, crop_intrinsics, crop_sampling_map, pixel_rays, project_virtual,
                       virtual_rotation, world_to_camera)


@dataclasses.dataclass(frozen=True)
class CropGeometry:
    """One frame's crop camera and pose.

    R_v [3, 3]: real camera -> virtual camera. K [3, 3]: crop intrinsics (px).
    root_cam [3] mm: the root in the real camera frame. pose3d [17, 3] mm: virtual-camera frame,
    root-relative. pose2d [17, 2]: crop pixels. box [4]: x0, y0, x1, y1 of the crop's footprint
    in the real image (px). map_x, map_y [S, S] float32: where each crop pixel samples the image.
    """

    R_v: np.ndarray
    K: np.ndarray
    root_cam: np.ndarray
    pose3d: np.ndarray
    pose2d: np.ndarray
    box: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray


def crop_geometry(pose_world: np.ndarray, cam: Camera, size: int, margin: float) -> CropGeometry:
    """pose_world [17, 3] mm -> the crop of that frame in camera `cam`."""
    X = world_to_camera(pose_world, cam)
    R_v = virtual_rotation(X[0])
    K = crop_intrinsics(crop_focal(X, R_v, size, margin), size)
    X_v = X @ R_v.T
    pose3d = X_v - X_v[0]
    map_x, map_y = crop_sampling_map(R_v, K, cam, size)
    edge_x = np.concatenate([map_x[0], map_x[-1], map_x[:, 0], map_x[:, -1]])
    edge_y = np.concatenate([map_y[0], map_y[-1], map_y[:, 0], map_y[:, -1]])
    box = np.array([edge_x.min(), edge_y.min(), edge_x.max(), edge_y.max()])
    return CropGeometry(R_v, K, X[0], pose3d, project_virtual(X_v, K), box, map_x, map_y)


def warp(image: np.ndarray, g: CropGeometry, nearest: bool = False) -> np.ndarray:
    """Sample an image of the real camera (or its background, or a mask) into the crop."""
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(image, g.map_x, g.map_y, interp, borderMode=cv2.BORDER_REPLICATE)


def foreground_mask(crop: np.ndarray, background: np.ndarray, threshold: float) -> np.ndarray:
    """Per-pixel |crop - background| thresholding (largest channel difference, grey levels),
    cleaned by a small opening and closing. [S, S, 3] x2 -> [S, S] uint8 in {0, 1}."""
    d = cv2.absdiff(crop, background)
    diff = cv2.max(cv2.max(d[..., 0], d[..., 1]), d[..., 2])  # numpy's max(axis=-1) is 25x slower
    mask = (diff > threshold).astype(np.uint8)
    close = 2 * max(1, round(2 * crop.shape[0] / 256)) + 1  # 5 px at 256
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((close, close), np.uint8))


def moving_frames(pose_world: np.ndarray, threshold: float) -> np.ndarray:
    """[T, 17, 3] mm -> [T] bool: some joint moved more than `threshold` mm since the last kept
    frame (the first frame is kept). The paper drops frames without significant motion."""
    keep = np.zeros(len(pose_world), dtype=bool)
    if len(pose_world):
        keep[0] = True
        last = pose_world[0]
        for t in range(1, len(pose_world)):
            if np.linalg.norm(pose_world[t] - last, axis=-1).max() > threshold:
                keep[t] = True
                last = pose_world[t]
    return keep


# ---------------------------------------------------------------- label-free crops (no poses)

DETECT_SIDE = 480  # px: person detection runs on frames scaled so that the long side is at most this


def detect_scale(width: int, height: int) -> float:
    return min(1.0, DETECT_SIDE / max(width, height))


def detect_person(frame: np.ndarray, background: np.ndarray, threshold: float, min_fraction: float = 2e-4) -> np.ndarray:
    """The person in a frame, found as the paper finds the foreground (|frame - median| above the
    mask threshold). Fragments closer than about 2 % of the image's size are joined (a limb
    split from the body by a colour close to the background's), and the largest joined component
    is kept, so that a second person or a flicker at the edge does not move the crop.
    frame, background: [H, W, 3] at detection scale. -> [x0, y0, x1, y1] (pixels of the given
    frame, inclusive edges) or NaNs when nothing as large as min_fraction of the frame differs."""
    mask = foreground_mask(frame, background, threshold)
    reach = 2 * max(1, round(0.01 * max(mask.shape))) + 1
    joined = cv2.dilate(mask, np.ones((reach, reach), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    if n < 2:
        return np.full(4, np.nan)
    area = np.bincount(labels[mask > 0], minlength=n)[1:]  # foreground pixels of each joined component
    k = 1 + int(np.argmax(area))
    if area[k - 1] < min_fraction * mask.size:
        return np.full(4, np.nan)
    ys, xs = np.nonzero((labels == k) & (mask > 0))
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


def _running(x: np.ndarray, window: int, reduce) -> np.ndarray:
    w = max(1, int(window)) | 1
    if w == 1 or len(x) < 2:
        return x
    pad = np.pad(x, ((w // 2, w // 2),) + ((0, 0),) * (x.ndim - 1), mode="edge")
    return reduce(np.lib.stride_tricks.sliding_window_view(pad, w, axis=0), axis=-1)


def smooth_track(boxes: np.ndarray, window: int, size_window: int | None = None,
                 size_quantile: float = 0.8) -> tuple[np.ndarray, np.ndarray, int]:
    """[T, 4] per-frame boxes (NaN where nothing was found) -> (centre [T, 2], half side [T],
    frames without a detection). Gaps are filled by interpolation in time; the centre is smoothed
    by a running median (outliers) then a running mean (jitter) over `window` frames. A person's
    size changes slowly, but a limb that matches the background (or a ghost of the person left
    in the median) shrinks the box for a moment: the half side is a high running quantile over
    the longer `size_window`, then the same running mean."""
    T = len(boxes)
    found = np.isfinite(boxes).all(axis=1)
    if not found.any():
        return np.full((T, 2), np.nan), np.full(T, np.nan), T
    centre = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2 + 0.5
    track = np.concatenate([centre, half[:, None]], -1)
    t = np.arange(T)
    for j in range(3):
        track[:, j] = np.interp(t, t[found], track[found, j])
    centre = _running(_running(track[:, :2], window, np.median), window, np.mean)
    half = _running(track[:, 2], size_window or window, lambda a, axis: np.quantile(a, size_quantile, axis=axis))
    return centre, _running(half, window, np.mean), int((~found).sum())


def label_free_geometry(centre: np.ndarray, half: float, cam: Camera, size: int, margin: float,
                        calibrated: bool) -> CropGeometry:
    """The crop of a frame without poses: centred on the person's box (centre [2], half side,
    video pixels). Calibrated: the virtual camera turned to look along the ray through the centre
    (only the direction is known) with the box's corners filling the crop plus `margin`;
    uncalibrated (`cam` a pixel camera, rig.pixel_camera): the square image crop of side
    2 half (1 + margin). pose3d, pose2d and root_cam are NaN: nothing is known about depth or joints."""
    u, v = float(centre[0]), float(centre[1])
    if calibrated:
        R_v = virtual_rotation(pixel_rays(np.array([u, v]), cam))
        corners = np.array([[u + a * half, v + b * half] for a in (-1, 0, 1) for b in (-1, 0, 1)])
        K = crop_intrinsics(crop_focal(pixel_rays(corners, cam), R_v, size, margin), size)
    else:
        R_v = np.eye(3)
        f = (size / 2.0) / (half * (1.0 + margin))
        K = np.array([[f, 0, (size - 1) / 2 - u * f], [0, f, (size - 1) / 2 - v * f], [0, 0, 1.0]])
    map_x, map_y = crop_sampling_map(R_v, K, cam, size)
    edge_x = np.concatenate([map_x[0], map_x[-1], map_x[:, 0], map_x[:, -1]])
    edge_y = np.concatenate([map_y[0], map_y[-1], map_y[:, 0], map_y[:, -1]])
    box = np.array([edge_x.min(), edge_y.min(), edge_x.max(), edge_y.max()])
    nan = np.full((17, 3), np.nan)
    return CropGeometry(R_v, K, np.full(3, np.nan), nan, nan[:, :2], box, map_x, map_y)


SILHOUETTE = 32  # px: the side of the silhouette a label-free store keeps per row (motion measure)


def silhouette(mask: np.ndarray) -> np.ndarray:
    """[S, S] 0/1 crop mask -> [32, 32] uint8 0/1: the person's shape in the crop, which follows
    the person, so it changes when the pose changes (the label-free motion measure)."""
    small = cv2.resize(mask.astype(np.float32), (SILHOUETTE, SILHOUETTE), interpolation=cv2.INTER_AREA)
    return (small > 0.5).astype(np.uint8)


def silhouette_threshold(share: float) -> float:
    """The motion threshold of silhouettes: sqrt of the number of the 32 x 32 pixels that change
    (`moving_frames` and the sampler measure the Euclidean distance of the 0/1 silhouettes)."""
    return float(np.sqrt(share * SILHOUETTE * SILHOUETTE))
