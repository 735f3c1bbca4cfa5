"""Motion for the synthetic dataset: real CMU takes resampled, retargeted and placed.

All poses are [T, 17, 3] float32 world millimetres (Z up, floor z = 0) in the Human3.6M
17-joint order unless a name says 32.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from importlib import resources

import numpy as np

from ..geometry import BONES, FLIP_PERM, H36M17_FROM_32, PARENTS

MOCAP_FPS = 120.0

# Which real takes drive each synthetic action (the name is the Human3.6M action it stands in for).
ACTION_TAKES: dict[str, tuple[str, ...]] = {
    "Directions": ("cmu_13_26_wave",),
    "Greeting": ("cmu_13_26_wave",),
    "Walking": ("cmu_131_01_walk", "cmu_131_02_walk", "cmu_12_01_walk"),
    "WalkTogether": ("cmu_131_02_walk", "cmu_131_01_walk"),
    "Posing": ("cmu_01_01_jumps", "cmu_131_03_hop", "cmu_11_01_kick"),
}

# A 1.75 m adult, left and right equal: (child, parent) -> mm, the BONES order.
_REFERENCE_BONES = np.array([130, 410, 420, 130, 410, 420, 112, 114, 210, 190,
                             240, 260, 230, 240, 260, 230], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class MotionOptions:
    """How a take becomes a sequence. Distances mm, angles radians."""

    frames: int
    speed: float = 1.0           # playback speed of the take
    heading: float = 0.0         # rotation about the vertical axis
    mirror: bool = False         # mirror the whole take (left/right swapped, still a valid body)
    offset: tuple[float, float] = (0.0, 0.0)  # where the path is centred on the floor
    radius: float = 1200.0       # the root's horizontal path is shrunk to fit this radius


@lru_cache(maxsize=1)
def load_takes() -> dict[str, np.ndarray]:
    """The shipped takes: name -> [T, 17, 3] float32 mm at 120 fps."""
    with resources.files("h36m_prep.data").joinpath("cmu_h36m17.npz").open("rb") as f:
        data = np.load(f)
        return {k: data[k] for k in data.files if k != "fps"}


def resample(take: np.ndarray, start: float, frames: int, speed: float, fps: float = 50.0) -> np.ndarray:
    """Linear resampling of a 120 fps take to `fps`, from `start` seconds, at `speed`.

    Playback folds back at the end of the take (ping-pong), so any length can be drawn.
    """
    n = take.shape[0]
    t = (start + np.arange(frames) * speed / fps) * MOCAP_FPS
    period = 2 * (n - 1)
    t = np.mod(t, period)
    t = np.where(t > n - 1, period - t, t)
    i0 = np.clip(np.floor(t).astype(int), 0, n - 2)
    w = (t - i0)[:, None, None]
    return ((1 - w) * take[i0] + w * take[i0 + 1]).astype(np.float64)


def subject_bones(rng: np.random.Generator) -> np.ndarray:
    """Per-subject bone lengths [16] mm: overall size and leg/arm/torso proportions vary,
    left and right stay equal (mirroring must not be visible from body shape)."""
    height = rng.uniform(0.9, 1.08)
    group = {"leg": rng.uniform(0.94, 1.06), "arm": rng.uniform(0.94, 1.06),
             "torso": rng.uniform(0.94, 1.06)}
    kind = {1: "torso", 2: "leg", 3: "leg", 4: "torso", 5: "leg", 6: "leg", 7: "torso", 8: "torso",
            9: "torso", 10: "torso", 11: "torso", 12: "arm", 13: "arm", 14: "torso", 15: "arm", 16: "arm"}
    return np.array([_REFERENCE_BONES[i] * height * group[kind[c]] for i, (c, _) in enumerate(BONES)])


def retarget(pose: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """[T, 17, 3] -> same motion with bone lengths `bones` [16] mm (directions kept).

    The root path is scaled by the ratio of leg lengths so that steps still match strides.
    """
    src = np.linalg.norm(pose[:, [c for c, _ in BONES]] - pose[:, [p for _, p in BONES]], axis=-1)
    leg_ratio = (bones[1] + bones[2]) / np.median(src[:, 1] + src[:, 2])
    out = np.empty_like(pose)
    root = pose[:, 0]
    out[:, 0] = root[:1] + (root - root[:1]) * leg_ratio
    out[:, 0, 2] = root[:, 2] * leg_ratio
    length = dict(zip((c for c, _ in BONES), bones))
    for j, p in enumerate(PARENTS):  # parents come before children in this order
        if p < 0:
            continue
        d = pose[:, j] - pose[:, p]
        out[:, j] = out[:, p] + d / np.linalg.norm(d, axis=-1, keepdims=True) * length[j]
    return out


def place(pose: np.ndarray, opts: MotionOptions) -> np.ndarray:
    """Centre the path in the capture area, shrink it to `radius`, turn, mirror, and put the
    lowest ankle on the floor. [T, 17, 3] mm -> [T, 17, 3] mm."""
    pose = pose.copy()
    centre = pose[:, 0, :2].mean(axis=0)
    path = pose[:, 0, :2] - centre
    extent = np.max(np.linalg.norm(path, axis=-1))
    shrink = min(1.0, opts.radius / max(extent, 1e-6))
    rel = pose[:, :, :2] - pose[:, :1, :2]
    pose[:, :, :2] = rel + (path * shrink)[:, None, :]
    if opts.mirror:
        pose = pose[:, FLIP_PERM]
        pose[..., 0] = -pose[..., 0]
    c, s = np.cos(opts.heading), np.sin(opts.heading)
    rot = np.array([[c, -s], [s, c]])
    pose[:, :, :2] = pose[:, :, :2] @ rot.T + np.asarray(opts.offset)
    ankle_height = np.percentile(pose[:, [3, 6], 2].min(axis=1), 5)
    pose[..., 2] += 70.0 - ankle_height  # ankle joint centres sit ~70 mm above the floor
    return pose


def synth_motion(action: str, bones: np.ndarray, opts: MotionOptions, rng: np.random.Generator) -> np.ndarray:
    """A placed, retargeted [frames, 17, 3] float32 mm sequence for one synthetic action."""
    base = action.split(" ")[0]
    if base not in ACTION_TAKES:
        raise ValueError(f"synthetic action {action!r} unknown; choose from {', '.join(ACTION_TAKES)}")
    takes = load_takes()
    name = ACTION_TAKES[base][rng.integers(len(ACTION_TAKES[base]))]
    take = takes[name]
    duration = opts.frames * opts.speed / 50.0
    latest = max(0.0, (take.shape[0] - 1) / MOCAP_FPS - duration)
    pose = resample(take, rng.uniform(0, latest), opts.frames, opts.speed)
    return place(retarget(pose, bones), opts).astype(np.float32)


def to_h36m32(pose17: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """Fill the 32-joint raw layout from [T, 17, 3] mm: the 17 joints where the files keep them,
    the other 15 (spine, clavicles, toes, hand ends, end sites) from the body's own frame."""
    T = pose17.shape[0]
    out = np.zeros((T, 32, 3), dtype=np.float64)
    out[:, H36M17_FROM_32] = pose17
    up = np.array([0.0, 0.0, 1.0])
    right = pose17[:, 1] - pose17[:, 4]
    fwd = np.cross(up, right)
    fwd /= np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-6)
    foot = 0.6 * bones[2]  # foot length from shin length
    for ankle, toe in ((3, 4), (6, 9)):
        a = pose17[:, ankle]
        out[:, toe] = a + 0.75 * foot * fwd - [0, 0, 45.0]
        out[:, toe + 1] = a + foot * fwd - [0, 0, 50.0]
    out[:, 11] = 0.5 * (pose17[:, 0] + pose17[:, 7])
    for shoulder, clav in ((11, 16), (14, 24)):
        out[:, clav] = pose17[:, 8] + 0.2 * (pose17[:, shoulder] - pose17[:, 8])
    hand = 0.75 * bones[12]  # hand length from forearm length
    for elbow, wrist, first in ((12, 13, 20), (15, 16, 28)):
        d = pose17[:, wrist] - pose17[:, elbow]
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        w = pose17[:, wrist]
        side = np.cross(d, up)
        side /= np.maximum(np.linalg.norm(side, axis=-1, keepdims=True), 1e-6)
        out[:, first] = w + 0.35 * hand * d + 0.25 * hand * side        # thumb
        out[:, first + 1] = w + 0.6 * hand * d + 0.35 * hand * side     # thumb end site
        out[:, first + 2] = w + 0.5 * hand * d                          # wrist end
        out[:, first + 3] = w + hand * d                                # wrist end site
    return out.astype(np.float32)
