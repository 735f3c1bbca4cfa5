"""Where a build's time goes: one process builds a store under cProfile, and the time of every
function is put into the stage it belongs to (decoding, the median vote, sampling maps, remaps,
masks, chunk encoding, the file system); the same videos decoded alone, in the same process, give
the baseline. Complements benchmarks/build_throughput.py, which times whole builds.

    python benchmarks/build_profile.py [--raw RAW] [--frames 250] [--scale 1.0]

Without --raw it writes a small synthetic dataset at the real 1000 x 1002 resolution first (S1, one
take, every camera; not timed). Prints a table, writes benchmarks/results/build_profile.json. The
vote is paid once a view: with short takes it weighs more a frame than with Human3.6M's.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_throughput import _decode  # noqa: E402

from h36m_prep.build import BuildConfig, build  # noqa: E402
from h36m_prep.raw import discover, video_info  # noqa: E402
from h36m_prep.synth.dataset import SynthConfig, write_dataset  # noqa: E402

# stage -> substrings of (file, function name) of the functions whose own time is that stage's
STAGES = {
    "decode": ("cv2.VideoCapture",),
    "median vote": ("background.py", "shape_base.py:stack"),
    "crop geometry (sampling maps, rotations)": ("virtual.py", "camera.py"),
    "remaps": ("remap",),
    "masks": ("<absdiff>", "<morphologyEx>", "<max>", "<resize>", "crops.py"),
    "colour conversion": ("cvtColor",),
    "chunk encoding": ("chunks.py", "blosc", "numcodecs"),
    "file system": ("posix.mkdir", "io.open", "posix.replace", "BufferedWriter", "posix.scandir", "posix.stat",
                    "_io._IOBase", "posix.unlink"),
    "Zarr's API (waits on its event loop thread)": ("_thread.lock",),
}


def stage_of(file: str, name: str) -> str:
    where = name if file == "~" else f"{Path(file).name}:{name}"  # built-ins: "<built-in method posix.mkdir>"
    for stage, keys in STAGES.items():
        if any(k in where for k in keys):
            return stage
    return "the rest (Python, metadata)"


def decode_only(videos: list[Path]) -> tuple[int, float]:
    """Every frame of the videos decoded in this process (build_throughput's decode, one process)."""
    t = time.perf_counter()
    n = sum(_decode(str(v)) for v in videos)
    return n, time.perf_counter() - t


def profile(raw: Path, out: Path, stats: str | None = None) -> tuple[float, dict[str, float]]:
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    build(raw, out, BuildConfig(), workers=1, progress=False)
    prof.disable()
    seconds = time.perf_counter() - t
    if stats:
        prof.dump_stats(stats)
    stages: dict[str, float] = {}
    for (file, _, name), (_, _, own, _, _) in pstats.Stats(prof).stats.items():
        key = stage_of(file, name)
        stages[key] = stages.get(key, 0.0) + own
    return seconds, dict(sorted(stages.items(), key=lambda kv: -kv[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", default=None, help="a raw folder (default: a small synthetic dataset written first)")
    ap.add_argument("--frames", type=int, default=250, help="frames a take of the synthetic dataset")
    ap.add_argument("--scale", type=float, default=1.0, help="resolution of the synthetic dataset (1.0: 1000 px)")
    ap.add_argument("--json", default="benchmarks/results/build_profile.json")
    ap.add_argument("--stats", default=None, help="also write the profile here (python -m pstats FILE reads it)")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # as in the build's worker processes
    tmp = Path(tempfile.mkdtemp(prefix="build_profile_"))
    try:
        raw = Path(args.raw) if args.raw else tmp / "raw"
        if not args.raw:
            write_dataset(raw, SynthConfig(subjects=("S1",), actions=("Walking",), frames=args.frames,
                                           scale=args.scale), progress=False)
        videos = sorted(Path(p) for s in discover(raw) for p in s.videos.values())
        profile(raw, tmp / "warm.zarr")  # compiles and caches the kernels, warms the page cache
        shutil.rmtree(tmp / "warm.zarr")
        n, t_decode = decode_only(videos)
        seconds, stages = profile(raw, tmp / "store.zarr", args.stats)
        info = video_info(videos[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    w, h = info.width, info.height
    print(f"{n} frames of {w} x {h} px in {len(videos)} videos, one process; decoding alone "
          f"{t_decode / n * 1e3:.2f} ms a frame; the build {seconds / n * 1e3:.2f} ms a frame under the profiler "
          f"({t_decode / seconds:.2f} of the decode-only rate)")
    print("| stage | seconds | ms a frame | share |\n| --- | ---: | ---: | ---: |")
    total = sum(stages.values())
    for k, v in stages.items():
        print(f"| {k} | {v:.2f} | {v / n * 1e3:.2f} | {v / total:.0%} |")
    Path(args.json).write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "frames": n, "video_size": [w, h], "videos": len(videos), "decode_only_seconds": t_decode,
        "build_seconds_profiled": seconds, "stage_seconds": stages,
        "written": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
