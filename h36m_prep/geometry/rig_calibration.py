"""Camera calibrations in the anipose format (aniposelib's camera-group TOML).

    [cam_0]
    name = "front"                      # the camera's video is RIG/<take>/front.<ext>
    size = [1920, 1080]                 # width, height (px)
    matrix = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    distortions = [k1, k2, p1, p2, k3]  # OpenCV's order; fewer entries are zeros
    rotation = [rx, ry, rz]             # Rodrigues vector, world -> camera
    translation = [tx, ty, tz]          # world -> camera: X_cam = R X_world + t (metres)
    fisheye = false                     # optional; fisheye lenses are not supported

    [metadata]                          # optional, ignored

Several open-source markerless mocap tools write this file. The cameras come back as `Camera`s
with `model="opencv"` in this toolkit's convention (R camera -> world, C the centre in world mm).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import cv2
import numpy as np

from ..errors import ToolkitError
from .camera import Camera

UNITS = {"m": 1000.0, "mm": 1.0}


class CalibrationError(ToolkitError, ValueError):
    """A calibration file that cannot be used; the message names the file and the fix."""


def _numbers(path: Path, table: str, key: str, entry: dict, shape: tuple) -> np.ndarray:
    if key not in entry:
        raise CalibrationError(f"{path}: [{table}] has no `{key}`; add it (see the calibration format in the README)")
    try:
        value = np.asarray(entry[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{path}: [{table}] `{key}` = {entry[key]!r} is not numbers; "
                               f"expected an array of shape {list(shape)}") from None
    if value.shape != shape or not np.isfinite(value).all():
        raise CalibrationError(f"{path}: [{table}] `{key}` has shape {list(value.shape)}, expected {list(shape)} "
                               "finite numbers")
    return value


def load_rig_calibration(path: str | Path, units: str = "m") -> dict[str, Camera]:
    """{camera name: Camera} from an anipose calibration.toml. units: of `translation`, 'm'
    (anipose's default) or 'mm' (a board measured in millimetres); the world comes out in mm."""
    path = Path(path)
    if units not in UNITS:
        raise CalibrationError(f"calibration units {units!r}: expected one of {', '.join(UNITS)}")
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{path}: calibration file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: not valid TOML ({e}); write it in the anipose calibration format "
                               "(a [cam_N] table per camera)") from None
    tables = {k: v for k, v in doc.items() if isinstance(v, dict) and k != "metadata"}
    if not tables:
        raise CalibrationError(f"{path}: no camera tables; write one [cam_N] table per camera with name, size, "
                               "matrix, distortions, rotation and translation")
    out: dict[str, Camera] = {}
    for table, entry in tables.items():
        if "name" not in entry:
            raise CalibrationError(f"{path}: [{table}] has no `name`; add the camera's name (its video file name)")
        name = str(entry["name"])
        if name in out:
            raise CalibrationError(f"{path}: camera name {name!r} appears twice; camera names must be unique")
        if entry.get("fisheye", False):
            raise CalibrationError(f"{path}: [{table}] camera {name!r} is a fisheye camera, which this toolkit does "
                                   "not support; calibrate it with the standard (pinhole + OpenCV distortion) model")
        size = _numbers(path, table, "size", entry, (2,))
        if (size <= 0).any() or (size != np.round(size)).any():
            raise CalibrationError(f"{path}: [{table}] `size` = {entry['size']!r}: expected [width, height] in pixels")
        K = _numbers(path, table, "matrix", entry, (3, 3))
        if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[1, 0]) + abs(K[2, 0]) + abs(K[2, 1]) > 1e-9 or K[2, 2] != 1:
            raise CalibrationError(f"{path}: [{table}] `matrix` is not a camera matrix [[fx, 0, cx], [0, fy, cy], "
                                   "[0, 0, 1]] with positive focal lengths")
        if abs(K[0, 1]) > 1e-9:
            raise CalibrationError(f"{path}: [{table}] `matrix` has a skew of {K[0, 1]}, which this toolkit does not "
                                   "support; recalibrate with zero skew (OpenCV's default)")
        try:
            dist = np.asarray(entry.get("distortions", [0.0]), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise CalibrationError(f"{path}: [{table}] `distortions` = {entry.get('distortions')!r} is not numbers; "
                                   "expected OpenCV's k1 k2 p1 p2 k3") from None
        if not np.isfinite(dist).all() or (len(dist) > 5 and np.any(dist[5:] != 0)):
            raise CalibrationError(f"{path}: [{table}] `distortions` has {len(dist)} coefficients with non-zero terms "
                                   "after k3 (OpenCV's rational or thin-prism model), which this toolkit does not "
                                   "support; recalibrate with k1 k2 p1 p2 k3")
        d = np.zeros(5)
        d[:min(len(dist), 5)] = dist[:5]
        rvec = _numbers(path, table, "rotation", entry, (3,))
        tvec = _numbers(path, table, "translation", entry, (3,)) * UNITS[units]
        R_wc = cv2.Rodrigues(rvec)[0]  # world -> camera
        out[name] = Camera(id=name, R=R_wc.T, C=-R_wc.T @ tvec, f=np.array([K[0, 0], K[1, 1]]),
                           c=np.array([K[0, 2], K[1, 2]]), k=d[[0, 1, 4]], p=d[[2, 3]],
                           width=int(size[0]), height=int(size[1]), model="opencv")
    return out


def save_rig_calibration(path: str | Path, cams: dict[str, Camera], units: str = "m") -> None:
    """Write OpenCV-model cameras as an anipose calibration.toml (translation in `units`)."""
    lines = []
    for i, (name, cam) in enumerate(cams.items()):
        if cam.model != "opencv":
            raise ValueError(f"camera {name}: the anipose format holds OpenCV-model cameras, not {cam.model!r}")
        R_wc = cam.R.T
        rvec = cv2.Rodrigues(R_wc)[0].reshape(3)
        tvec = -R_wc @ cam.C / UNITS[units]
        fmt = lambda a: "[" + ", ".join(repr(float(x)) for x in a) + "]"  # noqa: E731
        lines += [f"[cam_{i}]", f'name = "{name}"', f"size = [{cam.width}, {cam.height}]",
                  f"matrix = [{fmt(cam.K[0])}, {fmt(cam.K[1])}, {fmt(cam.K[2])}]",
                  f"distortions = {fmt([cam.k[0], cam.k[1], cam.p[0], cam.p[1], cam.k[2]])}",
                  f"rotation = {fmt(rvec)}", f"translation = {fmt(tvec)}", "fisheye = false", ""]
    lines += ["[metadata]", "adjusted = false", "error = 0.0", ""]
    tmp = Path(path).with_name(f".tmp.{Path(path).name}")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
