"""`h36m-prep build RAW OUT.zarr`: decode every video once into the store.

The raw layout is a source (sources.py: Human3.6M's, a user's rig), detected from RAW or named; the
build knows it only through the source's plan. With poses, a crop is centred on the joints;
without (a rig without poses3d.npy), on the person found in the foreground (crops.detect_person,
smoothed over time), with the same store arrays.

Stages: plan the rows (every sequence x camera is a unit with a fixed row range), median
backgrounds per subject (a rig: per session) and camera, the units in parallel worker processes, then the
background-crop bank and the `complete` flag. A unit is marked done only after all its rows are
written, so killing the build at any moment and rerunning it finishes the job with the same
arrays as an uninterrupted build.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import zarr
from tqdm import tqdm

from . import store as S
from .background import plurality_background, sample_frames
from .crops import (SILHOUETTE, crop_geometry, detect_person, detect_scale, foreground_mask, label_free_geometry,
                    moving_frames, silhouette, silhouette_threshold, smooth_track, warp)
from .geometry import FLIP_PAIRS, FPS, JOINT_NAMES, PARENTS, crop_sampling_map
from .plan import _views
from .raw import RawDataError, iter_frames
from .config import BuildConfig
from .errors import ToolkitError
from .fingerprint import first_difference, raw_fingerprint
from .engines import engine, tick
from .lock import exclusive
from .sources import SOURCES, source_for
from .store.location import Location, locate

WRITE_BLOCK = 25  # frames per write of the image arrays


class Interrupted(ToolkitError):
    """Stopped by Ctrl-C or SIGTERM; the message says how to resume."""


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("multiview-sync")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------- jobs (engines.py runs them)

def _median_job(videos: list[tuple[str, int]], samples: int, tolerance: int, skip_bad: bool,
                fps: float | None = None, vote_scale: int = 1) -> np.ndarray:
    """Median background of one view, from its videos alone (no pose). videos: [(mp4, usable frames)]."""
    picked = sample_frames([(Path(v), n) for v, n in videos], samples, skip_bad, fps)
    return plurality_background([f for _, _, f in picked], tolerance, vote_scale)


def _unit_job(store: Location, video: str, poses: tuple[str, str] | None, cam_json: dict, unit: dict,
              subject: str, cfg: BuildConfig, calibrated: bool = True, fps: float = FPS) -> dict:
    """Crop, mask and write one (sequence, camera); return its per-frame metadata.
    poses: (source name, pose file), read by that source; or None: label-free crops centred on
    the person found in the foreground."""
    with S.writing():
        return _unit_rows(store, video, poses, cam_json, unit, subject, cfg, calibrated, fps)


def _load_poses(poses: tuple[str, str]) -> np.ndarray:
    source, path = poses
    return SOURCES[source].load_poses(path)


BOX_LIMIT = 4.0  # a crop's footprint may span at most this many times the frame's longer side
EMPTY_MASKS = 0.5  # a unit whose masks are empty in more of its frames than this is reported


def _check_box(box: np.ndarray, shape: tuple, video: str, frame: int) -> None:
    """A crop whose footprint dwarfs the frame comes from poses or a calibration that do not
    belong to this video; its pixels would be garbage."""
    side = max(shape[0], shape[1])
    span = max(box[2] - box[0], box[3] - box[1])
    if not np.isfinite(box).all() or span > BOX_LIMIT * side:
        raise RawDataError(f"{video}: the crop of frame {frame} spans {span:.4g} px, {span / side:.3g} times the "
                           f"{shape[1]} x {shape[0]} frame: the calibration (translation units, distortion) or the "
                           "poses do not fit this video; check them with `h36m-prep preview`")


def _person_track(video: str, median: np.ndarray, n: int, offset: int, cfg: BuildConfig, fps: float, every: int = 1):
    """Pass 1 of a label-free unit: the person's box in every stored frame (every `every`-th),
    smoothed -> (centre [n, 2], half [n])."""
    h, w = median.shape[:2]
    scale = detect_scale(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small_bg = cv2.resize(median, size, interpolation=cv2.INTER_AREA)
    boxes = np.zeros((n, 4))
    for t, frame in enumerate(iter_frames(video, (n - 1) * every + 1, offset, every, fps, bgr=True)):
        small = cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        box = detect_person(small, small_bg, cfg.mask_threshold)
        boxes[t] = (box + 0.5) / scale - 0.5  # detection pixels -> video pixels (centres at integers)
    centre, half, missed = smooth_track(boxes, round(cfg.track_seconds * fps / every),
                                        round(cfg.size_seconds * fps / every))
    if not np.isfinite(half).all():
        raise RawDataError(f"{video}: no person found in any frame (nothing differs from the median background by "
                           f"more than {cfg.mask_threshold} grey levels); check the video, lower --mask-threshold, "
                           "or skip the take with --skip-bad")
    return centre, half


def _unit_rows(store: Location, video: str, poses: tuple[str, str] | None, cam_json: dict, unit: dict,
               subject: str, cfg: BuildConfig, calibrated: bool, fps: float) -> dict:
    from .geometry import camera_from_json

    g = zarr.open_group(store.zarr_store(), mode="r+")
    writer = S.RowWriter(store, g)
    cam = camera_from_json(unit["camera"], cam_json)
    median = g[f"medians/{subject}/{unit['camera']}"][:]
    n, start, size, offset = unit["length"], unit["start"], cfg.crop_size, unit.get("offset", 0)
    every = unit.get("every", 1)  # rows are frames 0, every, 2 every, ... of the take
    frames = (n - 1) * every + 1
    if poses is not None:
        pose = _load_poses(poses)[:frames:every]
        geometry = lambda t: crop_geometry(pose[t], cam, size, cfg.margin)  # noqa: E731
    else:
        centre, half = _person_track(video, median, n, offset, cfg, fps, every)
        geometry = lambda t: label_free_geometry(centre[t], half[t], cam, size, cfg.margin, calibrated)  # noqa: E731
    meta = {k: np.zeros((n, *s)) for k, s in
            (("pose3d", (17, 3)), ("pose2d", (17, 2)), ("K", (3, 3)), ("R_v", (3, 3)),
             ("root_cam", (3,)), ("box", (4,)))}
    sil = np.zeros((n, SILHOUETTE, SILHOUETTE), np.uint8)
    images = np.zeros((WRITE_BLOCK, size, size, 3), np.uint8)
    masks = np.zeros((WRITE_BLOCK, size, size), np.uint8)
    for t, frame in enumerate(iter_frames(video, frames, offset, every, fps, bgr=True)):
        geo = geometry(t)
        _check_box(geo.box, frame.shape, video, t * every + offset)
        b = t % WRITE_BLOCK
        cv2.cvtColor(warp(frame, geo), cv2.COLOR_BGR2RGB, dst=images[b])  # the crop converted, not the frame
        masks[b] = foreground_mask(images[b], warp(median, geo), cfg.mask_threshold)
        sil[t] = silhouette(masks[b])
        for k in meta:
            meta[k][t] = getattr(geo, k)
        if b == WRITE_BLOCK - 1 or t == n - 1:
            lo = t - b
            writer.write("images", start + lo, images[:b + 1])
            writer.write("masks", start + lo, masks[:b + 1])
            tick(b + 1)
    empty = float((sil.reshape(n, -1).max(axis=1) == 0).mean())
    if empty > EMPTY_MASKS:
        meta["notes"] = [f"{video}: the foreground mask is empty in {empty:.0%} of the {n} stored frames "
                         "(the person is not in this view, or --mask-threshold is too high for this video)"]
    if poses is not None:
        meta["moving"] = moving_frames(pose, cfg.move_threshold)
    else:
        meta["silhouette"] = sil
        meta["moving"] = moving_frames(sil.reshape(n, 1, -1).astype(np.float64), silhouette_threshold(cfg.move_silhouette))
    return meta


# ---------------------------------------------------------------- the build

def build(raw: str | Path, out: str | Path | Location, cfg: BuildConfig = BuildConfig(), workers: int = 0,
          progress: bool = True, scheduler: str | None = None) -> dict:
    """Build (or finish building) the store OUT (a folder or an object-storage URL) from RAW, with
    `workers` local processes or on the Dask cluster at `scheduler`. Returns a summary."""
    out = locate(out)
    out.check()  # an unreachable endpoint, a missing bucket: said before anything is written
    try:
        with S.writing(), exclusive(out, "store"), STOPS.installed(), _engine(workers, scheduler, raw, out) as pool:
            return _build(Path(raw), out, cfg, pool, progress)
    except KeyboardInterrupt:
        raise Interrupted(f"{out}: build interrupted; the units written so far are kept: rerun the same command "
                          "to resume") from None
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise S.StoreError(f"{out}: no space left on the device while writing the store; {_space_needed(out)}; "
                           "free space and rerun the same command: the build resumes where it stopped") from None


def _space_needed(out: Location) -> str:
    """How much more the store needs: the frames left times the bytes a written frame's image and
    mask chunks take (measured on the chunks written so far, so the codec's own rate)."""
    try:
        g = S.open_store(out)
        status, units = g["unit_status"][:], g.attrs["units"]
        left = sum(u["length"] for u, s in zip(units, status) if s == S.PENDING)
        sizes = out.sizes()
        chunks = sum(1 for key in sizes if key.startswith("images/c/"))
        per_frame = sum(v for key, v in sizes.items() if key.split("/c/")[0] in S.PIXEL_ARRAYS) / chunks if chunks else None
    except Exception:  # the store may be too incomplete to say
        left, per_frame = None, None
    if per_frame is None or left is None:
        return "a 256 px crop takes about 15 KB as JPEG-90 and 100 KB as LZ4 (masks included)"
    return f"about {_bytes(per_frame * left)} more for the {left} frames left ({_bytes(per_frame)} a frame)"


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} bytes"


@contextlib.contextmanager
def _engine(workers: int, scheduler: str | None, raw, out: Location):
    """The engine that runs the jobs (engines.py), checked before anything is written: a cluster
    must reach the raw data and the store."""
    pool = engine(workers, scheduler)
    try:
        if scheduler:
            pool.check(str(Path(raw).resolve()), out)
        yield pool
    finally:
        pool.close()


def _build(raw: Path, out: Location, cfg: BuildConfig, pool, progress: bool) -> dict:
    t0 = time.perf_counter()
    p = source_for(raw, cfg.layout, cfg).plan(raw, cfg)
    sequences, units, skipped, seq_objs, excluded = p.sequences, p.units, p.skipped, p.takes, p.excluded
    cams, fps, extra = p.cams, p.fps, p.extra_files
    stages = {"plan": time.perf_counter() - t0}
    if not units:
        raise RawDataError(f"{raw}: no usable sequences to build from")
    attrs = {
        "joint_names": list(JOINT_NAMES), "parents": list(PARENTS), "flip_pairs": [list(p) for p in FLIP_PAIRS],
        "crop_size": cfg.crop_size, "fps": fps, "layout": p.layout, "poses": p.poses,
        "calibrated": p.calibrated, "poses_exact": p.exact_poses or (raw / ".synth").exists(),
        "source": "synthetic" if (raw / ".synth").exists() else "real",
        "build": _build_attrs(cfg),
        "code_version": code_version(), "raw": str(raw.resolve()),
        "subjects": sorted({s["subject"] for s in sequences}, key=S.subject_order),
        "actions": sorted({s["action"] for s in sequences}),
        "cameras": sorted({u["camera"] for u in units}),
        "sequences": sequences, "units": units, "skipped": skipped, "excluded": excluded,
    }
    views = _views(sequences, units)
    codec = resolve_codec(cfg.image_codec, attrs["source"])
    used = [seq_objs[u["sequence"]] for u in units]
    attrs["raw_fingerprint"] = raw_fingerprint(
        raw, sorted({q.videos[u["camera"]] for q, u in zip(used, units)}),
        sorted({q.poses_path for q in used if q.poses_path is not None}) + extra)
    if S.is_started(out):
        g = S.open_store(out, mode="r+")
        same = {k: g.attrs.get(k) for k in ("build", "sequences", "units")}
        same["build"] = _comparable(same["build"] or {})
        if same != {k: attrs[k] if k != "build" else _comparable(attrs[k])
                    for k in same}:  # --skip-bad may be added on a rerun: what it skips is recorded
            raise S.StoreError(f"{out}: holds a build of other data or options; choose a new path "
                               "or delete it to rebuild")
        differs = first_difference(g.attrs.get("raw_fingerprint", {}), attrs["raw_fingerprint"])
        if differs:
            raise S.StoreError(f"{out}: was built from other raw data than {raw}: first difference {differs}; "
                               "pass the raw folder it was built from, or build into a new path")
        if g.attrs.get("complete"):
            return summary(g, out, time.perf_counter() - t0, 0)
    else:  # new, or killed while its arrays were being created
        with STOPS.held():
            g = S.create(out, units[-1]["start"] + units[-1]["length"], cfg.crop_size,
                         cfg.bg_crops * len(views), len(units), attrs | {"image_codec": codec},
                         silhouettes=not p.poses, codec=codec)
    status = g["unit_status"][:]
    by_key = {(sequences[u["sequence"]]["subject"], u["camera"]): [] for u in units}
    for u in units:
        by_key[(sequences[u["sequence"]]["subject"], u["camera"])].append(
            (str(seq_objs[u["sequence"]].videos[u["camera"]]), sequences[u["sequence"]]["frames"]))
    total = sum(u["length"] for u in units)
    done_frames = sum(u["length"] for u, s in zip(units, status) if s != S.PENDING)
    written = 0
    with tqdm(total=total, initial=done_frames, unit="frame", desc="build", disable=not progress,
              smoothing=0.05) as bar:
        futs: dict = {}
        try:
            todo = [v for v in views if f"medians/{v[0]}/{v[1]}" not in g or
                    g[f"medians/{v[0]}/{v[1]}"].nchunks_initialized == 0]
            bar.set_postfix_str(f"median backgrounds ({len(todo)} views)")
            margs = {v: (by_key[v], cfg.bg_samples, cfg.bg_tolerance, cfg.skip_bad, fps, cfg.bg_vote_scale)
                     for v in todo}

            def write_median(view, fut):
                med = fut.result()
                with STOPS.held():
                    g.require_group(f"medians/{view[0]}").create_array(
                        view[1], shape=med.shape, chunks=med.shape, dtype="uint8", overwrite=True,
                        compressors=S.image_codec())[...] = med

            _run(pool, _median_job, margs, write_median, futs)
            bar.set_postfix_str("")
            stages["medians"] = time.perf_counter() - t0 - stages["plan"]
            pending = [i for i, s in enumerate(status) if s == S.PENDING]
            args = {i: (out, str(seq_objs[units[i]["sequence"]].videos[units[i]["camera"]]),
                        (p.layout, str(seq_objs[units[i]["sequence"]].poses_path)) if p.poses else None,
                        cams[sequences[units[i]["sequence"]]["subject"]][units[i]["camera"]].to_json(),
                        units[i], sequences[units[i]["sequence"]]["subject"], cfg, p.calibrated, fps)
                    for i in pending}
            shown = [0]

            def finish_unit(i, fut):
                nonlocal written
                with STOPS.held():
                    n = _finish_unit(g, units, i, fut, cfg, skipped)
                written += n
                frames = pool.frames()
                bar.update((frames - shown[0]) if frames is not None else units[i]["length"])
                shown[0] = frames if frames is not None else shown[0]

            def running():
                frames = pool.frames()
                if frames is not None:
                    bar.update(frames - shown[0])
                    shown[0] = frames

            _run(pool, _unit_job, args, finish_unit, futs, running)
            stages["units"] = time.perf_counter() - t0 - stages["plan"] - stages["medians"]
        except BaseException:  # an error, Ctrl-C or SIGTERM: stop the workers now, leave no orphan
            pool.stop(futs)
            raise
    with STOPS.held():
        _write_background_bank(g, sequences, units, views, cams, cfg)
        g.attrs.update({"skipped": skipped, "complete": True})
    stages["bank"] = time.perf_counter() - t0 - sum(stages.values())
    return summary(g, out, time.perf_counter() - t0, written) | {
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()}}


def _run(pool, fn, jobs: dict, finish, futs: dict, running=None) -> None:
    """fn(*jobs[key]) for every key on the engine, at most `pool.window` at once; finish(key,
    future) in this process as each ends (an error is raised there, by future.result()).
    `futs` holds what is submitted (the caller stops them on an error); running() is called
    about twice a second while jobs run."""
    keys = list(jobs)
    while keys or futs:
        while keys and len(futs) < pool.window:
            key = keys.pop(0)
            futs[pool.submit(fn, *jobs[key])] = key
        for fut in pool.finished(futs, 0.5):
            finish(futs.pop(fut), fut)
        if running:
            running()


class Stops:
    """Ctrl-C and SIGTERM (what SLURM, Kubernetes and `kill` send) stop the build with a
    KeyboardInterrupt at once, except inside `held()`: the writes of per-frame metadata, whose
    chunks span several units, and of the store's attributes, which a stop would leave half
    written; a signal there stops the build at the end of the section."""

    def __init__(self):
        self.depth, self.pending = 0, False

    def _signal(self, signum, frame):
        if self.depth:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextlib.contextmanager
    def held(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending:
                self.pending = False
                raise KeyboardInterrupt


STOPS = Stops()


def _finish_unit(g, units, i, fut, cfg, skipped) -> int:
    """Write a unit's metadata (the result of `fut`) and mark it done; with --skip-bad a broken
    unit skips its sequence."""
    try:
        meta = fut.result()
    except RawDataError as e:
        if not cfg.skip_bad:
            raise
        seq = units[i]["sequence"]
        seq_key = g.attrs["sequences"][seq]
        tqdm.write(f"warning: skipping {seq_key['subject']}/{seq_key['name']}: {e}")
        skipped.append({"sequence": f"{seq_key['subject']}/{seq_key['name']}", "error": str(e)})
        for j, u in enumerate(units):
            if u["sequence"] == seq:
                g["unit_status"][j] = S.SKIPPED
        g.attrs["skipped"] = skipped
        return 0
    u = units[i]
    seq = g.attrs["sequences"][u["sequence"]]
    if g["unit_status"][i] == S.SKIPPED:  # another camera of this sequence was broken
        return 0
    rows = slice(u["start"], u["start"] + u["length"])
    n = u["length"]
    notes = meta.pop("notes", [])
    for note in notes:
        tqdm.write(f"warning: {note}")
    if notes:
        g.attrs["notes"] = g.attrs.get("notes", []) + notes
    for k, v in meta.items():
        g[k][rows] = v
    attrs = g.attrs
    g["subject"][rows] = np.full(n, attrs["subjects"].index(seq["subject"]))
    g["action"][rows] = np.full(n, attrs["actions"].index(seq["action"]))
    g["subaction"][rows] = np.full(n, int(seq["subaction"] or 0))
    g["camera"][rows] = np.full(n, attrs["cameras"].index(u["camera"]))
    g["frame"][rows] = np.arange(n) * u.get("every", 1)
    g["sequence"][rows] = np.full(n, u["sequence"])
    g["split"][rows] = np.full(n, S.split_code(seq["split"]))
    g["unit_status"][i] = S.DONE
    return n


def _write_background_bank(g, sequences, units, views, cams, cfg) -> None:
    """bg_crops crops of each view's median, taken with the crop geometry (the stored K and R_v)
    of evenly spaced frames of that view, so that they look like the backgrounds behind real crops."""
    status = g["unit_status"][:]
    row = 0
    for subject, cam_id in views:
        med = g[f"medians/{subject}/{cam_id}"][:]
        mine = [u for u, s in zip(units, status)
                if s == S.DONE and u["camera"] == cam_id and sequences[u["sequence"]]["subject"] == subject]
        rows = np.concatenate([np.arange(u["start"], u["start"] + u["length"]) for u in mine] or [np.zeros(0, int)])
        crops = np.zeros((cfg.bg_crops, cfg.crop_size, cfg.crop_size, 3), np.uint8)
        if len(rows):
            pick = rows[np.linspace(0, len(rows) - 1, cfg.bg_crops).round().astype(int)]
            Ks, Rs = g["K"].get_orthogonal_selection((pick,)), g["R_v"].get_orthogonal_selection((pick,))
            for k, (K, R_v) in enumerate(zip(Ks, Rs)):
                map_x, map_y = crop_sampling_map(R_v, K, cams[subject][cam_id], cfg.crop_size)
                crops[k] = cv2.remap(med, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        g["backgrounds"][row:row + cfg.bg_crops] = crops
        g["bg_subject"][row:row + cfg.bg_crops] = g.attrs["subjects"].index(subject)
        g["bg_camera"][row:row + cfg.bg_crops] = g.attrs["cameras"].index(cam_id)
        row += cfg.bg_crops


REAL_DEFAULT_CODEC = "jpeg:90"  # 36 GB for a full Human3.6M at 40 dB PSNR (README, "JPEG crops")


def resolve_codec(spec: str, source: str) -> str:
    """The crops' codec: `spec`, or for "auto" JPEG-90 on real videos (a full Human3.6M store fits a
    workstation) and LZ4 on the built-in synthetic data (small; the fastest reads from RAM)."""
    if spec != "auto":
        return spec
    return "lz4" if source == "synthetic" else REAL_DEFAULT_CODEC


def _build_attrs(cfg: BuildConfig) -> dict:
    return {**dataclasses.asdict(cfg), "subjects": list(cfg.subjects) if cfg.subjects else None,
            "test_takes": list(cfg.test_takes)}


def _comparable(build: dict) -> dict:
    """The build options that must match to resume: all but --skip-bad (which may be added on a
    rerun), an option a store predates counted at its default."""
    full = _build_attrs(BuildConfig()) | build
    return {k: v for k, v in full.items() if k != "skip_bad"}


def summary(g: zarr.Group, out: Location, seconds: float, written: int) -> dict:
    status = g["unit_status"][:]
    return {"store": str(out), "rows": int(g["images"].shape[0]), "frames_written": written,
            "units_done": int((status == S.DONE).sum()), "units_skipped": int((status == S.SKIPPED).sum()),
            "skipped": g.attrs.get("skipped", []), "excluded": g.attrs.get("excluded", []), "seconds": round(seconds, 1),
            "bytes": sum(out.sizes().values())}
