"""`h36m-prep synth RIG --layout rig`: a synthetic rig in the rig layout (h36m_prep/rig.py).
The person also drifts 1 m across the room during each take.

Not Human3.6M's four cameras: five cameras around the room at varied distances and heights,
portrait and landscape, with OpenCV lens distortion, one of them in another container (AVI,
Motion-JPEG), 60 fps. It writes calibration.toml (anipose format, metres) and the true
poses3d.npy of every take, for checking: the build does not need them. Every random choice is
keyed by (seed, what, take, camera), as in the Human3.6M-layout dataset.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..geometry import Camera, save_rig_calibration
from .body import random_appearance
from .dataset import _key, render_frames
from .motion import ACTION_TAKES, MotionOptions, synth_motion, to_h36m32
from .scene import session_room
from .video import keyframe_phases, write_mp4

# name, (width, height) at scale 1, distance mm, height mm, azimuth degrees, container
RIG_CAMERAS: tuple[tuple[str, tuple[int, int], float, float, float, str], ...] = (
    ("front", (960, 540), 3600.0, 1500.0, 0.0, "mp4"),
    ("left_low", (540, 960), 3300.0, 700.0, 80.0, "mp4"),
    ("back_high", (960, 720), 3900.0, 2600.0, 170.0, "mp4"),
    ("right", (720, 960), 3400.0, 1200.0, 255.0, "avi"),
    ("corner", (800, 448), 3700.0, 1900.0, 315.0, "mp4"),
)
RIG_FPS = 60.0


@dataclasses.dataclass(frozen=True)
class RigSynthConfig:
    """What `h36m-prep synth --layout rig` writes: takes named by their action, `cameras` of
    RIG_CAMERAS, `frames` per take at `fps`, sizes at `scale` of RIG_CAMERAS'."""

    takes: tuple[str, ...] = ("Walking", "Directions")
    cameras: int = 5
    frames: int = 300
    fps: float = RIG_FPS
    scale: float = 0.5
    seed: int = 0
    noise: float = 2.0
    start_spread: float = 0.0  # s: cameras start up to this much apart and stop at their own moments

    def __post_init__(self):
        bad = [a for a in self.takes if a not in ACTION_TAKES]
        if bad:
            raise ValueError(f"unknown synthetic action(s) {', '.join(bad)}; choose from {', '.join(ACTION_TAKES)}")
        if not 2 <= self.cameras <= len(RIG_CAMERAS):
            raise ValueError(f"cameras must be 2..{len(RIG_CAMERAS)}")
        if self.frames < 6 or not 0.1 <= self.scale <= 1.0 or not self.fps > 0:
            raise ValueError("frames must be >= 6, scale in [0.1, 1] and fps > 0")
        if not 0 <= self.start_spread <= 10:
            raise ValueError(f"--start-spread {self.start_spread}: expected 0 to 10 seconds")

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        if not self.start_spread:  # rigs written before the option have the same stamp
            del out["start_spread"]
        return out


def spread_frames(cfg: RigSynthConfig) -> int:
    return int(round(cfg.start_spread * cfg.fps))


def recording(cfg: RigSynthConfig, action: str, cam_name: str) -> tuple[int, int]:
    """(first, end) frames of the take's true timeline that a camera's video holds: every camera
    holds all of it in a synchronized rig; with start_spread each starts late by its own 0..spread
    frames and stops early by its own 0..spread/4 frames (cameras started and stopped by hand)."""
    spread = spread_frames(cfg)
    total = cfg.frames + spread
    if not spread:
        return 0, total
    rng = np.random.default_rng(_key(cfg.seed, "rig-start", take_name(action), cam_name))
    first = int(rng.integers(0, spread + 1))
    return first, total - int(rng.integers(0, spread // 4 + 1))


def true_offsets(cfg: RigSynthConfig, action: str) -> dict[str, int]:
    """{camera: offset} of a take in the offsets.toml convention (row t is frame t + offset of the
    camera's video): the latest starter has 0."""
    firsts = {c: recording(cfg, action, c)[0] for c in rig_cameras(cfg)}
    late = max(firsts.values())
    return {c: late - f for c, f in firsts.items()}


def take_name(action: str) -> str:
    return action.lower()


def rig_cameras(cfg: RigSynthConfig) -> dict[str, Camera]:
    """The rig's cameras: each looks at a point near the capture area's centre, 1 m up, with
    its own small lens distortion (OpenCV model)."""
    out = {}
    for name, (w0, h0), dist, height, azimuth, _ in RIG_CAMERAS[:cfg.cameras]:
        rng = np.random.default_rng(_key(cfg.seed, "rig-camera", name))
        w, h = 2 * int(w0 * cfg.scale / 2), 2 * int(h0 * cfg.scale / 2)
        a = np.radians(azimuth + rng.uniform(-8, 8))
        C = np.array([dist * np.cos(a), dist * np.sin(a), height])
        target = np.array([rng.uniform(-200, 200), rng.uniform(-200, 200), 1000.0])
        z = (target - C) / np.linalg.norm(target - C)
        x = np.cross(z, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)  # image down
        R = np.stack([x, y, z], 1)  # camera -> world: columns are the camera axes
        f = 0.8 * max(w, h) * rng.uniform(0.95, 1.05)
        out[name] = Camera(id=name, R=R, C=C, f=np.array([f, f * rng.uniform(0.995, 1.005)]),
                           c=np.array([(w - 1) / 2 + rng.uniform(-4, 4), (h - 1) / 2 + rng.uniform(-4, 4)]),
                           k=np.array([rng.uniform(-0.12, 0.04), rng.uniform(-0.02, 0.05), 0.0]),
                           p=rng.uniform(-0.002, 0.002, 2), width=w, height=h, model="opencv")
    return out


def take_motion(cfg: RigSynthConfig, action: str) -> tuple[np.ndarray, np.ndarray]:
    """(pose17, pose32) [T, J, 3] float32 world mm of a take; the motion plays in real time at cfg.fps."""
    app = random_appearance(np.random.default_rng(_key(cfg.seed, "rig-body")))
    rng = np.random.default_rng(_key(cfg.seed, "rig-motion", action))
    n = cfg.frames + spread_frames(cfg)  # the true timeline, which cameras started late hold part of
    opts = MotionOptions(frames=n, speed=50.0 / cfg.fps * float(rng.uniform(0.9, 1.1)),
                         heading=float(rng.uniform(0, 2 * np.pi)), offset=tuple(rng.uniform(-400, 400, 2)),
                         radius=900.0)
    pose17 = synth_motion(action, app.bones, opts, rng)
    # the person also drifts across the room (1 m over the take, in a random direction): someone who
    # stays on one spot for most of the samples stays in the median background as a ghost
    angle = rng.uniform(0, 2 * np.pi)
    drift = np.linspace(-500.0, 500.0, n)[:, None] * np.array([np.cos(angle), np.sin(angle)])
    pose17[..., :2] += drift[:, None, :].astype(np.float32)
    return pose17, to_h36m32(pose17, app.bones)


def render_take(cfg: RigSynthConfig, action: str, cam_name: str, with_masks: bool = False):
    """Yield (frame RGB, true silhouette or None) of one camera of one take."""
    cam = rig_cameras(cfg)[cam_name]
    app = random_appearance(np.random.default_rng(_key(cfg.seed, "rig-body")))
    room = session_room(np.random.default_rng(_key(cfg.seed, "rig-room")))
    rng = np.random.default_rng(_key(cfg.seed, "rig-light", action, cam_name))
    first, end = recording(cfg, action, cam_name)
    yield from render_frames(cam, app, take_motion(cfg, action)[1][first:end], room, rng, cfg.noise, with_masks)


def video_path(rig: Path, action: str, cam_name: str) -> Path:
    ext = {c[0]: c[5] for c in RIG_CAMERAS}[cam_name]
    return rig / take_name(action) / f"{cam_name}.{ext}"


def _write_job(rig: str, cfg: RigSynthConfig, action: str, cam_name: str) -> int:
    """Render one camera of a take: mp4 with the camera's own keyframe phase (cameras started
    by hand), or Motion JPEG in avi (every frame a keyframe); a temp name, then renamed."""
    path = video_path(Path(rig), action, cam_name)
    tmp = path.with_name(f".tmp.{path.name}")
    cam = rig_cameras(cfg)[cam_name]
    frames = (frame for frame, _ in render_take(cfg, action, cam_name))
    if path.suffix == ".mp4":
        write_mp4(tmp, frames, cfg.fps, keyframe_phases(cfg.seed, take_name(action), rig_cameras(cfg))[cam_name])
    else:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), cfg.fps, (cam.width, cam.height))
        if not writer.isOpened():
            raise RuntimeError(f"{tmp}: OpenCV cannot write this video; reinstall opencv-python-headless")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
    os.replace(tmp, path)
    first, end = recording(cfg, action, cam_name)
    return end - first


def write_rig(rig: str | Path, cfg: RigSynthConfig = RigSynthConfig(), workers: int = 0, progress: bool = True) -> dict:
    """Write the synthetic rig under RIG; rerunning finishes an interrupted run, and a RIG written
    with other options is refused."""
    rig = Path(rig)
    rig.mkdir(parents=True, exist_ok=True)
    stamp = rig / ".synth" / "config.json"
    if stamp.exists():
        if json.loads(stamp.read_text()) != json.loads(json.dumps(cfg.to_json())):
            raise ValueError(f"{rig}: already holds a synthetic rig written with other options ({stamp}); "
                             "choose an empty folder or delete it first")
    else:
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(json.dumps(cfg.to_json(), indent=1))
    cams = rig_cameras(cfg)
    save_rig_calibration(rig / "calibration.toml", cams)
    jobs = []
    for action in cfg.takes:
        (rig / take_name(action)).mkdir(exist_ok=True)
        poses = rig / take_name(action) / "poses3d.npy"
        if not poses.exists():  # row t of the take: true frame t + the latest start (the offsets' convention)
            late = max(recording(cfg, action, c)[0] for c in cams)
            tmp = poses.with_name(".tmp.poses3d.npy")
            with open(tmp, "wb") as f:
                np.save(f, take_motion(cfg, action)[0][late:])
            os.replace(tmp, poses)
        jobs += [(action, c) for c in cams if not video_path(rig, action, c).exists()]
    if cfg.start_spread:  # the truth, for checking `h36m-prep sync`; the build reads offsets.toml only
        (rig / "offsets_truth.toml").write_text("".join(
            f"[{take_name(a)}]\n" + "".join(f"{c} = {o}\n" for c, o in true_offsets(cfg, a).items()) + "\n"
            for a in cfg.takes))
    start = time.perf_counter()
    lengths = {(a, c): int(-np.subtract(*recording(cfg, a, c))) for a in cfg.takes for c in cams}
    total = sum(lengths.values())
    workers = workers or os.cpu_count() or 1
    with tqdm(total=total, initial=total - sum(lengths[j] for j in jobs), unit="frame", desc="synth rig",
              disable=not progress) as bar:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                bar.update(_write_job(str(rig), cfg, *job))
        elif jobs:
            with ProcessPoolExecutor(workers) as pool:
                for n in pool.map(_write_job, *zip(*[(str(rig), cfg, *j) for j in jobs])):
                    bar.update(n)
    report = {"root": str(rig), "takes": [take_name(a) for a in cfg.takes], "cameras": list(cams),
              "frames_per_video": cfg.frames, "fps": cfg.fps, "frames_written": sum(lengths[j] for j in jobs),
              "start_spread": cfg.start_spread,
              "resolution": {c: [cam.width, cam.height] for c, cam in cams.items()},
              "bytes": sum(p.stat().st_size for p in rig.rglob("*") if p.is_file()),
              "seconds": round(time.perf_counter() - start, 1)}
    (rig / ".synth" / "report.json").write_text(json.dumps(report, indent=1))
    return report


def synth_rig(raw, frames=None, scale=0.5, seed=0, workers=0, subjects=None, actions=None,
              keyframes=None, start_spread=None) -> tuple[dict, str]:
    """`h36m-prep synth --layout rig`: (report, one line saying what was written). Subjects,
    actions and keyframes are Human3.6M-layout options: refused here, not ignored."""
    given = [name for name, v in (("--subjects", subjects), ("--actions", actions), ("--keyframes", keyframes)) if v]
    if given:
        raise ValueError(f"{', '.join(given)}: options of the Human3.6M layout; the synthetic rig has its own takes "
                         "and gives each mp4 camera its own keyframe phase")
    report = write_rig(raw, RigSynthConfig(frames=frames or 300, scale=scale, seed=seed,
                                           start_spread=start_spread or 0.0), workers=workers)
    res = ", ".join(f"{c} {w}x{h}" for c, (w, h) in report["resolution"].items())
    return report, (f"wrote {report['root']}: {len(report['takes'])} takes ({' '.join(report['takes'])}) x "
                    f"{len(report['cameras'])} cameras ({res}), {report['frames_per_video']} frames at "
                    f"{report['fps']:g} fps, calibration.toml and poses3d.npy, {report['bytes'] / 1e6:.1f} MB"
                    + (f"; cameras started up to {start_spread:g} s apart, the true offsets in offsets_truth.toml"
                       if start_spread else ""))
