"""`h36m-prep info` and `h36m-prep verify`: what a store holds, and whether it is sound."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import store as S
from .store.location import LocationError, locate
from .geometry import PARENTS, project_virtual

def _expected(size: int, silhouettes: bool = False) -> dict[str, tuple[str, tuple]]:
    """name -> (dtype, per-row shape) of every per-frame array."""
    return {name: (dtype, shape[1:]) for name, (shape, _, dtype, _) in S.per_frame_arrays(0, size, silhouettes).items()}


AHEAD = 512  # chunks verify requests at once from object storage
H36M_FRAMES = 2_500_000  # frames of the seven public Human3.6M subjects over four cameras, roughly
BONE_TOLERANCE = (20.0, 0.1)  # estimated poses: a bone may vary by 20 mm or 10 % of its length


def info(path: str | Path) -> dict:
    """Subjects, actions, cameras, frames per split, size on disk, build parameters."""
    g = S.open_store(path)
    S.check_arrays(g, path)
    a = g.attrs
    status = g["unit_status"][:]
    seqs = a["sequences"]
    frames = {"train": 0, "test": 0}
    for u, st in zip(a["units"], status):
        if st == S.DONE:
            frames[seqs[u["sequence"]]["split"]] += u["length"]
    moving = g["moving"][:][S.done_rows(g)]
    written = max(int(S.done_rows(g).sum()), 1)
    sizes = locate(path).sizes()
    pixels = (*S.PIXEL_ARRAYS, *(["silhouette"] if "silhouette" in g else []))
    per_frame = sum(size for key, size in sizes.items() if key.split("/")[0] in pixels) / written
    return {
        "store": str(path), "source": a["source"], "complete": a["complete"], "layout": a.get("layout", "h36m"),
        "fps": a.get("fps"), "poses": S.has_poses(g), "calibrated": a.get("calibrated", True),
        "takes": [{"take": q["name"], "session": q["subject"], "split": q["split"], "frames": q["frames"]}
                  for q in seqs],
        "format_version": a["format_version"], "code_version": a["code_version"],
        "crop_size": a["crop_size"], "rows": int(g["images"].shape[0]),
        "subjects": a["subjects"], "actions": a["actions"], "cameras": a["cameras"],
        "sequences": len(seqs), "frames": frames, "moving_fraction": float(moving.mean()) if moving.size else 0.0,
        "units": {"done": int((status == S.DONE).sum()), "skipped": int((status == S.SKIPPED).sum()),
                  "pending": int((status == S.PENDING).sum())},
        "skipped": a.get("skipped", []), "excluded": a.get("excluded", []), "notes": a.get("notes", []),
        "raw_fingerprint": {"files": len(a.get("raw_fingerprint", {}).get("files", {})),
                            "digest": a.get("raw_fingerprint", {}).get("digest")},
        "backgrounds": int(g["backgrounds"].shape[0]),
        "image_codec": a.get("image_codec", "lz4"), "bytes_per_frame": per_frame,
        "projected_h36m_bytes": per_frame * H36M_FRAMES,
        "bytes": sum(sizes.values()),
        "build": a["build"],
    }


def damaged_chunks(path: str | Path, rows: np.ndarray | None = None, progress: bool = False) -> list[dict]:
    """Every image and mask chunk of the written rows (or of `rows`), every background-bank
    chunk, every chunk of the per-frame metadata and every median background, each read and
    decoded: [{array, row, error}] for each one absent or undecodable (the error starts with
    the chunk file; a metadata chunk also gives its `rows`)."""
    from h36m_prep.store import StoreReader, StoreReadError
    from tqdm import tqdm

    g = S.open_store(path)
    reader = StoreReader(path)
    rows = np.flatnonzero(S.done_rows(g)) if rows is None else np.asarray(rows)
    jobs = [(name, int(r)) for name in S.PIXEL_ARRAYS for r in rows]
    jobs += [("backgrounds", r) for r in range(g["backgrounds"].shape[0])] if g.attrs.get("complete") else []
    bad = []
    for k, (name, r) in enumerate(tqdm(jobs, desc="verify chunks", unit="chunk", disable=not progress, smoothing=0.05)):
        if k % AHEAD == 0:  # object storage: the next block's chunks fetched concurrently (a disk: nothing)
            for block_name in {n for n, _ in jobs[k:k + AHEAD]}:
                reader.prefetch(block_name, [q for n, q in jobs[k:k + AHEAD] if n == block_name])
        try:
            reader.row(name, r)
        except (StoreReadError, ValueError, RuntimeError) as e:
            bad.append({"array": name, "row": r, "error": str(e)})
    for name, (shape, chunks, _, _) in S.per_frame_arrays(g["images"].shape[0], g.attrs["crop_size"],
                                                          not S.has_poses(g), "lz4").items():
        if name in S.PIXEL_ARRAYS:
            continue
        size = g[name].chunks[0]
        for lo in range(0, g[name].shape[0], size):
            try:
                g[name][lo:lo + size]
            except Exception as e:  # Zarr and its codecs raise many kinds for a damaged chunk
                key = "/".join([name, "c", str(lo // size), *["0"] * (len(shape) - 1)])
                chunk = locate(path).name(key)
                bad.append({"array": name, "row": lo, "rows": [lo, min(lo + size, g[name].shape[0])], "key": key,
                            "error": f"{chunk}: {type(e).__name__}: {e}"})
    for subject in g["medians"].group_keys() if "medians" in g else []:
        for cam in g[f"medians/{subject}"].array_keys():
            arr = g[f"medians/{subject}/{cam}"]
            key = f"medians/{subject}/{cam}/c/0/0/0"
            chunk = locate(path).name(key)
            try:
                arr[...]
                if not locate(path).exists(key):
                    raise StoreReadError(f"{chunk}: missing")
            except Exception as e:  # Zarr and its codecs raise many kinds for a damaged chunk
                bad.append({"array": f"medians/{subject}/{cam}", "row": -1, "error": f"{chunk}: {e}"})
    return bad


def mark_damaged(path: str | Path, bad: list[dict]) -> dict:
    """Make the next `h36m-prep build RAW STORE` re-render what `bad` names: the (sequence, camera)
    units of damaged image and mask rows become pending, a damaged metadata chunk is removed and
    every unit with rows in it becomes pending, a damaged median background is removed
    (it is recomputed), and the store is marked incomplete (the background bank is rewritten at
    the end of every build). -> {units, medians} marked."""
    g = S.open_store(path, mode="r+")
    units = g.attrs["units"]
    starts = np.array([u["start"] for u in units])
    pending = {int(np.searchsorted(starts, b["row"], side="right") - 1) for b in bad if b["array"] in S.PIXEL_ARRAYS}
    for b in bad:
        if "rows" in b:  # a metadata chunk spans many units: remove it and re-render them all
            locate(path).delete(b["key"])
            lo, hi = b["rows"]
            pending |= {i for i, u in enumerate(units) if u["start"] < hi and u["start"] + u["length"] > lo}
    pending = sorted(pending)
    for u in pending:
        g["unit_status"][u] = S.PENDING
    medians = sorted({b["array"] for b in bad if b["array"].startswith("medians/")})
    for name in medians:
        del g[name]
    if bad:
        g.attrs["complete"] = False
    return {"units": [f"{g.attrs['sequences'][units[u]['sequence']]['subject']}/"
                      f"{g.attrs['sequences'][units[u]['sequence']]['name']}.{units[u]['camera']}" for u in pending],
            "medians": medians}


def verify(path: str | Path, sample: int | None = None, seed: int = 0, geometry_rows: int = 256,
           progress: bool = False, warnings: list | None = None) -> list[str]:
    """Check a store; returns the problems found (empty: sound).

    Shapes and dtypes, format version, every unit done or skipped; every image, mask,
    background and median chunk present and decodable (`damaged_chunks`; with `sample`, only
    the chunks of that many random written rows, a quick check); and on `geometry_rows` rows
    (or `sample`) the geometry: pose2d is the projection of pose3d + root depth through K
    (0.5 px), the root sits at the crop centre (0.5 px), R_v is a proper rotation that sends
    root_cam onto the axis (0.1 mm), bone lengths are constant within each (sequence, camera)
    (0.1 mm), masks are 0/1. A store without poses is checked for what it has: crops, masks,
    silhouettes, R_v and K. Bone rigidity is exact only for mocap and synthetic poses: a rig's
    own (estimated) poses that vary more than BONE_TOLERANCE add a note to `warnings` instead.
    """
    try:
        g = S.open_store(path)
    except (S.StoreError, LocationError) as e:
        return [str(e)]
    try:
        return _verify(g, path, sample, seed, geometry_rows, progress, warnings if warnings is not None else [])
    except Exception as e:  # a damaged metadata chunk: Zarr's codecs raise many kinds
        return [f"{path}: a metadata array cannot be read ({type(e).__name__}: {e}); the store is damaged "
                f"beyond repair by re-rendering: rebuild it into a new folder with `h36m-prep build`"]


def _verify(g, path, sample, seed, geometry_rows, progress, warnings) -> list[str]:
    unreadable = S.unreadable_arrays(g)
    if unreadable:
        return [f"array {name!r}: {why}; `h36m-prep verify --mark-damaged {path}` writes it anew from the store's format"
                for name, why in unreadable.items()]
    problems = []
    if not g.attrs.get("complete"):
        problems.append("build not complete: rerun the same `h36m-prep build` command")
    size = g.attrs["crop_size"]
    n = g["images"].shape[0]
    poses = S.has_poses(g)
    for name, (dtype, shape) in _expected(size, not poses).items():
        if name not in g:
            problems.append(f"array {name!r} missing")
            continue
        arr = g[name]
        if str(arr.dtype) != dtype or arr.shape != (n, *shape):
            problems.append(f"{name}: {arr.dtype} {arr.shape}, expected {dtype} {(n, *shape)}")
    if problems:
        return problems
    status = g["unit_status"][:]
    pending = [f"{g.attrs['sequences'][u['sequence']]['name']}.{u['camera']}"
               for u, s in zip(g.attrs["units"], status) if s == S.PENDING]
    if pending:
        problems.append(f"{len(pending)} (sequence, camera) unit(s) not written: {', '.join(pending[:5])}")
    try:
        rows = np.flatnonzero(S.done_rows(g))
    except Exception as e:  # unit_status damaged
        return problems + [f"{path}/unit_status cannot be read ({e}); rebuild the store into a new folder"]
    if not len(rows):
        return problems + ["no complete rows"]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(rows, min(sample or geometry_rows, len(rows)), replace=False))
    bad = damaged_chunks(path, pick if sample else None, progress)
    problems += [f"damaged {b['array']} rows {b['rows'][0]}-{b['rows'][1] - 1}: {b['error']}" if "rows" in b
                 else f"damaged {b['array']} row {b['row']}: {b['error']}" for b in bad]
    if any("rows" in b for b in bad):  # the geometry checks need the metadata arrays
        return problems
    K, R_v = g["K"][:][pick], g["R_v"][:][pick]
    checks = {
        "R_v not a proper rotation": (np.abs(R_v @ np.swapaxes(R_v, 1, 2) - np.eye(3)).max() > 1e-6
                                      or np.abs(np.linalg.det(R_v) - 1).max() > 1e-6),
        "K or box not finite": not (np.isfinite(K).all() and np.isfinite(g["box"][:][pick]).all()),
    }
    if poses:
        checks |= _pose_checks(g, pick, size)
    problems += [msg for msg, bad in checks.items() if bad]
    if poses:
        problems += _bone_checks(g, rows, warnings)
    else:
        sil = g["silhouette"].get_orthogonal_selection((pick[:64],))
        if sil.max() > 1:
            problems.append("silhouettes are not 0/1")
    masks = g["masks"].get_orthogonal_selection((pick[:16],))
    if masks.max() > 1:
        problems.append("masks are not 0/1")
    return problems


def _pose_checks(g, pick: np.ndarray, size: int) -> dict[str, bool]:
    pose3d, pose2d = g["pose3d"][:][pick].astype(np.float64), g["pose2d"][:][pick]
    K, R_v, root = g["K"][:][pick], g["R_v"][:][pick], g["root_cam"][:][pick]
    depth = np.linalg.norm(root, axis=-1)
    uv = project_virtual(pose3d + np.stack([0 * depth, 0 * depth, depth], -1)[:, None], K)
    centre = (size - 1) / 2
    return {
        "pose2d is not the projection of pose3d (> 0.5 px)": np.abs(uv - pose2d).max() > 0.5,
        "root joint not at the crop centre (> 0.5 px)": np.abs(pose2d[:, 0] - centre).max() > 0.5,
        "root of pose3d not at zero": np.abs(pose3d[:, 0]).max() > 1e-3,
        "R_v does not send the root onto the optical axis (> 0.1 mm)":
            np.abs(np.einsum("nij,nj->ni", R_v, root) - np.stack([0 * depth, 0 * depth, depth], -1)).max() > 0.1,
    }


def _bone_checks(g, rows: np.ndarray, warnings: list) -> list[str]:
    """Bone lengths constant within each unit: exactly (0.1 mm) for Human3.6M's mocap and synthetic
    poses; a rig's own poses are estimates, so there a variation beyond BONE_TOLERANCE is a warning."""
    exact = g.attrs.get("poses_exact")
    if exact is None:  # a store built before the attribute: Human3.6M's and synthetic poses are exact
        exact = g.attrs.get("layout", "h36m") == "h36m" or g.attrs.get("source") == "synthetic"
    all3d = g["pose3d"][:][rows]
    bones = np.linalg.norm(all3d[:, 1:] - all3d[:, list(PARENTS[1:])], axis=-1)
    unit_of_row = np.repeat(np.arange(len(g.attrs["units"])), [u["length"] for u in g.attrs["units"]])[rows]
    for u in np.unique(unit_of_row):
        b = bones[unit_of_row == u]
        spread = np.ptp(b, axis=0)
        if exact and spread.max() > 0.1:
            return [f"bone lengths vary within unit {u} (non-rigid skeleton?)"]
        allowed = np.maximum(BONE_TOLERANCE[0], BONE_TOLERANCE[1] * np.median(b, axis=0))
        if not exact and (spread > allowed).any():
            j = int(np.argmax(spread - allowed))
            warnings.append(f"bone {j + 1} varies by {spread[j]:.0f} mm within unit {u} (poses estimated, tolerance "
                            f"{allowed[j]:.0f} mm): check the poses3d.npy of that take")
            break
    return []
