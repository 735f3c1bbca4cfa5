"""`h36m-prep synth`: a complete synthetic dataset in the Human3.6M release layout.

Every random choice comes from numpy generators keyed by (seed, what, subject, action,
camera), so a file's contents do not depend on the order, the worker count, or on which other
subjects and actions are written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..geometry import CAMERA_IDS, FPS, SUBJECTS, Camera, load_calibration, save_calibration, world_to_camera
from ..geometry import project as project_px
from .body import Appearance, max_radius, primitives, random_appearance
from .motion import ACTION_TAKES, MotionOptions, synth_motion, to_h36m32
from .render import compose, render_body
from .scene import camera_rays, room_image, session_room
from .video import keyframe_phases, write_mp4

DEFAULT_ACTIONS = ("Directions", "Posing", "Walking")


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """What `h36m-prep synth` writes. scale: resolution relative to the real 1000 px cameras."""

    subjects: tuple[str, ...] = SUBJECTS
    actions: tuple[str, ...] = DEFAULT_ACTIONS
    frames: int = 250
    scale: float = 0.5
    seed: int = 0
    noise: float = 2.0          # sensor noise, grey levels (standard deviation)
    mirror: bool = True         # allow mirrored takes
    cameras: tuple[str, ...] = CAMERA_IDS
    keyframes: str = "per_camera"  # per_camera: each camera its own keyframe phase | aligned: all at 0

    def __post_init__(self):
        bad = [a for a in self.actions if a.split(" ")[0] not in ACTION_TAKES]
        if bad:
            raise ValueError(f"unknown synthetic action(s) {', '.join(bad)}; choose from "
                             f"{', '.join(ACTION_TAKES)} (a take number may follow: 'Walking 1')")
        bad = [s for s in self.subjects if s not in SUBJECTS]
        if bad:
            raise ValueError(f"unknown subject(s) {', '.join(bad)}; choose from {', '.join(SUBJECTS)}")
        if self.frames < 2 or not 0.05 <= self.scale <= 1.0:
            raise ValueError("frames must be >= 2 and scale in [0.05, 1]")
        if self.keyframes not in ("per_camera", "aligned"):
            raise ValueError(f"keyframes={self.keyframes!r}: choose per_camera or aligned")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _key(*parts) -> list[int]:
    return [zlib.crc32(str(p).encode()) for p in parts]


def _subject_index(subject: str) -> int:
    return int(subject[1:])


def synth_cameras(cfg: SynthConfig) -> dict[str, dict[str, Camera]]:
    """The real calibration of every subject, scaled to cfg.scale (even sizes, for the codec)."""
    out = {}
    for s, cams in load_calibration().items():
        out[s] = {}
        for cid, cam in cams.items():
            w = 2 * int(cam.width * cfg.scale / 2)
            h = 2 * int(cam.height * cfg.scale / 2)
            out[s][cid] = cam.scaled(cfg.scale, width=w, height=h)
    return out


def subject_appearance(cfg: SynthConfig, subject: str) -> Appearance:
    return random_appearance(np.random.default_rng(_key(cfg.seed, "body", subject)))


def sequence_motion(cfg: SynthConfig, subject: str, action: str) -> tuple[np.ndarray, np.ndarray]:
    """(pose17 [T, 17, 3], pose32 [T, 32, 3]) float32 world mm of one sequence."""
    app = subject_appearance(cfg, subject)
    rng = np.random.default_rng(_key(cfg.seed, "motion", subject, action))
    opts = MotionOptions(frames=cfg.frames, speed=float(rng.uniform(0.85, 1.15)),
                         heading=float(rng.uniform(0, 2 * np.pi)),
                         mirror=bool(cfg.mirror and rng.uniform() < 0.5),
                         offset=tuple(rng.uniform(-600, 600, 2)), radius=1000.0)
    pose17 = synth_motion(action, app.bones, opts, rng)
    return pose17, to_h36m32(pose17, app.bones)


def _splitmix64(x: int) -> int:
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def render_video(cfg: SynthConfig, subject: str, action: str, cam_id: str, with_masks: bool = False):
    """Yield (frame [H, W, 3] uint8 RGB, true silhouette [H, W] bool or None) for every frame."""
    cam = synth_cameras(cfg)[subject][cam_id]
    _, pose32 = sequence_motion(cfg, subject, action)
    room = session_room(np.random.default_rng(_key(cfg.seed, "room", subject)))
    rng = np.random.default_rng(_key(cfg.seed, "light", subject, action, cam_id))
    yield from render_frames(cam, subject_appearance(cfg, subject), pose32, room, rng, cfg.noise, with_masks)


def render_frames(cam: Camera, app: Appearance, pose32: np.ndarray, room, rng: np.random.Generator,
                  noise: float, with_masks: bool = False):
    """Yield (frame, silhouette or None) for every pose of pose32 [T, 32, 3] as `cam` sees the
    person of appearance `app` in `room`, with a slow lighting drift and sensor noise drawn from rng."""
    frames = len(pose32)
    rays = camera_rays(cam)
    room_rgb = room_image(room, cam, rays)
    t = np.arange(frames)
    walk = np.clip(np.cumsum(rng.normal(0, 0.002, frames)), -0.02, 0.02)
    gain = 1.0 + 0.025 * np.sin(2 * np.pi * t / rng.uniform(80, 200) + rng.uniform(0, 2 * np.pi)) + walk
    noise_base = int(rng.integers(0, 2**62))
    up = cam.R.T @ np.array([0.0, 0.0, 1.0])
    reach = max_radius(app)
    rgb = np.zeros((cam.height, cam.width, 3), np.float32)
    for k in range(frames):
        X = world_to_camera(pose32[k], cam)
        caps, cap_rgb, ells, ell_rgb = primitives(X, app)
        depth = np.full((cam.height, cam.width), np.inf)
        uv = project_px(pose32[k], cam)
        m = reach * max(cam.f) / max(float(X[:, 2].min()) - reach, 100.0) + 4
        box = np.array([max(0, int(uv[:, 1].min() - m)), min(cam.height, int(uv[:, 1].max() + m) + 1),
                        max(0, int(uv[:, 0].min() - m)), min(cam.width, int(uv[:, 0].max() + m) + 1)])
        if box[0] < box[1] and box[2] < box[3]:
            render_body(rays, box, caps, cap_rgb, ells, ell_rgb, up, rgb, depth)
        frame = compose(room_rgb, rgb, depth, float(gain[k]), noise, np.uint64(_splitmix64(noise_base + k)))
        yield frame, (np.isfinite(depth) if with_masks else None)


def empty_room(cfg: SynthConfig, subject: str, cam_id: str) -> np.ndarray:
    """The room without person, noise or lighting change: [H, W, 3] uint8 RGB."""
    cam = synth_cameras(cfg)[subject][cam_id]
    room = room_image(session_room(np.random.default_rng(_key(cfg.seed, "room", subject))), cam)
    return np.clip(room + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- writing files

def video_path(raw: Path, subject: str, action: str, cam_id: str) -> Path:
    return raw / subject / "Videos" / f"{action}.{cam_id}.mp4"


def poses_path(raw: Path, subject: str, action: str) -> Path:
    return raw / subject / "MyPoseFeatures" / "D3_Positions" / f"{action}.cdf"


def write_cdf(path: Path, pose32: np.ndarray) -> None:
    """Write `Pose` [1, T, 96] float32 as the release does, atomically (temp file + rename)."""
    from cdflib import cdfwrite

    tmp = path.with_name(f".tmp.{path.name}")
    tmp.unlink(missing_ok=True)
    cdf = cdfwrite.CDF(str(tmp), cdf_spec={"Majority": "row_major", "Checksum": False}, delete=True)
    data = pose32.reshape(1, -1, 96).astype(np.float32)
    cdf.write_var({"Variable": "Pose", "Data_Type": cdfwrite.CDF.CDF_FLOAT, "Num_Elements": 1,
                   "Rec_Vary": True, "Dim_Sizes": list(data.shape[1:]),
                   "Compress": 0}, var_attrs={}, var_data=data)
    cdf.close()
    os.replace(tmp, path)


def _write_video_job(raw: str, cfg: SynthConfig, subject: str, action: str, cam_id: str) -> int:
    """Render and encode one video (mp4, 50 fps, the camera's own keyframe phase) to a temp
    name, then rename it in place."""
    path = video_path(Path(raw), subject, action, cam_id)
    tmp = path.with_name(f".tmp.{path.name}")
    phase = keyframe_phases(cfg.seed, f"{subject}/{action}", cfg.cameras, aligned=cfg.keyframes == "aligned")[cam_id]
    write_mp4(tmp, (frame for frame, _ in render_video(cfg, subject, action, cam_id)), FPS, phase)
    os.replace(tmp, path)
    return cfg.frames


def write_dataset(raw: str | Path, cfg: SynthConfig, workers: int = 0, progress: bool = True) -> dict:
    """Write the whole dataset under RAW; rerunning finishes an interrupted run.

    Files appear under their final names only when complete. A RAW written with other options
    is refused rather than mixed. Returns a report of what is there.
    """
    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    stamp = raw / ".synth" / "config.json"
    if stamp.exists():
        old = json.loads(stamp.read_text())
        if old != json.loads(json.dumps(cfg.to_json())):
            raise ValueError(f"{raw}: already holds a synthetic dataset written with other options "
                             f"({stamp}); choose an empty folder or delete it first")
    else:
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(json.dumps(cfg.to_json(), indent=1))
    save_calibration(raw / "cameras.json", synth_cameras(cfg))
    jobs = []
    for s in cfg.subjects:
        (raw / s / "Videos").mkdir(parents=True, exist_ok=True)
        (raw / s / "MyPoseFeatures" / "D3_Positions").mkdir(parents=True, exist_ok=True)
        for a in cfg.actions:
            if not poses_path(raw, s, a).exists():
                write_cdf(poses_path(raw, s, a), sequence_motion(cfg, s, a)[1])
            jobs += [(s, a, c) for c in cfg.cameras if not video_path(raw, s, a, c).exists()]
    total = len(cfg.subjects) * len(cfg.actions) * len(cfg.cameras) * cfg.frames
    start = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    with tqdm(total=total, initial=total - len(jobs) * cfg.frames, unit="frame",
              desc="synth", disable=not progress, smoothing=0.1) as bar:
        if workers == 1:
            for job in jobs:
                bar.update(_write_video_job(str(raw), cfg, *job))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for n in pool.map(_write_video_job, *zip(*[(str(raw), cfg, *j) for j in jobs])) if jobs else ():
                    bar.update(n)
    report = {
        "root": str(raw), "subjects": list(cfg.subjects), "actions": list(cfg.actions),
        "sequences": len(cfg.subjects) * len(cfg.actions), "videos": len(cfg.subjects) * len(cfg.actions) * len(cfg.cameras),
        "frames_per_video": cfg.frames, "frames_written": len(jobs) * cfg.frames,
        "resolution": {c: [cam.width, cam.height] for c, cam in synth_cameras(cfg)[cfg.subjects[0]].items()},
        "bytes": sum(p.stat().st_size for p in raw.rglob("*") if p.is_file()),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (raw / ".synth" / "report.json").write_text(json.dumps(report, indent=1))
    return report


def synth_h36m(raw, frames=None, scale=0.5, seed=0, workers=0, subjects=None, actions=None,
               keyframes=None, start_spread=None) -> tuple[dict, str]:
    """`h36m-prep synth` for the Human3.6M layout: (report, one line saying what was written)."""
    if start_spread:
        raise ValueError("--start-spread: an option of the rig layout (Human3.6M's cameras are synchronized)")
    cfg = SynthConfig(subjects=tuple(subjects or SUBJECTS), actions=tuple(actions or DEFAULT_ACTIONS),
                      frames=frames or 250, scale=scale, seed=seed, keyframes=keyframes or "per_camera")
    report = write_dataset(raw, cfg, workers=workers)
    res = ", ".join(f"{c} {w}x{h}" for c, (w, h) in report["resolution"].items())
    return report, (f"wrote {report['root']}: {len(report['subjects'])} subjects x {len(report['actions'])} "
                    f"actions = {report['sequences']} sequences, {report['videos']} videos of "
                    f"{report['frames_per_video']} frames ({res}), {report['bytes'] / 1e6:.1f} MB, "
                    f"{report['frames_written']} frames rendered in {report['seconds']} s")
