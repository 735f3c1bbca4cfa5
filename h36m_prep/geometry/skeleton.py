"""The Human3.6M skeleton: the 32-joint layout of the raw files and the 17-joint subset.

Every joint index in the toolkit comes from here. Positions are millimetres throughout.
"""
from __future__ import annotations

import numpy as np

# The 32 joints of `MyPoseFeatures/D3_Positions/*.cdf` (variable `Pose`, [1, T, 96]),
# in file order, with the dataset's own names and kinematic parents.
H36M32_NAMES: tuple[str, ...] = (
    "Hips", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase", "RightToeSite",
    "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "LeftToeSite",
    "Spine", "Spine1", "Neck", "Head", "HeadSite",
    "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftHandThumb", "LeftThumbSite",
    "LeftWristEnd", "LeftWristSite",
    "RightShoulder", "RightArm", "RightForeArm", "RightHand", "RightHandThumb", "RightThumbSite",
    "RightWristEnd", "RightWristSite",
)
H36M32_PARENTS: tuple[int, ...] = (
    -1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14,
    12, 16, 17, 18, 19, 20, 19, 22, 12, 24, 25, 26, 27, 28, 27, 30,
)

# The 17-joint subset used by the method and by most of the literature.
H36M17_FROM_32: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "spine", "thorax", "neck", "head",
    "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
)
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16))
NUM_JOINTS = 17
ROOT = 0

# Joint order after a left/right swap: FLIP_PERM[j] is the joint that takes j's place.
FLIP_PERM: np.ndarray = np.arange(NUM_JOINTS)
for _a, _b in FLIP_PAIRS:
    FLIP_PERM[_a], FLIP_PERM[_b] = _b, _a
FLIP_PERM.setflags(write=False)

# Bones as (child, parent) pairs of the 17-joint skeleton.
BONES: tuple[tuple[int, int], ...] = tuple((j, p) for j, p in enumerate(PARENTS) if p >= 0)


def joints17(pose32: np.ndarray) -> np.ndarray:
    """[..., 32, 3] raw layout -> [..., 17, 3] subset (a copy)."""
    if pose32.shape[-2:] != (32, 3):
        raise ValueError(f"expected [..., 32, 3] joints, got shape {pose32.shape}")
    return pose32[..., H36M17_FROM_32, :].copy()


def bone_lengths(pose: np.ndarray) -> np.ndarray:
    """[..., 17, 3] mm -> [..., 16] mm, one length per entry of BONES."""
    child = np.array([c for c, _ in BONES])
    parent = np.array([p for _, p in BONES])
    return np.linalg.norm(pose[..., child, :] - pose[..., parent, :], axis=-1)


def mirror_pose(pose: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mirror [..., 17, 3] along one coordinate axis and swap left/right joints.

    The result is again a valid skeleton (a left arm stays a left arm): what a horizontally
    flipped image of the pose shows when `axis` is the camera's x axis.
    """
    out = pose[..., FLIP_PERM, :].copy()
    out[..., axis] = -out[..., axis]
    return out
