"""The plurality vote of the median backgrounds (h36m_prep.background), before and after its
rewrite (pixel-major rows, each pair of samples compared once, the median counted), in the same
run, on real frames: the samples of one view of a synthetic dataset (the demo's raw data, or
--raw), at full size, and the vote run at 1/2 and 1/4 of the size (`--bg-vote-scale`). Checks
that the rewrite at full size equals the old vote, measures each result against the room the
renderer drew (the largest channel error; the masks threshold it at 20 grey levels), prints a
table, writes benchmarks/results/background_vote.json.

    python benchmarks/background_vote.py [--raw demo/raw] [--samples 48] [--repeats 3] [--scales 1,2,4]
"""
from __future__ import annotations

import argparse
import functools
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


def room_errors(out: np.ndarray, room: np.ndarray) -> dict:
    """How far a median background lies from the room the renderer drew (largest channel error)."""
    d = np.abs(out.astype(int) - room.astype(int)).max(axis=-1)
    return {"mean": float(d.mean()), "share_over_8": float((d > 8).mean()), "share_over_20": float((d > 20).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", default="demo/raw")
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--tolerance", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scales", default="1,2,4", help="vote scales to time (1: the vote at full size)")
    ap.add_argument("--json", default="benchmarks/results/background_vote.json")
    args = ap.parse_args()
    raw = Path(args.raw)
    videos = sorted(raw.glob("S1/Videos/*.54138969.mp4"))
    if not videos:
        raise SystemExit(f"{args.raw}: no S1 videos of camera 54138969; run `sync-train demo --data-only` first")
    from h36m_prep.raw import video_info
    from h36m_prep.synth.dataset import SynthConfig, empty_room

    doc = json.loads((raw / ".synth" / "config.json").read_text())
    room = empty_room(SynthConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}),
                      "S1", "54138969")
    t = time.perf_counter()
    frames = [f for _, _, f in sample_frames([(v, video_info(v).frames) for v in videos], args.samples)]
    t_sample = time.perf_counter() - t
    small = [f[:16, :16] for f in frames]
    scales = [int(k) for k in args.scales.split(",")]
    votes = {"before": before} | {f"scale {k}": functools.partial(plurality_background, vote_scale=k) for k in scales}
    for fn in votes.values():
        fn(small, args.tolerance)  # compile
    times = {name: [] for name in votes}
    outs = {}
    for _ in range(args.repeats):
        for name, fn in votes.items():
            t = time.perf_counter()
            outs[name] = fn(frames, args.tolerance)
            times[name].append(time.perf_counter() - t)
    if "scale 1" in outs and not np.array_equal(outs["scale 1"], outs["before"]):
        raise SystemExit("the rewritten vote at full size differs from the old one")
    h, w = frames[0].shape[:2]
    rows = {k: statistics.median(v) for k, v in times.items()}
    errors = {k: room_errors(o, room) for k, o in outs.items()}
    print(f"{len(frames)} samples of {w} x {h} px ({videos[0].parent.parent.name}, camera 54138969) decoded in "
          f"{t_sample:.2f} s; median of {args.repeats}; the vote at scale 1 equals the old one")
    print("| vote | seconds a view | speed-up | mean error vs the room | share > 8 | share > 20 |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    for k, v in rows.items():
        e = errors[k]
        print(f"| {k} | {v:.2f} | {rows['before'] / v:.1f}x | {e['mean']:.2f} | {e['share_over_8']:.2%} | "
              f"{e['share_over_20']:.2%} |")
    Path(args.json).write_text(json.dumps({"args": vars(args), "frame_size": [w, h], "samples": len(frames),
                                           "sample_seconds": t_sample, "seconds": times, "median_seconds": rows,
                                           "room_errors": errors, "identical_at_scale_1": "scale 1" in outs,
                                           "written": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
