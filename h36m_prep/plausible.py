"""Plausibility checks of raw data, before a build writes anything: poses in millimetres, poses
that the calibration projects into the videos, lenses and camera placements a real rig can have.

A unit mistake does not raise anywhere by itself: poses in metres make crops a tenth of a pixel
wide, a calibration read in the wrong unit makes boxes of 1e11 px, and the build and verify would
pass. Each check names the file, the numbers it saw and the suspected cause.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .geometry import Camera, bone_lengths, distort, world_to_camera
from .raw import RawDataError

BONE_MM = (60.0, 700.0)        # a person's median bone (17-joint skeleton): about 220 mm for an adult
CAMERA_SPACING_MM = (10.0, 1e6)  # the median distance between a rig's cameras: 1 cm to 1 km
INSIDE_SHARE = 0.5             # of the joints must project inside a camera's frame (its margin below)
FRAME_MARGIN = 0.25            # a joint this fraction of the frame outside it still counts as inside
DISTORTION_SHIFT = 0.5         # the lens may move a border point by at most this fraction of the diagonal
_UNITS = {"metres": 1000.0, "centimetres": 10.0, "tenths of a millimetre": 0.1, "micrometres": 0.001}


def check_pose_units(pose: np.ndarray, path: str | Path) -> None:
    """pose [T, 17, 3]: its bones must have a person's lengths in millimetres."""
    bone = float(np.median(bone_lengths(pose[:: max(1, len(pose) // 64)])))
    lo, hi = BONE_MM
    if lo <= bone <= hi:
        return
    guess = next((name for name, factor in _UNITS.items() if lo <= bone * factor <= hi), None)
    cause = (f"the poses look like they are in {guess}: write them in millimetres (multiply by "
             f"{_UNITS[guess]:g})") if guess else "these are not a person's joints in millimetres"
    raise RawDataError(f"{path}: its bones are {bone:.3g} long (median), where a person's are about "
                       f"{lo:g}-{hi:g} mm; {cause}")


def check_projection(pose: np.ndarray, cams: dict[str, Camera], videos: dict[str, Path], path: str | Path,
                     samples: int = 16) -> None:
    """The joints of `samples` frames must land inside each camera's frame (most of them, in front
    of the camera): else the poses and the calibration do not belong together."""
    pick = pose[np.linspace(0, len(pose) - 1, min(samples, len(pose))).round().astype(int)]
    for cam_id, cam in cams.items():
        X = world_to_camera(pick.reshape(-1, 3), cam)
        front = X[:, 2] > 0
        uv = np.full((len(X), 2), np.inf)
        if front.any():
            x = X[front, :2] / X[front, 2:3]
            uv[front] = distort(x, cam.k, cam.p, cam.model) * cam.f + cam.c
        mw, mh = FRAME_MARGIN * cam.width, FRAME_MARGIN * cam.height
        inside = front & (uv[:, 0] > -mw) & (uv[:, 0] < cam.width + mw) & (uv[:, 1] > -mh) & (uv[:, 1] < cam.height + mh)
        share = float(inside.mean())
        if share < INSIDE_SHARE:
            depth = float(np.median(X[:, 2]))
            raise RawDataError(
                f"{path}: only {share:.0%} of its joints project inside the {cam.width} x {cam.height} frame of camera "
                f"{cam_id} ({videos.get(cam_id, 'its video')}; median depth {depth:.4g} mm, "
                f"{'behind' if depth <= 0 else 'in front of'} the camera): the poses and the calibration do not agree. "
                "Check their units (poses in mm; --calib-units for a rig's translations), that both use one world "
                "frame, and that each camera's entry belongs to its video")


def check_lens(cam: Camera, source: str | Path) -> None:
    """The distortion must keep the image a single sheet (no fold inside the frame) and move
    no border point by more than DISTORTION_SHIFT of the diagonal."""
    t = np.linspace(0, 1, 33)
    w, h = cam.width - 1, cam.height - 1
    border = np.concatenate([np.stack([t * w, 0 * t], 1), np.stack([t * w, h + 0 * t], 1),
                             np.stack([0 * t, t * h], 1), np.stack([w + 0 * t, t * h], 1)])
    x = (border - cam.c) / cam.f
    moved = distort(x, cam.k, cam.p, cam.model) * cam.f + cam.c
    shift = float(np.linalg.norm(moved - border, axis=1).max())
    diagonal = float(np.hypot(cam.width, cam.height))
    r = np.linspace(0, float(np.linalg.norm(x, axis=1).max()), 257)
    k = np.asarray(cam.k, np.float64)
    slope = 1 + 3 * k[0] * r**2 + 5 * k[1] * r**4 + 7 * k[2] * r**6  # d(distorted radius) / d(radius)
    if (slope <= 0).any():
        raise RawDataError(f"{source}: camera {cam.id}: the distortion k = {list(np.round(k, 4))} folds the image "
                           f"over at {float(r[np.argmax(slope <= 0)]):.2f} focal lengths from the centre, inside the "
                           "frame; the lens cannot do that: check the signs and the order of the coefficients")
    if shift > DISTORTION_SHIFT * diagonal:
        raise RawDataError(f"{source}: camera {cam.id}: the distortion k = {list(np.round(k, 4))}, "
                           f"p = {list(np.round(np.asarray(cam.p, float), 4))} moves the frame's border by up to "
                           f"{shift:.4g} px ({shift / diagonal:.1f} diagonals of the {cam.width} x {cam.height} "
                           "image); a lens moves it far less: check the coefficients (and that they are for "
                           "normalised coordinates, not pixels)")


def check_camera_spacing(cams: dict[str, Camera], source: str | Path, units_option: str = "") -> None:
    """The cameras of a rig must stand a plausible distance apart (the units of the translations)."""
    centres = np.array([np.asarray(c.C, np.float64) for c in cams.values()])
    if len(centres) < 2:
        return
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(len(centres), 1)]
    spacing = float(np.median(d))
    lo, hi = CAMERA_SPACING_MM
    if lo <= spacing <= hi:
        return
    cause = "as if the translations were in millimetres but read as metres" if spacing > hi else \
        "as if the translations were in metres but read as millimetres"
    raise RawDataError(f"{source}: the cameras stand {spacing:.4g} mm apart (median), {cause}; "
                       f"{units_option or 'check the units of the translations'}")
