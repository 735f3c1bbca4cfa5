"""The camera model: Human3.6M's, exactly as the dataset defines it, and OpenCV's.

World frame: Z up, millimetres. A camera has a rotation R (camera -> world, from the stored
quaternion) and a centre C in the world; world -> camera is X_cam = R^T (X_world - C), camera
axes x right, y down, z forward. Projection uses the dataset's own distortion (not OpenCV's):

    x = X_cam[:2] / X_cam[2],  r2 = |x|^2,  radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3
    tan = p1 x0 + p2 x1,       xd = x (radial + tan) + (p1, p2) r2,   uv = f * xd + c

A camera calibrated with OpenCV (an anipose calibration.toml, `rig_calibration.py`) has
`model="opencv"` and OpenCV's own tangential terms, which differ from the dataset's:

    xd0 = x0 radial + 2 p1 x0 x1 + p2 (r2 + 2 x0^2),   xd1 = x1 radial + p1 (r2 + 2 x1^2) + 2 p2 x0 x1

The model belongs to the calibration: every projection, undistortion and crop map asks the camera.
"""
from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import numpy as np

CAMERA_IDS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")
SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")
FPS = 50
MODELS = ("h36m", "opencv")


@dataclasses.dataclass(frozen=True)
class Camera:
    """One calibrated camera. R: [3, 3] camera->world, C: [3] mm, f, c: [2] px, k: [3], p: [2];
    model: the distortion formula of k and p, "h36m" (the dataset's) or "opencv"."""

    id: str
    R: np.ndarray
    C: np.ndarray
    f: np.ndarray
    c: np.ndarray
    k: np.ndarray
    p: np.ndarray
    width: int
    height: int
    model: str = "h36m"

    @property
    def K(self) -> np.ndarray:
        """[3, 3] pinhole intrinsics (distortion not included)."""
        return np.array([[self.f[0], 0, self.c[0]], [0, self.f[1], self.c[1]], [0, 0, 1.0]])

    def scaled(self, scale: float, width: int | None = None, height: int | None = None) -> "Camera":
        """The same camera at `scale` times the resolution (pixel centres kept consistent).

        A pixel's centre u maps to (u + 0.5) * scale - 0.5, so c follows that rule and f scales.
        `width`/`height` default to the rounded scaled size; a smaller value crops the right or
        bottom edge, which leaves the intrinsics unchanged.
        """
        return dataclasses.replace(
            self,
            f=self.f * scale,
            c=(self.c + 0.5) * scale - 0.5,
            width=int(width if width is not None else round(self.width * scale)),
            height=int(height if height is not None else round(self.height * scale)),
        )

    def to_json(self) -> dict:
        """The calibration-file entry of this camera (same keys as the shipped file; `model`
        only when it is not the dataset's)."""
        return ({"model": self.model} if self.model != "h36m" else {}) | {
            "orientation_wxyz": rotation_to_quaternion(self.R).tolist(),
            "center_world_mm": self.C.tolist(),
            "focal_length": self.f.tolist(),
            "principal_point": self.c.tolist(),
            "radial_k1k2k3": self.k.tolist(),
            "tangential_p1p2": self.p.tolist(),
            "width": self.width,
            "height": self.height,
        }


def quaternion_to_rotation(q_wxyz) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> [3, 3] rotation matrix (normalised first)."""
    w, x, y, z = np.asarray(q_wxyz, dtype=np.float64) / np.linalg.norm(q_wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """[3, 3] rotation -> unit quaternion (w, x, y, z) with w >= 0."""
    m = np.asarray(R, dtype=np.float64)
    t = np.trace(m)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k]) * 2
        q = np.zeros(4)
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q, dtype=np.float64)
    return q if q[0] >= 0 else -q


_FIELD_SIZES = {"orientation_wxyz": 4, "center_world_mm": 3, "focal_length": 2, "principal_point": 2,
                "radial_k1k2k3": 3, "tangential_p1p2": 2}


def camera_from_json(cam_id: str, entry: dict) -> Camera:
    """Build a Camera from one calibration-file entry (see `h36m_cameras.md`). A missing field
    raises KeyError, a field of the wrong size or type ValueError naming it."""
    fields = {}
    for name, size in _FIELD_SIZES.items():
        try:
            value = np.asarray(entry[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"field {name!r} is {entry[name]!r}, expected {size} numbers") from None
        if value.shape != (size,) or not np.isfinite(value).all():
            raise ValueError(f"field {name!r} is {entry[name]!r}, expected {size} finite numbers")
        fields[name] = value
    for name in ("width", "height"):
        if not isinstance(entry[name], (int, float)) or int(entry[name]) <= 0:
            raise ValueError(f"field {name!r} is {entry[name]!r}, expected a positive number of pixels")
    return Camera(
        id=str(cam_id),
        R=quaternion_to_rotation(fields["orientation_wxyz"]),
        C=fields["center_world_mm"],
        f=fields["focal_length"],
        c=fields["principal_point"],
        k=fields["radial_k1k2k3"],
        p=fields["tangential_p1p2"],
        width=int(entry["width"]),
        height=int(entry["height"]),
        model=_model(entry.get("model", "h36m")),
    )


def _model(name) -> str:
    if name not in MODELS:
        raise ValueError(f"field 'model' is {name!r}, expected one of {', '.join(MODELS)}")
    return str(name)


def default_calibration_path() -> Path:
    """The public Human3.6M calibration shipped with the package."""
    return Path(str(resources.files("h36m_prep.data") / "h36m_cameras.json"))


def load_calibration(path: str | Path | None = None) -> dict[str, dict[str, Camera]]:
    """Read a calibration file -> {subject: {camera id: Camera}}.

    Raises ValueError naming the file when it is missing, not JSON, or lacks a field.
    """
    path = Path(path) if path is not None else default_calibration_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: calibration file not found; pass --cameras with the "
                         "dataset's camera file or leave it out to use the shipped one") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); replace it with a calibration file "
                         "in the format of h36m_cameras.json") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cameras"), dict):
        raise ValueError(f"{path}: no 'cameras' table; see h36m_cameras.md for the expected layout")
    out = {}
    for s, cams in doc["cameras"].items():
        out[s] = {}
        for cid, e in (cams.items() if isinstance(cams, dict) else []):
            try:
                out[s][cid] = camera_from_json(cid, e)
            except KeyError as err:
                raise ValueError(f"{path}: subject {s} camera {cid} lacks field {err}; see h36m_cameras.md "
                                 "for the expected keys") from None
            except (TypeError, ValueError, AttributeError) as err:
                raise ValueError(f"{path}: subject {s} camera {cid}: {err}; fix that entry (see "
                                 "h36m_cameras.md)") from None
    return out


def save_calibration(path: str | Path, cams: dict[str, dict[str, Camera]]) -> None:
    """Write {subject: {camera id: Camera}} in the shipped calibration format."""
    doc = {"convention": "see h36m_cameras.md", "fps": FPS,
           "cameras": {s: {cid: c.to_json() for cid, c in d.items()} for s, d in cams.items()}}
    Path(path).write_text(json.dumps(doc, indent=1))


def world_to_camera(X: np.ndarray, cam: Camera) -> np.ndarray:
    """[..., 3] world mm -> [..., 3] camera-frame mm."""
    return (np.asarray(X, dtype=np.float64) - cam.C) @ cam.R


def camera_to_world(X: np.ndarray, cam: Camera) -> np.ndarray:
    """[..., 3] camera-frame mm -> [..., 3] world mm."""
    return np.asarray(X, dtype=np.float64) @ cam.R.T + cam.C


def distort(x: np.ndarray, k: np.ndarray, p: np.ndarray, model: str = "h36m") -> np.ndarray:
    """[..., 2] ideal normalised coordinates -> [..., 2] distorted (the model's formula)."""
    x = np.asarray(x, dtype=np.float64)
    r2 = np.sum(x * x, axis=-1, keepdims=True)
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    if model == "opencv":
        u, v = x[..., :1], x[..., 1:2]
        return np.concatenate([u * radial + 2 * p[0] * u * v + p[1] * (r2 + 2 * u * u),
                               v * radial + p[0] * (r2 + 2 * v * v) + 2 * p[1] * u * v], -1)
    tan = p[0] * x[..., :1] + p[1] * x[..., 1:2]
    return x * (radial + tan) + np.asarray(p) * r2


def undistort(xd: np.ndarray, k: np.ndarray, p: np.ndarray, iters: int = 8, model: str = "h36m") -> np.ndarray:
    """[..., 2] distorted normalised coordinates -> [..., 2] ideal ones (Newton on `distort`).

    Converges to far below 1e-6 (normalised units) inside the image, i.e. < 1e-3 px.
    """
    xd = np.asarray(xd, dtype=np.float64)
    x = xd.copy()
    for _ in range(iters):
        u, v = x[..., 0], x[..., 1]
        r2 = u * u + v * v
        radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
        dradial = k[0] + 2 * k[1] * r2 + 3 * k[2] * r2**2  # d radial / d r2
        if model == "opencv":
            res_u = u * radial + 2 * p[0] * u * v + p[1] * (r2 + 2 * u * u) - xd[..., 0]
            res_v = v * radial + p[0] * (r2 + 2 * v * v) + 2 * p[1] * u * v - xd[..., 1]
            j11 = radial + 2 * u * u * dradial + 2 * p[0] * v + 6 * p[1] * u
            j12 = 2 * u * v * dradial + 2 * p[0] * u + 2 * p[1] * v
            j21 = j12
            j22 = radial + 2 * v * v * dradial + 6 * p[0] * v + 2 * p[1] * u
        else:
            g = radial + p[0] * u + p[1] * v
            res_u = u * g + p[0] * r2 - xd[..., 0]
            res_v = v * g + p[1] * r2 - xd[..., 1]
            j11 = g + u * (2 * u * dradial + p[0]) + 2 * p[0] * u
            j12 = u * (2 * v * dradial + p[1]) + 2 * p[0] * v
            j21 = v * (2 * u * dradial + p[0]) + 2 * p[1] * u
            j22 = g + v * (2 * v * dradial + p[1]) + 2 * p[1] * v
        det = j11 * j22 - j12 * j21
        x = x - np.stack([(j22 * res_u - j12 * res_v) / det, (j11 * res_v - j21 * res_u) / det], -1)
    return x


def project(X_world: np.ndarray, cam: Camera, distorted: bool = True) -> np.ndarray:
    """[..., 3] world mm -> [..., 2] pixels of the real image (with the lens distortion)."""
    return project_camera_frame(world_to_camera(X_world, cam), cam, distorted)


def project_camera_frame(X_cam: np.ndarray, cam: Camera, distorted: bool = True) -> np.ndarray:
    """[..., 3] camera-frame mm -> [..., 2] pixels."""
    x = X_cam[..., :2] / X_cam[..., 2:3]
    if distorted:
        x = distort(x, cam.k, cam.p, cam.model)
    return x * cam.f + cam.c


def pixel_rays(uv: np.ndarray, cam: Camera) -> np.ndarray:
    """[..., 2] pixels of the real (distorted) image -> [..., 3] unit rays, camera frame."""
    x = undistort((np.asarray(uv, dtype=np.float64) - cam.c) / cam.f, cam.k, cam.p, model=cam.model)
    ray = np.concatenate([x, np.ones_like(x[..., :1])], axis=-1)
    return ray / np.linalg.norm(ray, axis=-1, keepdims=True)
