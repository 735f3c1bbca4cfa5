"""Sources: each raw layout behind one small interface, so that the build, the preview, `info`
and the command line never ask which layout they read.

A source turns a raw folder into a `Plan`: the sequences (takes) and their (sequence, camera)
units with fixed row ranges, the cameras with their calibration, the frame rate, whether there
are poses and a calibration, the files that fingerprint the raw data beside the videos and pose
files, and what was excluded; it reads its own pose files and draws its own preview tiles.

  H36M   the Human3.6M release layout (raw.py): poses required, calibration from cameras.json
  Rig    a user's cameras (rig.py): calibration, poses and offsets optional

A new layout is one more class here, registered in SOURCES.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .geometry import FPS, Camera, joints17, project
from .raw import RawDataError, Sequence, calibration_for, discover, iter_frames, read_poses, sequence_length


@dataclasses.dataclass
class Plan:
    """What a build needs to know of a raw folder, whatever its layout."""

    layout: str
    sequences: list[dict]        # {subject, action, subaction, name, frames, split, every?}
    units: list[dict]            # {sequence, camera, start, length, offset?, every?}
    takes: list[Sequence]        # per sequence: its videos and pose file (None without poses)
    cams: dict[str, dict[str, Camera]]  # {subject (a rig: session): {camera: Camera}}
    fps: float
    poses: bool                  # crops follow the skeleton (else label-free crops)
    calibrated: bool             # virtual-camera crops (else square image crops)
    skipped: list[dict]
    excluded: list[dict]
    extra_files: list[Path]      # fingerprinted beside the videos and pose files
    exact_poses: bool = True     # motion capture (rigid bones), not estimates


class Source:
    """The interface; `own_options` are the BuildConfig fields only this source reads."""

    name = ""
    own_options: tuple[str, ...] = ()

    def detect(self, raw: Path) -> bool:
        raise NotImplementedError

    def plan(self, raw: Path, cfg) -> Plan:
        raise NotImplementedError

    @staticmethod
    def load_poses(path: str | Path) -> np.ndarray:
        """[T, 17, 3] float64 world mm of a pose file of this source."""
        raise NotImplementedError

    def preview_tiles(self, raw: Path, subject: str | None, sequence: str | None, frame: int | None) -> list[np.ndarray]:
        """One RGB image a camera of one sequence at one frame, the skeleton drawn where there are poses."""
        raise NotImplementedError


class H36M(Source):
    name = "h36m"
    own_options = ("keep_damaged",)  # the release's known damaged takes

    def detect(self, raw: Path) -> bool:
        return True  # the default layout: its reader names what is missing

    def plan(self, raw: Path, cfg) -> Plan:
        from .plan import plan

        cams = calibration_for(raw)
        sequences, units, skipped, takes, excluded = plan(raw, cfg, cams)
        extra = [raw / "cameras.json"] if (raw / "cameras.json").exists() else []
        return Plan(self.name, sequences, units, takes, cams, FPS, True, True, skipped, excluded, extra)

    @staticmethod
    def load_poses(path: str | Path) -> np.ndarray:
        return joints17(read_poses(path)).astype(np.float64)

    def preview_tiles(self, raw, subject, sequence, frame):
        from .preview import _label, draw_skeleton

        seqs = discover(raw, (subject,) if subject else None)
        seq = next((s for s in seqs if sequence in (None, s.name, s.action)), None)
        if seq is None:
            raise RawDataError(f"{raw}: no sequence named {sequence!r} for {subject or 'any subject'}")
        n = sequence_length(seq)
        frame = _frame(seq, n, frame)
        pose = self.load_poses(seq.poses_path)[frame]
        cams = calibration_for(raw)[seq.subject]
        return [_label(draw_skeleton(next(iter_frames(path, 1, frame)), project(pose, cams[cam_id])),
                       f"{seq.key} cam {cam_id} t={frame}") for cam_id, path in seq.videos.items()]


class Rig(Source):
    name = "rig"
    own_options = ("test_takes", "calib_units", "median_per", "move_silhouette", "track_seconds", "size_seconds")

    def detect(self, raw: Path) -> bool:
        from .rig import is_rig

        return is_rig(raw)

    def plan(self, raw: Path, cfg) -> Plan:
        from .plan import plan_rig
        from .rig import CALIBRATION, OFFSETS

        sequences, units, skipped, takes, facts = plan_rig(raw, cfg)
        extra = [raw / name for name in (CALIBRATION, OFFSETS) if (raw / name).exists()]
        return Plan(self.name, sequences, units, takes, facts["cams"], facts["fps"], facts["poses"],
                    facts["calibrated"], skipped, [], extra, exact_poses=False)  # a rig's poses are estimates

    @staticmethod
    def load_poses(path: str | Path) -> np.ndarray:
        from .rig import read_rig_poses

        return read_rig_poses(path)

    def preview_tiles(self, raw, subject, sequence, frame):
        from .preview import _label, draw_skeleton
        from .rig import discover_rig, rig_calibration, take_length

        calib = rig_calibration(raw)
        takes = discover_rig(raw, calib)
        seq = next((t for t in takes if sequence in (None, t.name)), None)
        if seq is None:
            raise RawDataError(f"{raw}: no take named {sequence!r} (takes: {', '.join(t.name for t in takes)})")
        frame = _frame(seq, take_length(seq, calib)[0], frame)
        pose = self.load_poses(seq.poses_path)[frame] if seq.poses_path is not None and calib is not None else None
        tiles = []
        for cam_id, path in seq.videos.items():
            img = next(iter_frames(path, 1, frame + seq.offsets.get(cam_id, 0)))
            if pose is not None:
                img = draw_skeleton(img, project(pose, calib[cam_id]))
            tiles.append(_label(img, f"{seq.name} {cam_id} t={frame}"))
        return tiles


def _frame(seq: Sequence, n: int, frame: int | None) -> int:
    frame = n // 2 if frame is None else frame
    if not 0 <= frame < n:
        raise RawDataError(f"{seq.key}: frame {frame} out of range (0..{n - 1})")
    return frame


SOURCES: dict[str, Source] = {"rig": Rig(), "h36m": H36M()}  # detection tries them in this order
LAYOUTS = tuple(sorted(SOURCES))


def source_for(raw: str | Path, layout: str | None = None, cfg=None) -> Source:
    """The source named by `layout`, or the first whose layout RAW has; with a build config, an
    option that only another source reads, set away from its default, is an error."""
    if layout is not None and layout not in SOURCES:
        raise ConfigError(f"--layout {layout}: choose one of {', '.join(LAYOUTS)}")
    source = SOURCES[layout] if layout else next(s for s in SOURCES.values() if s.detect(Path(raw)))
    if cfg is not None:
        defaults = type(cfg)()
        foreign = [f for s in SOURCES.values() if s is not source for f in s.own_options
                   if f not in source.own_options and getattr(cfg, f) != getattr(defaults, f)]
        if foreign:
            raise ConfigError(f"{raw}: is read as the {source.name} layout, which does not use "
                              + ", ".join(f"--{f.replace('_', '-')}" for f in foreign)
                              + "; drop them, or name the layout with --layout if it was detected wrongly")
    return source
