"""The plurality vote of the median backgrounds (h36m_prep.background), before and after its
rewrite (pixel-major rows, each pair of samples compared once), in the same run, on real frames:
the samples of one view of the demo's raw data (or --raw), at full size. Checks the outputs are
identical, prints a table, writes benchmarks/results/background_vote.json.

    python benchmarks/background_vote.py [--raw demo/raw] [--samples 48] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from numba import njit

from h36m_prep.background import plurality_background, sample_frames


@njit(cache=True, nogil=True)
def _agree_before(stack, y, x, i, j, tolerance):
    for c in range(stack.shape[3]):
        if abs(np.int32(stack[i, y, x, c]) - np.int32(stack[j, y, x, c])) > tolerance:
            return False
    return True


@njit(cache=True, nogil=True)
def _plurality_before(stack, tolerance, out):
    """The vote as it was: every ordered pair of samples, read sample-major."""
    n, H, W, C = stack.shape
    values = np.empty(n, np.int32)
    for y in range(H):
        for x in range(W):
            best, best_i = -1, 0
            for i in range(n):
                votes = 0
                for j in range(n):
                    votes += _agree_before(stack, y, x, i, j, tolerance)
                if votes > best:
                    best, best_i = votes, i
            for c in range(C):
                k = 0
                for j in range(n):
                    if _agree_before(stack, y, x, best_i, j, tolerance):
                        values[k] = stack[j, y, x, c]
                        k += 1
                v = np.sort(values[:k])
                out[y, x, c] = np.uint8(np.round(0.5 * (v[(k - 1) // 2] + v[k // 2])))


def before(frames, tolerance):
    stack = np.ascontiguousarray(np.stack(frames))
    out = np.empty(stack.shape[1:], np.uint8)
    _plurality_before(stack, int(tolerance), out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", default="demo/raw")
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--tolerance", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="benchmarks/results/background_vote.json")
    args = ap.parse_args()
    videos = sorted(Path(args.raw).glob("S1/Videos/*.54138969.mp4"))
    if not videos:
        raise SystemExit(f"{args.raw}: no S1 videos of camera 54138969; run `sync-train demo --data-only` first")
    from h36m_prep.raw import video_info

    frames = [f for _, _, f in sample_frames([(v, video_info(v).frames) for v in videos], args.samples)]
    small = [f[:16, :16] for f in frames]
    before(small, args.tolerance), plurality_background(small, args.tolerance)  # compile both
    times = {"before": [], "after": []}
    for _ in range(args.repeats):
        for name, fn in (("before", before), ("after", plurality_background)):
            t = time.perf_counter()
            out = fn(frames, args.tolerance)
            times[name].append(time.perf_counter() - t)
            if name == "before":
                ref = out
            elif not np.array_equal(out, ref):
                raise SystemExit("the rewritten vote differs from the old one")
    h, w = frames[0].shape[:2]
    rows = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(frames)} samples of {w} x {h} px ({videos[0].parent.parent.name}, camera 54138969), "
          f"median of {args.repeats}; outputs identical")
    print("| vote | seconds a view | speed-up |\n| --- | ---: | ---: |")
    for k, v in rows.items():
        print(f"| {k} | {v:.2f} | {rows['before'] / v:.1f}x |")
    Path(args.json).write_text(json.dumps({"args": vars(args), "frame_size": [w, h], "samples": len(frames),
                                           "seconds": times, "median_seconds": rows, "identical": True,
                                           "written": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
