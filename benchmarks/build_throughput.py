"""Build throughput: frames/s of `h36m-prep build` next to frames/s of only decoding the same
videos with the same number of processes, measured in one run; beside them the ceiling of any
build of the same store on these cores (`exact_floor`: the operations that make a row's exact
crop and mask, timed alone). Also the store's codec choice: write and random-read cost and size
of the image chunks per codec.

    python benchmarks/build_throughput.py [--raw RAW] [--subjects S1,S9] [--workers 2] [--scale 0.5]
                                          [--repeats 1] [--long-views]

Without --raw it writes a synthetic dataset first (not timed). Prints a table, writes JSON to
benchmarks/results/build_throughput.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from h36m_prep import build as build_module
from h36m_prep.build import BuildConfig, build
from h36m_prep.raw import discover
from h36m_prep.synth.dataset import SynthConfig, write_dataset


def _decode(path: str) -> int:
    cap = cv2.VideoCapture(path)
    n = 0
    while True:
        ok, _ = cap.read()  # decoding alone: the build converts only its crops to RGB, not the frames
        if not ok:
            break
        n += 1
    cap.release()
    return n


def decode_only(videos: list[str], workers: int) -> tuple[int, float]:
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        n = sum(pool.map(_decode, videos))
    return n, time.perf_counter() - t


def codecs(store: Path, frames: int = 200) -> list[dict]:
    """Image chunks (1, S, S, 3) of a real build under each codec: write, random read, size."""
    src = zarr.open_group(str(store), mode="r")["images"]
    imgs = src[:frames]
    rows = []
    options = {
        "none": None,
        "blosc-lz4-shuffle": BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle),
        "blosc-zstd1-shuffle": BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.shuffle),
        "blosc-zstd3-bitshuffle": BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle),
    }
    rng = np.random.default_rng(0)
    for name, codec in options.items():
        for chunk in (1, 4):
            path = Path(tempfile.mkdtemp()) / "c.zarr"
            a = zarr.open_group(str(path), mode="w").create_array(
                "images", shape=imgs.shape, chunks=(chunk, *imgs.shape[1:]), dtype="uint8",
                compressors=[codec] if codec else None)
            t = time.perf_counter()
            for i in range(0, frames, 25):
                a[i:i + 25] = imgs[i:i + 25]
            write = (time.perf_counter() - t) / frames
            a = zarr.open_group(str(path), mode="r")["images"]
            picks = rng.integers(0, frames, 300)
            t = time.perf_counter()
            for i in picks:
                a[int(i)]
            read = (time.perf_counter() - t) / len(picks)
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            rows.append({"codec": name, "frames_per_chunk": chunk, "write_ms": write * 1e3,
                         "random_read_ms": read * 1e3, "bytes_per_frame": size / frames,
                         "ratio": imgs[0].nbytes * frames / size})
            shutil.rmtree(path.parent)
    return rows


def row_writes(store: Path, frames: int = 200) -> dict:
    """ms per frame to write a frame's crop and mask (one chunk each, the store's codecs) through
    Zarr's array API, as the build once did, and straight into the chunk files (S.RowWriter)."""
    from h36m_prep import store as S

    src = zarr.open_group(str(store), mode="r")
    images, masks = src["images"][:frames], src["masks"][:frames]
    out = {}
    for how in ("zarr", "direct"):
        path = Path(tempfile.mkdtemp()) / "w.zarr"
        g = S.create(path, frames, images.shape[1], 1, 1, {}, codec="lz4")
        writer = S.RowWriter(S.StoreReader(path).location, g)
        t = time.perf_counter()
        with S.writing():
            for i in range(0, frames, 16):
                for name, rows in (("images", images[i:i + 16]), ("masks", masks[i:i + 16])):
                    if how == "zarr":
                        g[name][i:i + len(rows)] = rows
                    else:
                        writer.write(name, i, rows)
        out[how] = (time.perf_counter() - t) / frames * 1e3
        shutil.rmtree(path.parent)
    return out


def exact_floor(raw: Path, store: Path, decode_fps: float, workers: int, rows: int = 250) -> dict:
    """What a build of exactly this store cannot skip, per frame: the operations that make a
    row's pixels, timed one by one on the first unit's frames in one process and one thread (as
    a build worker runs OpenCV), with no Python around them, no median vote and nothing else:
    the crop's exact sampling map, the remaps of the frame and of the median background, the mask
    and its silhouette, and the crop and mask encoded and written as the build writes them. The
    chunk files they write are compared with the store's (the same bytes). With the decode's share of
    a core per frame (`workers` / decode_fps), they bound the ratio any exact build can reach
    on these cores: decode / (decode + floor)."""
    from h36m_prep import store as S
    from h36m_prep.crops import foreground_mask, silhouette
    from h36m_prep.geometry import crop_sampling_map
    from h36m_prep.raw import iter_frames
    from h36m_prep.sources import source_for
    from h36m_prep.store import chunks

    g = zarr.open_group(str(store), mode="r")
    build_cfg = BuildConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in g.attrs["build"].items()})
    plan = source_for(raw, build_cfg.layout, build_cfg).plan(raw, build_cfg)
    unit = g.attrs["units"][0]
    subject = g.attrs["sequences"][unit["sequence"]]["subject"]
    cam = plan.cams[subject][unit["camera"]]
    video = plan.takes[unit["sequence"]].videos[unit["camera"]]
    n, start, size = min(rows, unit["length"]), unit["start"], g.attrs["crop_size"]
    median = g[f"medians/{subject}/{unit['camera']}"][:]
    R_v, K = g["R_v"][start:start + n], g["K"][start:start + n]
    every = unit.get("every", 1)  # row t is frame offset + t every
    frames = list(iter_frames(video, (n - 1) * every + 1, unit.get("offset", 0), every, g.attrs["fps"], bgr=True))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    out = Path(tempfile.mkdtemp(prefix="floor_")) / "w.zarr"
    crop_sampling_map(R_v[0], K[0], cam, size)  # compiled before it is timed
    seconds = dict.fromkeys(("sampling map", "remap frame", "remap median", "mask", "write crop", "write mask"), 0.0)
    try:
        w = S.create(out, n, size, 1, 1, {}, codec=g.attrs["image_codec"])
        writer = S.RowWriter(S.StoreReader(out).location, w)
        with S.writing():
            for t, frame in enumerate(frames):
                t0 = time.perf_counter()
                mx, my = crop_sampling_map(R_v[t], K[t], cam, size)
                t1 = time.perf_counter()
                crop = cv2.cvtColor(cv2.remap(frame, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                                    cv2.COLOR_BGR2RGB)
                t2 = time.perf_counter()
                back = build_module._median_remap(median, mx, my)
                t3 = time.perf_counter()
                mask = foreground_mask(crop, back, build_cfg.mask_threshold)
                silhouette(mask)
                t4 = time.perf_counter()
                writer.write("images", t, crop[None])
                t5 = time.perf_counter()
                writer.write("masks", t, mask[None])
                t6 = time.perf_counter()
                for k, a, b in zip(seconds, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)):
                    seconds[k] += b - a
        mine, theirs, same = S.StoreReader(out).location, S.StoreReader(store).location, True
        for name in ("images", "masks"):
            a, b = chunks.layout(mine, name), chunks.layout(theirs, name)
            same = same and all(mine.read(chunks.key(a, t)) == theirs.read(chunks.key(b, start + t)) for t in range(n))
    finally:
        cv2.setNumThreads(threads)
        shutil.rmtree(out.parent, ignore_errors=True)
    ms = {k: v / n * 1e3 for k, v in seconds.items()}
    floor = sum(ms.values())
    decode = min(workers, os.cpu_count() or 1) / decode_fps * 1e3
    return {"frames": n, "video": str(video), "ms_per_frame": ms, "floor_ms": floor,
            "decode_ms_per_core": decode, "chunks_equal_store": bool(same),
            "ceiling_ratio": decode / (decode + floor)}


@contextlib.contextmanager
def _two_pass(on: bool):
    """Every view built as a long view is (Human3.6M's: tens of thousands of frames a camera):
    its median first, from frames sampled apart, then its units, each frame decoded once, crops
    and masks together; `build._one_pass`, which short takes like the benchmark's would take,
    never applies. The same store either way (tested in test_store)."""
    before = build_module.ONE_PASS
    build_module.ONE_PASS = float("inf") if on else before
    try:
        yield
    finally:
        build_module.ONE_PASS = before


def measure(raw: Path, subjects: tuple[str, ...], workers: int, store: Path | None = None, repeats: int = 1,
            long_views: bool = False) -> dict:
    """Decode-only and build rates of RAW's `subjects` with `workers` processes, in one run (the
    store written to `store`, or to a temporary folder removed after), `repeats` times in turn:
    the machine's speed drifts between minutes (decoding alone varied by 1.4x between runs), so
    each build is compared with the decode-only pass just before it. The top-level rates are
    those of the run with the median ratio; `runs` holds every run, each with its exact floor.
    long_views: the views built as long ones are (`_two_pass`), and each run also gives the
    units stage's rate against decode-only: a long view's rate, where sampling and voting its
    median are paid once for tens of thousands of frames."""
    keep = store is not None
    store = store or Path(tempfile.mkdtemp(prefix="build_bench_")) / "store.zarr"
    videos = [str(p) for s in discover(raw, subjects) for p in s.videos.values()]
    _decode(videos[0])  # warm the codec and the page cache
    runs = []
    for _ in range(repeats):
        shutil.rmtree(store, ignore_errors=True)  # each run builds anew
        n_dec, t_dec = decode_only(videos, workers)
        t = time.perf_counter()
        with _two_pass(long_views):
            report = build(raw, store, BuildConfig(subjects=subjects), workers=workers, progress=False)
        t_build = time.perf_counter() - t
        n_build = report["frames_written"]
        run = {
            "decode_only": {"frames": n_dec, "seconds": t_dec, "fps": n_dec / t_dec},
            "build": {"frames": n_build, "seconds": t_build, "fps": n_build / t_build,
                      "store_bytes": report["bytes"], "stage_seconds": report["stage_seconds"]},
            "ratio_build_over_decode": (n_build / t_build) / (n_dec / t_dec),
            "exact_floor": exact_floor(raw, store, n_dec / t_dec, workers),
        }
        if long_views:
            run["units_ratio"] = (n_build / report["stage_seconds"]["units"]) / (n_dec / t_dec)
        runs.append(run)
    if not keep:
        shutil.rmtree(store.parent, ignore_errors=True)
    median = sorted(runs, key=lambda r: r["ratio_build_over_decode"])[(len(runs) - 1) // 2]
    return {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "workers": workers, "subjects": list(subjects), "long_views": long_views,
        "video_size": list(cv2.VideoCapture(videos[0]).read()[1].shape[:2]),
        **median, "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", default=None, help="a raw folder to build (default: a synthetic dataset written first)")
    ap.add_argument("--subjects", default="S1,S9", help="the subjects built (default S1,S9)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: one per core)")
    ap.add_argument("--scale", type=float, default=0.5, help="synthetic video resolution (1.0: 1000 px; default 0.5)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="decode-only and build this many times in turn; the run with the median ratio is reported")
    ap.add_argument("--long-views", action="store_true",
                    help="build every view as a long one is (median first, then the units) and report the units "
                         "stage's rate too: what a Human3.6M view's tens of thousands of frames see")
    ap.add_argument("--out", default="benchmarks/results/build_throughput.json", help="the JSON written")
    args = ap.parse_args()
    subjects = tuple(args.subjects.split(","))
    work = Path(tempfile.mkdtemp(prefix="build_bench_"))
    raw = Path(args.raw) if args.raw else work / "raw"
    synth_cfg = SynthConfig(subjects=subjects, scale=args.scale)
    if not args.raw:
        print(f"writing synthetic data ({', '.join(subjects)}) to {raw} (not timed)")
        write_dataset(raw, synth_cfg, workers=args.workers, progress=False)
    result = measure(raw, subjects, args.workers, work / "store.zarr", args.repeats, args.long_views)
    result["codecs"] = codecs(work / "store.zarr")
    result["row_write_ms"] = row_writes(work / "store.zarr")
    n_dec, t_dec = result["decode_only"]["frames"], result["decode_only"]["seconds"]
    n_build, t_build = result["build"]["frames"], result["build"]["seconds"]
    report = result["build"]
    print(f"\n{'stage':<14}{'frames':>8}{'seconds':>10}{'frames/s':>10}")
    print(f"{'decode only':<14}{n_dec:>8}{t_dec:>10.1f}{n_dec / t_dec:>10.1f}")
    print(f"{'build':<14}{n_build:>8}{t_build:>10.1f}{n_build / t_build:>10.1f}")
    print("build stages (s): " + ", ".join(f"{k} {v}" for k, v in report["stage_seconds"].items()))
    print(f"ratio build / decode-only: {result['ratio_build_over_decode']:.2f} "
          + (f"(the median of {len(result['runs'])} runs) " if len(result["runs"]) > 1 else "")
          +
          f"({args.workers} workers, {result['video_size'][1]}x{result['video_size'][0]} video)")
    if args.long_views:
        print("views built as long ones are; the units stage alone (a long view's rate) against decode-only: "
              + ", ".join(f"{r['units_ratio']:.2f}" for r in result["runs"]))
    if len(result["runs"]) > 1:
        print("every run (build / decode-only, and the exact ceiling of the same run): " + ", ".join(
            f"{r['ratio_build_over_decode']:.2f} ({r['exact_floor']['ceiling_ratio']:.2f})" for r in result["runs"]))
    f = result["exact_floor"]
    print(f"the work no exact build can skip, ms a frame (one thread, {f['frames']} frames"
          f"{'' if f['chunks_equal_store'] else '; THE CHUNKS DIFFER FROM THE STORE'}): "
          + ", ".join(f"{k} {v:.2f}" for k, v in f["ms_per_frame"].items())
          + f"; {f['floor_ms']:.2f} in all against {f['decode_ms_per_core']:.2f} to decode a frame: "
          f"an exact build reaches at most {f['ceiling_ratio']:.2f} of the decode-only rate here")
    w = result["row_write_ms"]
    print(f"writing a frame's crop and mask: {w['zarr']:.2f} ms through Zarr's API, {w['direct']:.2f} ms straight "
          f"into the chunk files ({w['zarr'] / w['direct']:.1f}x)")
    print(f"\n{'codec':<24}{'frames/chunk':>13}{'write ms':>10}{'read ms':>9}{'KB/frame':>10}{'ratio':>7}")
    for r in result["codecs"]:
        print(f"{r['codec']:<24}{r['frames_per_chunk']:>13}{r['write_ms']:>10.2f}{r['random_read_ms']:>9.3f}"
              f"{r['bytes_per_frame'] / 1e3:>10.1f}{r['ratio']:>7.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
