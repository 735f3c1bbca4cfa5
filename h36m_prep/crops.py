"""Subject-centred crops of a virtual camera, their poses, and foreground masks.

Stages are functions of arrays. A frame's crop is the image of a pinhole camera at the real
camera's centre, turned by R_v to look at the root joint, undistorted, with a focal length
that makes the joints fill the S x S crop (paper, sections 3.3-3.4).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from .geometry import (Camera, crop_focal, crop_intrinsics, crop_sampling_map, project_virtual,
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
