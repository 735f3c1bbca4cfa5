"""`h36m-prep build RAW OUT.zarr`: decode every video once into the store.

The raw layout is a source (sources.py: Human3.6M's, a user's rig), detected from RAW or named; the
build knows it only through the source's plan. With poses, a crop is centred on the joints;
without (a rig without poses3d.npy), on the person found in the foreground (crops.detect_person,
smoothed over time), with the same store arrays.

Stages: plan the rows (every sequence x camera is a unit with a fixed row range), median
backgrounds per subject (a rig: per session) and camera, the units in parallel worker processes, then the
background-crop bank and the `complete` flag. Where sampling a view's median would decode most of
its frames anyway (short takes) and its crops follow the poses, the view is one job that decodes
each frame once (`_one_pass`): its crops, then its median, then its masks; the store is the same.
A unit is marked done only after all its rows are written, so killing the build at any moment and
rerunning it finishes the job with the same arrays as an uninterrupted build.
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
from .background import plurality_background, sample_frames, sampling_cost, spread
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


def _view_job(store: Location, view: list[tuple[int, str, tuple[str, str], dict, dict]], subject: str,
              cfg: BuildConfig, calibrated: bool, fps: float) -> tuple[np.ndarray, dict]:
    """One view (subject, camera) whose crops follow its poses, each frame decoded once: pass 1
    crops and writes the images of all its units (view: [(unit index, video, poses, camera JSON,
    unit)]) and keeps the frames sampled for the median background (evenly over the view's
    stored rows, as `sample_frames` picks them); then the median; pass 2 the masks, from the
    written crops. -> (median, {unit index: metadata, or the RawDataError that stopped the unit
    (with --skip-bad)})."""
    from .geometry import camera_from_json

    with S.writing():
        g = zarr.open_group(store.zarr_store(), mode="r+")
        writer = S.RowWriter(store, g)
        picks = spread([u["length"] for *_, u in view], cfg.bg_samples)
        samples, done, results, reader, held = [], [], {}, S.StoreReader(store), _Held(HOLD_BYTES)
        for (i, video, poses, cam_json, unit), local in zip(view, picks):
            cam = camera_from_json(unit["camera"], cam_json)
            keep = set(local.tolist())
            try:
                pose = _load_poses(poses)[:_frames(unit):unit.get("every", 1)]
                geometry = lambda t: crop_geometry(pose[t], cam, cfg.crop_size, cfg.margin)  # noqa: E731
                meta, _, kept = _crop_pass(writer, video, unit, geometry, cfg, fps, keep=keep, held=held)
            except RawDataError as e:
                if not cfg.skip_bad:
                    raise
                results[i] = e
                continue
            samples += [kept[t] for t in sorted(kept)]
            done.append((i, video, cam, unit, pose, meta))
        if not samples:
            raise RawDataError(f"{Path(view[0][1]).parent}: no frame of this view could be decoded for the median "
                               "background; replace the videos")
        median = plurality_background(samples, cfg.bg_tolerance, cfg.bg_vote_scale)
        del samples
        for i, video, cam, unit, pose, meta in done:
            sil = _mask_pass(writer, reader, unit, median, cam, cfg, meta, held)
            results[i] = _unit_meta(meta, sil, video, unit["length"], pose, cfg)
        return median, results


ONE_PASS = 0.7  # see _one_pass
HOLD_BYTES = 768 << 20  # a view job's crops and sampling maps kept from pass 1 for pass 2 (about 1000 rows)


class _Held:
    """The crops and sampling maps pass 1 of `_view_job` made, kept for pass 2 while they fit in
    `budget` bytes (about 0.7 MB a 256 px row): pass 2 then neither reads the crop back nor
    computes its map again. Rows that did not fit are read and mapped again: the same pixels."""

    def __init__(self, budget: int):
        self.left, self.rows = budget, {}

    def add(self, row: int, crop: np.ndarray, geo) -> None:
        need = crop.nbytes + geo.map_x.nbytes + geo.map_y.nbytes
        if need <= self.left:
            self.left -= need
            self.rows[row] = (crop.copy(), geo.map_x, geo.map_y)

    def take(self, row: int):
        """(crop, map_x, map_y) of a kept row, released, or None."""
        out = self.rows.pop(row, None)
        if out is not None:
            self.left += out[0].nbytes + out[1].nbytes + out[2].nbytes
        return out


def _one_pass(videos: list[tuple[str, int]], units: list[dict], poses: bool, codec: str, cfg: BuildConfig,
              fps: float) -> bool:
    """Whether a view is built by `_view_job`, each frame decoded once, rather than by sampling
    its median first (decoding the sampled frames) and then its units. Only where the crops
    follow the poses (label-free crops need the median to find the person), the store is
    lossless (the masks of pass 2 come from the written crops, which must be the crops
    themselves for the same store either way), and every frame of the takes is stored (the
    median's samples are then stored rows). And only where it is cheaper: when sampling the
    median would decode more than ONE_PASS of the view's frames (short takes, where the samples
    lie close together): pass 2 cost about that much a frame, 3.7 ms against 5.2 ms to decode a
    1000 px frame (the sampling map again, the median warped, the crop read back, the masks
    written apart; benchmarks/build_throughput.py at full resolution, docs/results.md), before it
    took the crops and maps pass 1 keeps (`_Held`); the threshold was not lowered since."""
    if not poses or codec.startswith("jpeg") or any(u.get("every", 1) > 1 or u.get("offset") for u in units):
        return False
    frames = sum(n for _, n in videos)
    return sampling_cost([(Path(v), n) for v, n in videos], cfg.bg_samples, fps) > ONE_PASS * frames


def _frames(unit: dict) -> int:
    """The source frames a unit's rows span: rows 0 .. length - 1 are frames 0, every, 2 every, ..."""
    return (unit["length"] - 1) * unit.get("every", 1) + 1


def _crop_pass(writer, video: str, unit: dict, geometry, cfg: BuildConfig, fps: float,
               median: np.ndarray | None = None, keep=frozenset(), held: _Held | None = None
               ) -> tuple[dict, np.ndarray | None, dict]:
    """Decode a unit's frames once and write its crops (geometry(t): the crop of row t), and its
    masks when the median background is given. -> (per-row metadata, silhouettes when the masks
    were made, {row: RGB frame} of the rows in `keep`). held: where the crops and their maps are
    kept for a later mask pass."""
    n, start, size, offset = unit["length"], unit["start"], cfg.crop_size, unit.get("offset", 0)
    every = unit.get("every", 1)
    meta = {k: np.zeros((n, *s)) for k, s in
            (("pose3d", (17, 3)), ("pose2d", (17, 2)), ("K", (3, 3)), ("R_v", (3, 3)),
             ("root_cam", (3,)), ("box", (4,)))}
    sil = None if median is None else np.zeros((n, SILHOUETTE, SILHOUETTE), np.uint8)
    images = np.zeros((WRITE_BLOCK, size, size, 3), np.uint8)
    masks = np.zeros((WRITE_BLOCK, size, size), np.uint8)
    kept = {}
    for t, frame in enumerate(iter_frames(video, _frames(unit), offset, every, fps, bgr=True)):
        geo = geometry(t)
        _check_box(geo.box, frame.shape, video, t * every + offset)
        b = t % WRITE_BLOCK
        cv2.cvtColor(warp(frame, geo), cv2.COLOR_BGR2RGB, dst=images[b])  # the crop converted, not the frame
        if t in keep:
            kept[t] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if held is not None:
            held.add(start + t, images[b], geo)
        if median is not None:
            masks[b] = foreground_mask(images[b], warp(median, geo), cfg.mask_threshold)
            sil[t] = silhouette(masks[b])
        for k in meta:
            meta[k][t] = getattr(geo, k)
        if b == WRITE_BLOCK - 1 or t == n - 1:
            writer.write("images", start + t - b, images[:b + 1])
            if median is not None:
                writer.write("masks", start + t - b, masks[:b + 1])
            tick(b + 1)
    return meta, sil, kept


def _mask_pass(writer, reader, unit: dict, median: np.ndarray, cam, cfg: BuildConfig, meta: dict,
               held: _Held) -> np.ndarray:
    """The masks of a unit whose crops are written (pass 2 of `_view_job`): each crop against the
    median seen through the same crop camera: the crop and its map as pass 1 kept them, or the
    written crop and the map its stored R_v and K give (the very map it had). -> silhouettes
    [n, 32, 32]."""
    n, start, size = unit["length"], unit["start"], cfg.crop_size
    sil = np.zeros((n, SILHOUETTE, SILHOUETTE), np.uint8)
    masks = np.zeros((WRITE_BLOCK, size, size), np.uint8)
    for lo in range(0, n, WRITE_BLOCK):
        rows = range(start + lo, start + min(n, lo + WRITE_BLOCK))
        for b, row in enumerate(rows):
            kept = held.take(row)
            if kept is None:  # as stored (the store is lossless: the crop pass 1 made)
                crop = reader.image(row)
                background = _median_crop(median, meta["R_v"][lo + b], meta["K"][lo + b], cam, size)
            else:
                crop, background = kept[0], _median_remap(median, kept[1], kept[2])
            masks[b] = foreground_mask(crop, background, cfg.mask_threshold)
            sil[lo + b] = silhouette(masks[b])
        writer.write("masks", start + lo, masks[:len(rows)])
    return sil


def _median_crop(median: np.ndarray, R_v: np.ndarray, K: np.ndarray, cam, size: int) -> np.ndarray:
    """The median background seen through a stored crop camera (R_v, K): the very pixels `warp`
    gives with that frame's crop geometry."""
    return _median_remap(median, *crop_sampling_map(R_v, K, cam, size))


def _median_remap(median: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(median, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _unit_meta(meta: dict, sil: np.ndarray, video: str, n: int, pose: np.ndarray | None, cfg: BuildConfig) -> dict:
    """A unit's metadata with its notes and its moving frames (from the poses, or label-free from
    the silhouettes, which are then stored)."""
    empty = float((sil.reshape(n, -1).max(axis=1) == 0).mean())
    if empty > EMPTY_MASKS:
        meta["notes"] = [f"{video}: the foreground mask is empty in {empty:.0%} of the {n} stored frames "
                         "(the person is not in this view, or --mask-threshold is too high for this video)"]
    if pose is not None:
        meta["moving"] = moving_frames(pose, cfg.move_threshold)
    else:
        meta["silhouette"] = sil
        meta["moving"] = moving_frames(sil.reshape(n, 1, -1).astype(np.float64), silhouette_threshold(cfg.move_silhouette))
    return meta


def _unit_rows(store: Location, video: str, poses: tuple[str, str] | None, cam_json: dict, unit: dict,
               subject: str, cfg: BuildConfig, calibrated: bool, fps: float) -> dict:
    """One unit of a view whose median background is already stored (a label-free view, whose
    crops follow the person found against it; or a view resumed after its median was written)."""
    from .geometry import camera_from_json

    g = zarr.open_group(store.zarr_store(), mode="r+")
    cam = camera_from_json(unit["camera"], cam_json)
    median = g[f"medians/{subject}/{unit['camera']}"][:]
    n, size, every = unit["length"], cfg.crop_size, unit.get("every", 1)
    if poses is not None:
        pose = _load_poses(poses)[:_frames(unit):every]
        geometry = lambda t: crop_geometry(pose[t], cam, size, cfg.margin)  # noqa: E731
    else:
        pose = None
        centre, half = _person_track(video, median, n, unit.get("offset", 0), cfg, fps, every)
        geometry = lambda t: label_free_geometry(centre[t], half[t], cam, size, cfg.margin, calibrated)  # noqa: E731
    meta, sil, _ = _crop_pass(S.RowWriter(store, g), video, unit, geometry, cfg, fps, median=median)
    return _unit_meta(meta, sil, video, n, pose, cfg)


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
            view_of = lambda i: (sequences[units[i]["sequence"]]["subject"], units[i]["camera"])  # noqa: E731
            video_of = lambda i: str(seq_objs[units[i]["sequence"]].videos[units[i]["camera"]])  # noqa: E731
            poses_of = lambda i: (  # noqa: E731
                (p.layout, str(seq_objs[units[i]["sequence"]].poses_path)) if p.poses else None)
            cam_of = lambda i: cams[view_of(i)[0]][units[i]["camera"]].to_json()  # noqa: E731
            shown = [0]

            def write_median(view, med):
                with STOPS.held():
                    g.require_group(f"medians/{view[0]}").create_array(
                        view[1], shape=med.shape, chunks=med.shape, dtype="uint8", overwrite=True,
                        compressors=S.image_codec())[...] = med

            def finish_unit(i, result):
                nonlocal written
                with STOPS.held():
                    n = _finish_unit(g, units, i, result, cfg, skipped)
                written += n
                frames = pool.frames()
                bar.update((frames - shown[0]) if frames is not None else units[i]["length"])
                shown[0] = frames if frames is not None else shown[0]

            def running():
                frames = pool.frames()
                if frames is not None:
                    bar.update(frames - shown[0])
                    shown[0] = frames

            of_view = {v: [i for i in range(len(units)) if view_of(i) == v] for v in todo}
            once = [v for v in todo if _one_pass(by_key[v], [units[i] for i in of_view[v]], p.poses, codec, cfg, fps)]
            if once:  # each frame decoded once: crops, then the view's median, then masks

                def finish_view(view, fut):
                    median, results = fut.result()
                    write_median(view, median)
                    for i, result in results.items():
                        finish_unit(i, result)

                vargs = {v: (out, [(i, video_of(i), poses_of(i), cam_of(i), units[i]) for i in of_view[v]], v[0], cfg,
                             p.calibrated, fps) for v in once}
                _run(pool, _view_job, vargs, finish_view, futs, running)
                stages["views"] = time.perf_counter() - t0 - stages["plan"]
            rest = [v for v in todo if v not in once]
            if rest:  # medians first (label-free crops follow the person found against them)
                bar.set_postfix_str(f"median backgrounds ({len(rest)} views)")
                margs = {v: (by_key[v], cfg.bg_samples, cfg.bg_tolerance, cfg.skip_bad, fps, cfg.bg_vote_scale)
                         for v in rest}
                _run(pool, _median_job, margs, lambda view, fut: write_median(view, fut.result()), futs)
                bar.set_postfix_str("")
                stages["medians"] = time.perf_counter() - t0 - sum(stages.values())
            status = g["unit_status"][:]
            args = {i: (out, video_of(i), poses_of(i), cam_of(i), units[i], view_of(i)[0], cfg, p.calibrated, fps)
                    for i, s in enumerate(status) if s == S.PENDING}
            _run(pool, _unit_job, args, lambda i, fut: finish_unit(i, fut.result), futs, running)
            stages["units"] = time.perf_counter() - t0 - sum(stages.values())
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
        # a stop is taken after the wait, not inside it: concurrent.futures.wait acquires every
        # future's lock, and a KeyboardInterrupt between two acquisitions leaves some held, so the
        # pool's manager thread blocks on them and its shutdown never returns (a SIGTERM test hung)
        with STOPS.held():
            done = pool.finished(futs, 0.5)
        for fut in done:
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


def _finish_unit(g, units, i, result, cfg, skipped) -> int:
    """Write a unit's metadata (`result`: its job's future's result method, or the metadata, or
    the RawDataError that stopped it) and mark it done; with --skip-bad a broken unit skips its
    sequence."""
    try:
        meta = result() if callable(result) else result
        if isinstance(meta, RawDataError):
            raise meta
    except RawDataError as e:
        if not cfg.skip_bad:
            raise
        if g["unit_status"][i] == S.SKIPPED:  # its sequence is skipped already (a broken camera)
            return 0
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
                crops[k] = _median_crop(med, R_v, K, cams[subject][cam_id], cfg.crop_size)
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
