"""Where the OpenCV backend's time goes: per-image cost of each stage, in one thread, and the
cost of filling a fresh batch tensor (its first touch: page faults) against refilling one
already touched.

    python benchmarks/loader_stages.py [STORE] [--batches 20]

STORE defaults to demo/store.zarr. Prints a table, writes benchmarks/results/loader_stages.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pairloader import PairLoader
from pairloader.fetch import fetch_image
from pairloader.render import _LUT, composite_opencv, normalize_into, warp_opencv


def _ms_per(fn, items) -> tuple[float, list]:
    t = time.perf_counter()
    out = [fn(*item) for item in items]
    return (time.perf_counter() - t) / len(items) * 1e3, out


def stage_times(loader, plan, out: torch.Tensor) -> dict:
    """ms per image of each stage over one batch, rendered into `out` (reused, already touched)."""
    images = list(zip(*plan.images()))
    size = out.shape[-1]
    read, fetched = _ms_per(lambda r, m, b, f, a: fetch_image(loader.reader, r, m, b, f), images)
    comp, comps = _ms_per(lambda f, m: composite_opencv(*f, m), [(f, i[1]) for f, i in zip(fetched, images)])
    warp, warped = _ms_per(lambda c, a: warp_opencv(c, a, size), [(c, i[4]) for c, i in zip(comps, images)])
    norm, _ = _ms_per(lambda w, o: normalize_into(w, _LUT, o), [(w, out[k].numpy()) for k, w in enumerate(warped)])
    return {"read + Blosc-decode image and mask": read, "composite (cv2.copyTo)": comp,
            "warp (cv2.warpAffine)": warp, "normalize into CHW (numba LUT)": norm}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", nargs="?", default="demo/store.zarr")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/loader_stages.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    loader = PairLoader(args.store, batch_size=16, seed=0, backend="opencv", workers=0)
    size = loader.sampler.cfg.out_size
    shape = (2, 3 * 16, 3, size, size)
    out = torch.zeros(shape).view(-1, 3, size, size)
    alloc = {"fresh (torch.empty), first touch": _ms_per(lambda: torch.empty(shape).fill_(0), [()] * 10)[0],
             "reused, already touched": _ms_per(lambda: out.fill_(0), [()] * 10)[0]}
    stage_times(loader, loader.plan(0), out)  # warm-up: page cache, numba
    per_batch = [stage_times(loader, loader.plan(s), out) for s in range(1, args.batches + 1)]
    stages = {k: float(np.median([b[k] for b in per_batch])) for k in per_batch[0]}
    print(f"\n{'stage, one thread':<40}{'ms / image':>12}")
    for k, v in stages.items():
        print(f"{k:<40}{v:>12.3f}")
    mb = 4 * math.prod(shape) / 1e6
    print(f"\n{'batch tensor of %.0f MB, filled' % mb:<40}{'ms / batch':>12}")
    for k, v in alloc.items():
        print(f"{k:<40}{v:>12.1f}")
    print(f"(stages: median over {args.batches} batches of {2 * 3 * 16} images, {size} px)")
    doc = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "store": args.store,
           "batches": args.batches, "out_size": size, "ms_per_image": stages, "batch_mb": mb,
           "ms_per_fresh_batch": alloc}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
