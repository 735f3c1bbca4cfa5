"""The rows of a store: which sequences (Human3.6M takes, or a rig's takes) and (sequence, camera)
units it holds, each unit with its fixed row range, checked before anything is written.

Both layouts come out in the same records: `sequences` [{subject, action, subaction, name,
frames, split, every?}] and `units` [{sequence, camera, start, length, offset?, every?}], where
`frames` counts the video's frames and `length` the stored rows (every `every`-th frame of a
subsampled training sequence).
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import store as S
from .config import BuildConfig
from .fingerprint import file_fingerprint
from .geometry import TEST_SUBJECTS, joints17
from .plausible import check_camera_spacing, check_lens, check_pose_units, check_projection
from .raw import RawDataError, Sequence, discover, exclude_known_damaged, read_poses, sequence_length
from .rig import CALIBRATION, OFFSETS, discover_rig, pixel_camera, read_rig_poses, rig_calibration, take_length


def plan(raw: Path, cfg: BuildConfig, cams: dict) -> tuple[list[dict], list[dict], list[dict], list[Sequence], list[dict]]:
    """(sequences, units, skipped, Sequence objects, excluded) with every unit's row range fixed;
    cams: the raw data's calibration, {subject: {camera id: Camera}}."""
    seqs, skipped, rows = [], [], []
    found, excluded = discover(raw, cfg.subjects, cams), []
    if not cfg.keep_damaged:
        found, excluded = exclude_known_damaged(found)
    source = raw / "cameras.json" if (raw / "cameras.json").exists() else "the shipped calibration"
    for subject in sorted({seq.subject for seq in found}):
        for cam in cams[subject].values():
            check_lens(cam, source)
        check_camera_spacing(cams[subject], source, "write the translations of cameras.json in millimetres")
    for seq in found:
        n = _checked(seq, lambda: _h36m_take(seq, cams[seq.subject]), cfg, skipped)
        if n is None:
            continue
        seqs.append(seq)
        rows.append(n)
    sequences, units = _rows(seqs, rows, lambda seq: "test" if seq.subject in TEST_SUBJECTS else "train", cfg.every)
    _no_footage_twice(seqs, sequences)
    return sequences, units, skipped, seqs, excluded


def _h36m_take(seq: Sequence, cams: dict) -> int:
    """The usable frames of a Human3.6M take, once its poses are found plausible."""
    n = sequence_length(seq, cams)
    pose = joints17(read_poses(seq.poses_path))
    check_pose_units(pose, seq.poses_path)
    check_projection(pose[:n], {c: cams[c] for c in seq.videos}, seq.videos, seq.poses_path)
    return n


def _rig_take(take, calib) -> tuple:
    """take_length of a rig take, once its poses (if any) are found plausible."""
    checked = take_length(take, calib)
    if take.poses_path is not None:
        pose = read_rig_poses(take.poses_path)
        check_pose_units(pose, take.poses_path)
        if calib is not None:
            check_projection(pose[:checked[0]], {c: calib[c] for c in take.videos}, take.videos, take.poses_path)
    return checked


def _checked(seq: Sequence, check, cfg: BuildConfig, skipped: list):
    """check() of one sequence, its warnings printed; None when it is broken and --skip-bad skips it
    (recorded in `skipped`), else its error."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = check()
        for w in caught:
            tqdm.write(f"warning: {w.message}")
        return result
    except RawDataError as e:
        if not cfg.skip_bad:
            raise
        tqdm.write(f"warning: skipping {seq.key}: {e}")
        skipped.append({"sequence": seq.key, "error": str(e)})
        return None


def _rows(seqs: list[Sequence], rows: list[int], split, every: int = 1) -> tuple[list[dict], list[dict]]:
    """Sequence and unit records; a training sequence stores every `every`-th frame only (frames
    t = 0, every, 2 every, ... at rows t // every: `length` rows of `frames` source frames)."""
    sequences, units, start = [], [], 0
    for i, (seq, n) in enumerate(zip(seqs, rows)):
        part = split(seq)
        e = every if part == "train" else 1
        sequences.append({"subject": seq.subject, "action": seq.action, "subaction": seq.subaction,
                          "name": seq.name, "frames": n, "split": part} | ({"every": e} if e > 1 else {}))
        for cam in sorted(seq.videos):
            length = -(-n // e)
            units.append({"sequence": i, "camera": cam, "start": start, "length": length}
                         | ({"offset": seq.offsets[cam]} if getattr(seq, "offsets", {}).get(cam) else {})
                         | ({"every": e} if e > 1 else {}))
            start += length
    return sequences, units


def plan_rig(raw: Path, cfg: BuildConfig) -> tuple[list[dict], list[dict], list[dict], list[Sequence], dict]:
    """The rig layout's (sequences, units, skipped, takes, facts): facts holds the cameras
    ({session: {camera: Camera}}), fps, and whether the store has poses and a calibration."""
    calib = rig_calibration(raw, cfg.calib_units)
    if calib is not None:
        source = raw / CALIBRATION
        for cam in calib.values():
            check_lens(cam, source)
        check_camera_spacing(calib, source, "pass --calib-units mm for translations in millimetres"
                             if cfg.calib_units == "m" else "drop --calib-units mm: the translations are in metres")
    takes = discover_rig(raw, calib, cfg.test_takes, cfg.median_per)
    kept, rows, rates, sizes, skipped = [], [], {}, {}, []
    for take in takes:
        checked = _checked(take, lambda: _rig_take(take, calib), cfg, skipped)
        if checked is None:
            continue
        n, fps, size = checked
        kept.append(take)
        rows.append(n)
        rates[take.name] = fps
        for cam, wh in size.items():
            other = sizes.setdefault((take.subject, cam), (wh, take))
            if other[0] != wh:
                raise RawDataError(f"{take.videos[cam]}: {wh[0]} x {wh[1]} pixels, but camera {cam!r} is "
                                   f"{other[0][0]} x {other[0][1]} in {other[1].videos[cam]}; one camera keeps its "
                                   "size across takes (its median background is shared): re-encode the video")
    if not kept:
        raise RawDataError(f"{raw}: no usable takes")
    lo, hi = min(rates.values()), max(rates.values())
    if hi - lo > 0.001 * hi:
        raise RawDataError(f"{raw}: takes at different frame rates ({', '.join(f'{t} {r:g}' for t, r in rates.items())} "
                           "fps); a store has one rate: re-encode the videos at one rate, or build them into "
                           "separate stores")
    with_poses = [t.poses_path is not None for t in kept]
    if any(with_poses) and not all(with_poses):
        tqdm.write(f"warning: {sum(with_poses)} of {len(kept)} takes have {kept[0].poses_path and kept[0].poses_path.name or 'poses3d.npy'}; "
                   "building label-free crops for all takes (the poses are not used)")
        kept = [dataclasses.replace(t, poses_path=None) for t in kept]
    cams = {t.subject: {cam: (calib[cam] if calib is not None else pixel_camera(cam, *sizes[(t.subject, cam)][0]))
                        for cam in t.videos} for t in kept}
    sequences, units = _rows(kept, rows, lambda t: "test" if t.name in cfg.test_takes else "train", cfg.every)
    _no_footage_twice(kept, sequences)
    if not (raw / OFFSETS).exists():
        from .sync import quick_check

        note = quick_check(kept, float(np.median(list(rates.values()))))
        if note:
            tqdm.write(f"warning: {raw}: no {OFFSETS}, and the videos look unsynchronized: {note}; run "
                       f"`h36m-prep sync {raw}` to find each camera's offset in every take")
    facts = {"cams": cams, "fps": float(np.median(list(rates.values()))), "poses": all(with_poses),
             "calibrated": calib is not None}
    return sequences, units, skipped, kept, facts


def _no_footage_twice(takes: list[Sequence], sequences: list[dict]) -> None:
    """No video may serve two takes (a symlink, a hard link or a copy under another name): its
    frames would be in the store twice, and in both splits when one of the takes is a test take."""
    seen: dict[tuple, tuple[Path, dict]] = {}
    for take, record in zip(takes, sequences):
        for path in take.videos.values():
            st = Path(path).stat()
            for key in (("file", st.st_dev, st.st_ino), ("content", st.st_size, file_fingerprint(Path(path), False))):
                other = seen.setdefault(key, (path, record))
                if other[0] != path:
                    kind = "one file under two names" if key[0] == "file" else "an identical copy"
                    where = (f"two cameras of one take" if other[1] is record else
                             f"two takes, of the {other[1]['split']} and the {record['split']} split")
                    raise RawDataError(f"{path}: the same footage as {other[0]} ({kind}), in {where}; remove the "
                                       "duplicate: a store would hold these frames twice")


def _views(sequences: list[dict], units: list[dict]) -> list[tuple[str, str]]:
    return sorted({(sequences[u["sequence"]]["subject"], u["camera"]) for u in units},
                  key=lambda v: (S.subject_order(v[0]), v[1]))
