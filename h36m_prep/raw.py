"""Reader for the Human3.6M release layout (real or synthetic, one code path).

    RAW/S1/Videos/<Action>.<camera>.mp4              one video per action and camera, 50 fps
    RAW/S1/MyPoseFeatures/D3_Positions/<Action>.cdf  variable `Pose` [1, T, 96], world mm
    RAW/cameras.json                                 calibration (else the shipped one)

Every user mistake becomes a RawDataError that names the file and says what to do.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import warnings
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import ToolkitError
from .geometry import FPS, Camera, load_calibration

# The dataset's 15 actions, and the other spellings its files use for two of them.
ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)
ACTION_ALIASES: dict[str, str] = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}
_NAME = re.compile(r"^(?P<base>.*?)(?: (?P<sub>\d+))?$")


class RawDataError(ToolkitError, ValueError):
    """Bad raw input; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One action take of one subject: a pose file and one video per camera."""

    subject: str
    action: str      # canonical action name, e.g. "Photo" for files named "TakingPhoto"
    subaction: str   # "" or the take number of the file name, e.g. "1" for "Walking 1"
    name: str        # the name as the files spell it, e.g. "Walking 1"
    poses_path: Path
    videos: dict[str, Path]  # camera id -> mp4

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.name}"


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    frames: int      # rows at `fps`: the frame count, or for a variable frame rate the duration x fps + 1
    fps: float       # the header's rate
    width: int
    height: int
    variable: str = ""  # for a variable frame rate: how its frames were placed (else empty)


@dataclasses.dataclass(frozen=True)
class Timeline:
    """Where each row of a video comes from. Frames are placed by their timestamps, not counted:
    row t (time t / rate from the first frame) is the frame shown at that moment, the nearest one.
    For a constant frame rate that is frame t; a phone's variable frame rate repeats a frame where
    the camera skipped one and drops one where two came close together."""

    rate: float
    index: np.ndarray | None  # row -> source frame; None: the identity (constant frame rate)
    note: str = ""


@functools.lru_cache(maxsize=512)
def _timeline(path: str, size: int, mtime: float, rate: float) -> Timeline:
    try:
        import av

        with av.open(path) as container:
            stream = container.streams.video[0]
            pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
            base = float(stream.time_base)
    except Exception:  # a container PyAV cannot demux: trust the header's frame count
        return Timeline(rate, None)
    if len(pts) < 2 or not rate > 0:
        return Timeline(rate, None)
    times = (np.asarray(pts, np.float64) - pts[0]) * base
    drift = times - np.arange(len(times)) / rate
    if np.abs(drift - drift[0]).max() < 0.5 / rate:  # every frame within half a frame of its count's time
        return Timeline(rate, None)
    rows = int(np.floor(times[-1] * rate + 0.5)) + 1
    want = np.arange(rows) / rate
    right = np.clip(np.searchsorted(times, want), 1, len(times) - 1)
    index = np.where(want - times[right - 1] <= times[right] - want, right - 1, right)
    used = len(np.unique(index))
    gaps = np.diff(times) * 1000
    note = (f"variable frame rate (frames {gaps.min():.1f} to {gaps.max():.1f} ms apart, header {rate:g} fps): "
            f"{len(times)} frames placed by their timestamps on {rows} rows at {rate:g} fps, "
            f"{rows - used} repeated, {len(times) - used} dropped")
    return Timeline(rate, index.astype(np.int64), note)


def timeline(path: str | Path, rate: float) -> Timeline:
    """The video's Timeline at `rate` (its header's), from its packets' timestamps (no decoding)."""
    st = Path(path).stat()
    return _timeline(str(path), st.st_size, st.st_mtime, float(rate))


def parse_action(name: str) -> tuple[str, str]:
    """'Walking 1' -> ('Walking', '1'); 'TakingPhoto' -> ('Photo', '')."""
    m = _NAME.match(name.strip())
    base, sub = m.group("base"), m.group("sub") or ""
    return ACTION_ALIASES.get(base, base), sub


def calibration_for(raw: Path) -> dict[str, dict[str, Camera]]:
    """The dataset's calibration: RAW/cameras.json when present, else the shipped file."""
    path = Path(raw) / "cameras.json"
    return load_calibration(path if path.exists() else None)


def discover(raw: str | Path, subjects: tuple[str, ...] | None = None,
             calibration: dict[str, dict[str, Camera]] | None = None) -> list[Sequence]:
    """All sequences under RAW, sorted by subject then name.

    Checks the layout only (files exist, camera ids known); contents are read lazily.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise RawDataError(f"{raw}: not a directory; pass the dataset root that holds S1, S5, ...")
    calibration = calibration if calibration is not None else calibration_for(raw)
    subject_dirs = sorted((p for p in raw.iterdir() if p.is_dir() and re.fullmatch(r"S\d+", p.name)),
                          key=lambda p: int(p.name[1:]))
    if subjects is not None:
        missing = sorted(set(subjects) - {p.name for p in subject_dirs})
        if missing:
            raise RawDataError(f"{raw}: no folder for subject(s) {', '.join(missing)}; "
                               "check the dataset root or the --subjects option")
        subject_dirs = [p for p in subject_dirs if p.name in subjects]
    if not subject_dirs:
        loose = sorted(p.name for p in raw.iterdir() if p.is_file() and p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm"))
        hint = (f"; for your own rig, put the videos ({', '.join(loose[:3])}{' ...' if len(loose) > 3 else ''}) in a "
                "folder per take, RAW/<take>/<camera>.<ext> (README, \"Your own rig\")") if loose else \
            "; for your own rig, use the layout RAW/<take>/<camera>.<ext> (README, \"Your own rig\")"
        raise RawDataError(f"{raw}: no subject folders (S1, S5, ...); pass the Human3.6M dataset root{hint}")
    out: list[Sequence] = []
    for sdir in subject_dirs:
        out.extend(_subject_sequences(sdir, calibration))
    return out


def _subject_sequences(sdir: Path, calibration: dict[str, dict[str, Camera]]) -> list[Sequence]:
    subject = sdir.name
    pose_dir = sdir / "MyPoseFeatures" / "D3_Positions"
    video_dir = sdir / "Videos"
    for d in (pose_dir, video_dir):
        if not d.is_dir():
            loose = [p.name for p in sdir.iterdir() if p.is_file() and p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm")]
            hint = (f"; {sdir.name} holds videos itself ({', '.join(loose[:3])}): if it is a take of your own rig, "
                    "pass --layout rig (docs/rig.md)") if loose else ""
            raise RawDataError(f"{d}: missing; a subject folder needs Videos/ and "
                               f"MyPoseFeatures/D3_Positions/ as in the Human3.6M release{hint}")
    if subject not in calibration:
        raise RawDataError(f"{sdir}: subject {subject} has no entry in the calibration file; "
                           "add it to RAW/cameras.json")
    known = calibration[subject]
    videos: dict[tuple[str, str], dict[str, Path]] = {}
    for mp4 in sorted(video_dir.glob("*.mp4")):
        if mp4.name.startswith((".", "_ALL")):  # temporaries and the release's montage videos
            continue
        name, _, cam = mp4.stem.rpartition(".")
        if not name:
            raise RawDataError(f"{mp4}: name is not <Action>.<camera>.mp4; rename or remove it")
        if cam not in known:
            raise RawDataError(f"{mp4}: unknown camera id {cam!r} (known for {subject}: "
                               f"{', '.join(sorted(known))}); rename the file or add the camera "
                               "to RAW/cameras.json")
        videos.setdefault(parse_action(name), {})[cam] = mp4
    seqs = []
    for cdf in sorted(pose_dir.glob("*.cdf")):
        if cdf.name.startswith("."):
            continue
        action, sub = parse_action(cdf.stem)
        cams = videos.pop((action, sub), None)
        if not cams:
            raise RawDataError(f"{cdf}: no videos {video_dir}/{cdf.stem}.<camera>.mp4 for this "
                               "pose file; restore them or remove the pose file")
        seqs.append(Sequence(subject, action, sub, cdf.stem, cdf, dict(sorted(cams.items()))))
    for (action, sub), cams in videos.items():
        first = next(iter(cams.values()))
        raise RawDataError(f"{first}: no pose file {pose_dir}/{first.stem.rpartition('.')[0]}.cdf "
                           "for this video; restore it or remove the video")
    return seqs


# Takes that public Human3.6M toolkits leave out: (subject, action, take, camera or None for
# every camera). A take is the position of the file among that subject's takes of the action,
# ordered by take number with the unnumbered one first ('Greeting' is 1, 'Greeting 1' is 2).
KNOWN_DAMAGED: tuple[tuple[str, str, int, str | None, str], ...] = (
    ("S9", "Greeting", 2, None, "damaged take"),
    ("S9", "SittingDown", 2, None, "damaged take"),
    ("S9", "Waiting", 1, None, "damaged take"),
    ("S11", "Directions", 1, "54138969", "corrupt video"),
)


def exclude_known_damaged(seqs: list[Sequence]) -> tuple[list[Sequence], list[dict]]:
    """(sequences without KNOWN_DAMAGED, what was left out: [{sequence, camera, reason}]).
    A damaged camera of a take removes that camera only; the take keeps its other views."""
    takes: dict[tuple[str, str], list[Sequence]] = {}
    for seq in seqs:
        takes.setdefault((seq.subject, seq.action), []).append(seq)
    ordinal = {}
    for group in takes.values():
        for k, seq in enumerate(sorted(group, key=lambda q: int(q.subaction or 0)), start=1):
            ordinal[seq.key] = k
    bad = {(s, a, k): (cam, why) for s, a, k, cam, why in KNOWN_DAMAGED}
    kept, excluded = [], []
    for seq in seqs:
        hit = bad.get((seq.subject, seq.action, ordinal[seq.key]))
        if hit is None or (hit[0] is not None and hit[0] not in seq.videos):
            kept.append(seq)
            continue
        cam, why = hit
        excluded.append({"sequence": seq.key, "camera": cam, "reason": why})
        if cam is not None:
            kept.append(dataclasses.replace(seq, videos={c: p for c, p in seq.videos.items() if c != cam}))
    return kept, excluded


def read_poses(path: str | Path) -> np.ndarray:
    """A D3_Positions file -> [T, 32, 3] float32 world mm."""
    import cdflib

    path = Path(path)
    if not path.is_file():
        raise RawDataError(f"{path}: pose file not found; restore it from the dataset")
    try:
        cdf = cdflib.CDF(str(path))
        names = cdf.cdf_info().zVariables + cdf.cdf_info().rVariables
    except Exception as e:  # cdflib raises many kinds for a damaged file
        raise RawDataError(f"{path}: not a readable CDF file ({type(e).__name__}: {e}); "
                           "replace it with the dataset's file") from None
    if "Pose" not in names:
        raise RawDataError(f"{path}: no variable 'Pose' (has: {', '.join(names) or 'none'}); "
                           "this is not a D3_Positions file")
    try:
        pose = np.asarray(cdf.varget("Pose"))
    except Exception as e:  # a truncated file: cdflib fails on the records, e.g. a negative read length
        raise RawDataError(f"{path}: variable 'Pose' cannot be read ({type(e).__name__}: {e}; truncated?); "
                           "replace it with the dataset's file or skip the sequence with --skip-bad") from None
    if pose.ndim == 3 and pose.shape[0] == 1:
        pose = pose[0]
    if pose.ndim != 2 or pose.shape[1] != 96 or pose.shape[0] == 0:
        raise RawDataError(f"{path}: 'Pose' has shape {pose.shape}, expected [1, T, 96] "
                           "(32 joints x 3); this is not a D3_Positions file")
    bad = ~np.isfinite(pose).all(axis=1)
    if bad.any():
        raise RawDataError(f"{path}: {int(bad.sum())} frame(s) with NaN/inf joints (first at "
                           f"frame {int(np.argmax(bad))}); replace the file or skip the sequence "
                           "with --skip-bad")
    return pose.reshape(-1, 32, 3).astype(np.float32)


def video_info(path: str | Path, rate: float | None = None) -> VideoInfo:
    """Frame count and fps from the container header; the size of the decoded frames. A video
    whose frame rate varies counts its rows at `rate` (the store's; default its header's)."""
    path = Path(path)
    if not path.is_file():
        raise RawDataError(f"{path}: video not found; restore it from the dataset")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise RawDataError(f"{path}: cannot be opened as a video (damaged, or a format OpenCV cannot read); "
                               "replace the file or skip the sequence with --skip-bad")
        info = VideoInfo(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS)),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        ok, first = cap.read()  # the decoded size: a phone video's rotation flag turns the frames, not the header
        if ok and (first.shape[1], first.shape[0]) != (info.width, info.height):
            info = dataclasses.replace(info, width=first.shape[1], height=first.shape[0])
    finally:
        cap.release()
    if info.frames <= 0:
        raise RawDataError(f"{path}: 0 frames in the header (truncated?); replace the file or "
                           "skip the sequence with --skip-bad")
    line = timeline(path, rate or info.fps)
    if line.index is not None:
        info = dataclasses.replace(info, frames=len(line.index), variable=line.note)
    return info


def iter_frames(path: str | Path, count: int | None = None, start: int = 0, step: int = 1,
                rate: float | None = None, bgr: bool = False) -> Iterator[np.ndarray]:
    """Decode frames [start, start + count) as RGB uint8 [H, W, 3]; with step, only every step-th
    of them (the others are grabbed and dropped). A video whose frame rate varies gives its rows
    at `rate` (the store's; default its header's), each frame placed by its timestamp. bgr: the
    frames in the decoder's BGR order, not converted (a caller that keeps only a small part of
    each frame converts that part).

    Raises RawDataError when the video ends early: fewer frames than asked for (or than the
    header promises when count is None) means a truncated or damaged file.
    """
    path = Path(path)
    info = video_info(path, rate)
    stop = info.frames if count is None else start + count
    if info.variable:
        yield from iter_rows(path, np.arange(start, stop, step), rate, bgr)
        return
    cap = cv2.VideoCapture(str(path))
    try:
        if start:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        for t in range(start, stop):
            if (t - start) % step:
                if not cap.grab():
                    raise RawDataError(f"{path}: {t} frames decoded, {stop} expected (truncated?); "
                                       "replace the file or skip the sequence with --skip-bad")
                continue
            ok, frame = cap.read()
            if not ok:
                raise RawDataError(f"{path}: {t} frames decoded, {stop} expected (truncated?); "
                                   "replace the file or skip the sequence with --skip-bad")
            yield frame if bgr else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def iter_rows(path: str | Path, rows, rate: float | None = None, bgr: bool = False) -> Iterator[np.ndarray]:
    """The frames of the given rows (increasing) of a video whose frame rate varies, each the
    source frame its timestamp puts there: one pass from the start (seeking by frame number is
    not exact for such a video), each frame decoded once, repeated where rows share it."""
    path = Path(path)
    info = video_info(path, rate)
    index = timeline(path, rate or info.fps).index if info.variable else np.arange(info.frames)
    rows = np.asarray(rows, np.int64)
    if len(rows) and rows[-1] >= len(index):
        raise RawDataError(f"{path}: {len(index)} rows at its frame rate, row {int(rows[-1])} asked for; replace "
                           "the file or skip the sequence with --skip-bad")
    cap = cv2.VideoCapture(str(path))
    try:
        frame, current = None, -1
        for k in index[rows]:
            while current < k:  # frames before the next needed one are grabbed, not decoded to RGB
                if current + 1 < k:
                    ok = cap.grab()
                else:
                    ok, frame = cap.read()
                if not ok:
                    raise RawDataError(f"{path}: {current + 1} frames decoded, {int(k) + 1} expected (truncated?); "
                                       "replace the file or skip the sequence with --skip-bad")
                current += 1
            yield frame if bgr else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def read_frames(path: str | Path, count: int | None = None, start: int = 0) -> np.ndarray:
    """[count, H, W, 3] uint8 RGB; see iter_frames."""
    return np.stack(list(iter_frames(path, count, start)))


def sequence_length(seq: Sequence, calibration: dict[str, Camera] | None = None) -> int:
    """Frames usable in a sequence: the shorter of the poses and every video, with a warning.

    The release has videos with a few more frames than poses; the extra frames are dropped.
    With the subject's calibration, a video whose size is not its camera's is a RawDataError:
    its crops would be taken from the wrong pixels.
    """
    n_pose = read_poses(seq.poses_path).shape[0]
    info = {cam: video_info(p, FPS) for cam, p in seq.videos.items()}
    for cam, i in info.items():
        c = (calibration or {}).get(cam)
        if c is not None and (i.width, i.height) != (c.width, c.height):
            raise RawDataError(f"{seq.videos[cam]}: {i.width} x {i.height} pixels, but the calibration of "
                               f"{seq.subject} camera {cam} is for {c.width} x {c.height}; pass the calibration "
                               "of these videos (RAW/cameras.json), or skip the sequence with --skip-bad")
    for cam, i in info.items():
        if i.variable:
            warnings.warn(f"{seq.videos[cam]}: {i.variable}", stacklevel=2)
    n_video = {cam: i.frames for cam, i in info.items()}
    n = min([n_pose, *n_video.values()])
    if any(v != n_pose for v in n_video.values()):
        warnings.warn(f"{seq.key}: {n_pose} poses but videos have "
                      f"{', '.join(f'{c}:{v}' for c, v in n_video.items())} frames; "
                      f"using the first {n}", stacklevel=2)
    return n
