"""Reader for a user's own synchronized rig (the `rig` layout), beside the Human3.6M one.

    RIG/calibration.toml        optional: the cameras, anipose format (geometry/rig_calibration.py)
    RIG/<take>/<camera>.<ext>   one video per camera, any container and codec OpenCV reads
    RIG/<take>/poses3d.npy      optional: float [T, 17, 3] mm, the calibration's world frame,
                                Human3.6M 17-joint order
    RIG/offsets.toml            optional: `<camera> = <frames>`, frame t of a take is frame
                                t + offset of that camera's video (rigs not synchronized in hardware);
                                one `[take]` table per take, or one table for all (`h36m-prep sync`
                                writes it)

Takes and cameras have any names. A take becomes a sequence whose `action` and `name` are the
take's name; its `subject` is the take's session: the takes whose median backgrounds are pooled
(`rig` for training takes, `rig-test` for test takes, or the take itself with `median_per="take"`),
so no test take's pixels reach a training background. Every mistake is a RawDataError naming
the file and the fix.
"""
from __future__ import annotations

import dataclasses
import tomllib
import warnings
from pathlib import Path

import numpy as np

from .geometry import Camera, CalibrationError, load_rig_calibration
from .raw import RawDataError, Sequence, video_info

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts")
POSES = "poses3d.npy"
CALIBRATION = "calibration.toml"
OFFSETS = "offsets.toml"
ALIGN = 16  # px: a codec may pad a frame to a multiple of 16 in one dimension
MIN_FRAMES = 6  # d_min + 2 with the paper's d_min = 4: a shorter take has no unsynchronized pair
TRAIN_SESSION, TEST_SESSION = "rig", "rig-test"


@dataclasses.dataclass(frozen=True)
class RigTake(Sequence):
    """A take of the rig: a Sequence (poses_path None without poses3d.npy) with per-camera
    frame offsets."""

    offsets: dict = dataclasses.field(default_factory=dict)


def is_rig(raw: str | Path) -> bool:
    """Whether RAW looks like the rig layout: a calibration.toml, or a folder of videos, and no
    Human3.6M subject folders."""
    raw = Path(raw)
    if not raw.is_dir():
        return False
    if (raw / CALIBRATION).exists():
        return True
    subjects = [p for p in raw.iterdir() if p.is_dir() and p.name[:1] == "S" and p.name[1:].isdigit()]
    return not subjects and any(_videos(p) for p in raw.iterdir() if p.is_dir() and not p.name.startswith("."))


def _videos(take: Path) -> list[Path]:
    return sorted(p for p in take.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                  and not p.name.startswith("."))


def rig_calibration(raw: str | Path, units: str = "m") -> dict[str, Camera] | None:
    """The rig's cameras from RAW/calibration.toml, or None when there is none."""
    path = Path(raw) / CALIBRATION
    if not path.exists():
        return None
    try:
        return load_rig_calibration(path, units)
    except CalibrationError as e:
        raise RawDataError(str(e)) from None


def read_offsets(raw: str | Path, cameras: list[str], take: str | None = None) -> dict[str, int]:
    """{camera: offset >= 0} of a take from RAW/offsets.toml (shifted so the smallest is 0); zeros
    without it. The file holds one table per take (`[take]` then `<camera> = <frames>` lines, as
    `h36m-prep sync` writes it: phones started by hand differ in every take), or one table for
    every take (`<camera> = <frames>` lines at the top, or under `[offsets]`); a take's own table
    wins."""
    path = Path(raw) / OFFSETS
    if not path.exists():
        return {c: 0 for c in cameras}
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RawDataError(f"{path}: not valid TOML ({e}); write one line `<camera> = <frames>` per camera, under "
                           "a `[take]` line per take or for all takes") from None
    shared = doc.get("offsets", {k: v for k, v in doc.items() if not isinstance(v, dict)})
    tables = {k: v for k, v in doc.items() if isinstance(v, dict) and k != "offsets"}
    table = tables.get(take, shared) if take is not None else shared
    unknown = sorted(set(table) - set(cameras))
    if unknown:
        raise RawDataError(f"{path}: offsets{f' of take {take}' if take in tables else ''} for unknown camera(s) "
                           f"{', '.join(unknown)} (cameras: {', '.join(cameras)}); fix the names or remove those lines")
    bad = {k: v for k, v in table.items() if not isinstance(v, int) or isinstance(v, bool)}
    if bad:
        raise RawDataError(f"{path}: offsets must be whole numbers of frames, got {bad}")
    missing = sorted(set(cameras) - set(table)) if take in tables else []
    if missing:  # a take's own table names every camera: `h36m-prep sync` leaves out the ones it cannot tell
        raise RawDataError(f"{path}: the table of take {take} has no offset for camera(s) {', '.join(missing)} "
                           "(see the comments `h36m-prep sync` left there); write their offsets, or move their "
                           "videos out of the take")
    raw_off = {c: int(table.get(c, 0)) for c in cameras}
    low = min(raw_off.values())
    return {c: v - low for c, v in raw_off.items()}


def offset_tables(raw: str | Path) -> set[str]:
    """The takes with their own table in RAW/offsets.toml."""
    path = Path(raw) / OFFSETS
    if not path.exists():
        return set()
    try:
        return {k for k, v in tomllib.loads(path.read_text()).items() if isinstance(v, dict) and k != "offsets"}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return set()


def discover_rig(raw: str | Path, calibration: dict[str, Camera] | None, test_takes: tuple[str, ...] = (),
                 median_per: str = "rig", offsets: bool = True) -> list[RigTake]:
    """Every take under RAW, sorted by name; checks the layout only (files and names). offsets:
    read RAW/offsets.toml (else every offset is 0: what `h36m-prep sync` starts from)."""
    raw = Path(raw)
    if not raw.is_dir():
        raise RawDataError(f"{raw}: not a directory; pass the rig folder that holds one folder per take")
    if median_per not in ("rig", "take"):
        raise ValueError(f"median_per {median_per!r}: expected 'rig' or 'take'")
    takes = sorted(p for p in raw.iterdir() if p.is_dir() and not p.name.startswith("."))
    takes = [p for p in takes if _videos(p) or (p / POSES).exists()]
    if not takes:
        raise RawDataError(f"{raw}: no take folders with videos; the rig layout is RIG/<take>/<camera>.mp4")
    unknown = sorted(set(test_takes) - {p.name for p in takes})
    if unknown:
        raise RawDataError(f"{raw}: --test-takes names take(s) {', '.join(unknown)} that have no folder "
                           f"(takes: {', '.join(p.name for p in takes)})")
    names = sorted(calibration) if calibration is not None else None
    out, first_set = [], None
    for take in takes:
        vids: dict[str, Path] = {}
        for v in _videos(take):
            if v.stem in vids:
                raise RawDataError(f"{v}: a second video of camera {v.stem!r} in {take} (also {vids[v.stem].name}); "
                                   "keep one video per camera")
            vids[v.stem] = v
        if names is not None:
            extra = sorted(set(vids) - set(names))
            if extra:
                raise RawDataError(f"{vids[extra[0]]}: video of camera {extra[0]!r}, which {raw / CALIBRATION} does not "
                                   f"have (cameras: {', '.join(names)}); rename the video to its camera's `name` or add "
                                   "the camera to the calibration")
            missing = sorted(set(names) - set(vids))
            if missing:
                raise RawDataError(f"{take}: no video of camera(s) {', '.join(missing)} of {raw / CALIBRATION}; add "
                                   f"{take}/{missing[0]}.mp4 or remove the camera from the calibration")
        elif first_set is None:
            first_set = (take, sorted(vids))
        elif sorted(vids) != first_set[1]:
            raise RawDataError(f"{take}: cameras {', '.join(sorted(vids))} differ from those of {first_set[0]} "
                               f"({', '.join(first_set[1])}); every take needs a video of every camera")
        if len(vids) < 2:
            raise RawDataError(f"{take}: {len(vids)} camera video(s); synchronization needs at least two cameras "
                               "per take")
        test = take.name in test_takes
        session = take.name if median_per == "take" else (TEST_SESSION if test else TRAIN_SESSION)
        poses = take / POSES
        out.append(RigTake(session, take.name, "", take.name, poses if poses.exists() else None,
                           dict(sorted(vids.items())),
                           read_offsets(raw, sorted(vids), take.name) if offsets else {c: 0 for c in vids}))
    unknown = sorted(offset_tables(raw) - {p.name for p in takes}) if offsets else []
    if unknown:
        raise RawDataError(f"{raw / OFFSETS}: tables for take(s) {', '.join(unknown)} that have no folder (takes: "
                           f"{', '.join(p.name for p in takes)}); fix the names or remove those tables")
    return out


def read_rig_poses(path: str | Path) -> np.ndarray:
    """RIG/<take>/poses3d.npy -> [T, 17, 3] float64 mm."""
    path = Path(path)
    try:
        pose = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises several kinds for a damaged file
        raise RawDataError(f"{path}: not a readable .npy file ({type(e).__name__}: {e}); write it with "
                           "numpy.save, or move it aside to build without poses") from None
    if pose.ndim != 3 or pose.shape[1:] != (17, 3) or pose.shape[0] == 0 or not np.issubdtype(pose.dtype, np.number):
        raise RawDataError(f"{path}: shape {pose.shape} {pose.dtype}, expected float [T, 17, 3] (mm, Human3.6M "
                           "17-joint order); fix it or move it aside to build without poses")
    bad = ~np.isfinite(pose).all(axis=(1, 2))
    if bad.any():
        raise RawDataError(f"{path}: {int(bad.sum())} frame(s) with NaN/inf joints (first at frame "
                           f"{int(np.argmax(bad))}); fill them or move the file aside to build without poses")
    return pose.astype(np.float64)


def take_length(take: RigTake, calibration: dict[str, Camera] | None) -> tuple[int, float, dict[str, tuple[int, int]]]:
    """(usable frames, fps, {camera: (width, height)}) of a take, checking its videos: sizes against
    the calibration (a codec's alignment padding of up to 16 px in one dimension passes with a
    warning), one frame rate, enough frames."""
    info = {cam: video_info(p) for cam, p in take.videos.items()}
    for cam, i in info.items():
        c = (calibration or {}).get(cam)
        if c is None:
            continue
        dw, dh = abs(i.width - c.width), abs(i.height - c.height)
        if (dw, dh) == (0, 0):
            continue
        if min(dw, dh) == 0 and max(dw, dh) <= ALIGN:
            warnings.warn(f"{take.videos[cam]}: {i.width} x {i.height} pixels, calibration of {cam} says "
                          f"{c.width} x {c.height}; taken as codec alignment padding (same pixel grid)", stacklevel=2)
            continue
        raise RawDataError(f"{take.videos[cam]}: {i.width} x {i.height} pixels, but camera {cam!r} of the calibration "
                           f"is {c.width} x {c.height}; pass this video at its calibrated size or recalibrate "
                           "(a rotated or rescaled video has another pixel grid)")
    steady = {cam: i.fps for cam, i in info.items() if not i.variable}  # a variable rate's header is an average
    rates = steady or {cam: i.fps for cam, i in info.items()}
    lo, hi = min(rates.values()), max(rates.values())
    if not lo > 0 or hi - lo > 0.001 * hi:
        raise RawDataError(f"{take.key}: mixed frame rates {', '.join(f'{c} {r:g}' for c, r in rates.items())} fps; "
                           "synchronized pairs need one rate: re-encode the videos at the same rate")
    rate = float(np.median(list(rates.values())))
    for cam, i in info.items():
        if i.variable:  # its frames placed by timestamp on the take's rows
            info[cam] = video_info(take.videos[cam], rate)
            warnings.warn(f"{take.videos[cam]}: {info[cam].variable}", stacklevel=2)
    n = min(i.frames - take.offsets.get(cam, 0) for cam, i in info.items())
    if take.poses_path is not None:
        n_pose = read_rig_poses(take.poses_path).shape[0]
        if n_pose != n:
            warnings.warn(f"{take.key}: {n_pose} poses for {n} frames; using the first {min(n, n_pose)}", stacklevel=2)
        n = min(n, n_pose)
    late = max(take.offsets, key=lambda c: take.offsets[c], default=None)
    if n < MIN_FRAMES and late is not None and take.offsets[late] > 0:
        folder = Path(take.videos[late]).parent
        raise RawDataError(f"{folder.parent / OFFSETS}: camera {late} starts {take.offsets[late]} frames late, which "
                           f"leaves take {take.name} {max(n, 0)} frames (its video {take.videos[late].name} has "
                           f"{info[late].frames}); check the offsets: whole frames at {rate:g} fps, not seconds or "
                           "milliseconds")
    if n < MIN_FRAMES:
        raise RawDataError(f"{Path(next(iter(take.videos.values()))).parent}: {n} frames (after offsets), fewer "
                           f"than d_min + 2 = {MIN_FRAMES}; record a longer take or remove it")
    return n, rate, {c: (i.width, i.height) for c, i in info.items()}


def pixel_camera(name: str, width: int, height: int) -> Camera:
    """An uncalibrated camera: normalised coordinates are pixels (f = 1, c = 0, no distortion),
    so a crop of it is a square image crop."""
    return Camera(id=name, R=np.eye(3), C=np.zeros(3), f=np.ones(2), c=np.zeros(2), k=np.zeros(3),
                  p=np.zeros(2), width=width, height=height)
