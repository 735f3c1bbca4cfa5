"""Loader throughput: pairs/s of PairLoader (each available backend) next to, on the same cores
and in the same run, (a) a naive baseline of the kind many pose repositories use: per-frame
JPEG files written from the store, cv2 + torchvision transforms in a torch DataLoader with the
same number of worker processes; (b) the raw read rate of the same bytes from the store (the
image and mask chunks the loader reads, no augmentation), through Zarr's API and read directly,
in the loader's threads. Peak resident memory of each (the process and its children).

    python benchmarks/loader_throughput.py [STORE] [--workers 2] [--batch 16] [--batches 100] [--repeats 3]

STORE defaults to demo/store.zarr (made by `sync-train demo`). Each measurement runs in its own
process. Prints a table, writes benchmarks/results/loader_throughput.json. With a CUDA GPU and
DALI the GPU pipeline is measured too.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from h36m_prep import store as S


def _tree_rss_kb(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in open(f"/proc/{p}/task/{task}/children").read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def measure(kind: str, args) -> dict:
    """Run one measurement in a child process, sampling its process tree's RSS."""
    cmd = [sys.executable, __file__, args.store, "--one", kind, "--workers", str(args.workers),
           "--batch", str(args.batch), "--batches", str(args.batches), "--jpeg-dir", args.jpeg_dir]
    code, out, peak_kb = run_watched(cmd)
    if code:
        return {"kind": kind, "error": f"exit {code}"}
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak_kb / 1024
    return result


def run_watched(cmd: list[str]) -> tuple[int, str, int]:
    """Run cmd, sampling the RSS of its process tree: (exit code, stdout, peak RSS in KB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = [0]

    def watch():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            time.sleep(0.1)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    out, _ = proc.communicate()
    w.join()
    return proc.returncode, out, peak[0]


def summarize(kind: str, runs: list[dict]) -> dict:
    """The median of a kind's runs (pairs/s), every run's rate, the highest peak RSS."""
    failed = [r["error"] for r in runs if "error" in r]
    if failed:
        return {"kind": kind, "error": failed[0]}
    rates = sorted(r["pairs_per_s"] for r in runs)
    return {"kind": kind, "pairs_per_s": float(np.median(rates)), "runs_pairs_per_s": rates,
            "pairs_per_run": runs[0]["pairs"], "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


# ---------------------------------------------------------------- the measurements (child side)

def _time_batches(it, warmup: int, batches: int, pairs_per_batch: int) -> dict:
    for _ in range(warmup):
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t
    return {"pairs": batches * pairs_per_batch, "seconds": dt, "pairs_per_s": batches * pairs_per_batch / dt}


def _sampler(shared: bool):
    from pairloader import SamplerConfig

    return SamplerConfig(share_anchor=shared)


def run_pairloader(args, backend: str, device_id=None, shared: bool = False) -> dict:
    from pairloader import PairLoader

    loader = PairLoader(args.store, batch_size=args.batch, seed=0, backend=backend, workers=args.workers,
                        threads=args.workers, device_id=device_id, sampler=_sampler(shared))
    return _time_batches(iter(loader), 3, args.batches, 3 * args.batch)


def run_raw(args, direct: bool, shared: bool = False) -> dict:
    """The image and mask chunks of each batch's plan (the bytes the OpenCV backend reads; a
    shared anchor once), no augmentation, through Zarr's API or read directly (the loader's
    reader), in the loader's threads."""
    import zarr

    from pairloader import PairLoader
    from h36m_prep.store import StoreReader
    from pairloader.loader import cpu_batches

    loader = PairLoader(args.store, batch_size=args.batch, seed=0, sampler=_sampler(shared))
    reader, g = StoreReader(args.store), zarr.open_group(args.store, mode="r")
    images, masks = g["images"], g["masks"]

    def batch_of(step):
        plan = loader.plan(step)
        rows = plan.rows.reshape(-1)[plan.same_as.reshape(-1) < 0]  # a shared anchor is read once
        if direct:
            return [(reader.image(r), reader.mask(r)) for r in rows]
        return [(images[int(r)], masks[int(r)]) for r in rows]

    return _time_batches(cpu_batches(batch_of, itertools.count(), args.workers), 3, args.batches, 3 * args.batch)


class _NaivePairs:
    """What many pose repositories do: JPEG files, cv2, torchvision transforms, Python random."""

    def __init__(self, jpeg_dir, rows, bank, pairs_per_item):
        import torchvision.transforms as T

        self.dir, self.rows, self.bank, self.k = jpeg_dir, rows, bank, pairs_per_item
        self.tf = T.Compose([T.ToPILImage(), T.RandomResizedCrop(224, scale=(0.8, 1.0), ratio=(1.0, 1.0)),
                             T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def __len__(self):
        return 10**9

    def _load(self, row, rng):
        import cv2

        img = cv2.cvtColor(cv2.imread(f"{self.dir}/{row}.jpg"), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(f"{self.dir}/{row}_mask.png", cv2.IMREAD_GRAYSCALE)[..., None] > 0
        if rng.random() < 0.5:
            bg = cv2.cvtColor(cv2.imread(f"{self.dir}/bg_{rng.randrange(self.bank)}.jpg"), cv2.COLOR_BGR2RGB)
        else:
            bg = np.full_like(img, 124)
        return np.where(mask, img, bg)

    def __getitem__(self, i):
        import random

        import torch

        rng = random.Random(i)
        x1, x2 = [], []
        for _ in range(self.k):
            r1, r2 = rng.choice(self.rows), rng.choice(self.rows)
            flip = rng.random() < 0.5
            a, b = self.tf(self._load(r1, rng)), self.tf(self._load(r2, rng))
            if flip:
                a, b = torch.flip(a, [-1]), torch.flip(b, [-1])
            x1.append(a)
            x2.append(b)
        return torch.stack(x1), torch.stack(x2)


def write_jpegs(store: str, out: str, count: int) -> list[int]:
    """Per-frame JPEG (quality 95) and PNG mask files of `count` store rows, and the bank."""
    import cv2
    import zarr

    g = zarr.open_group(store, mode="r")
    rows = np.sort(np.random.default_rng(0).choice(g["images"].shape[0], count, replace=False))
    os.makedirs(out, exist_ok=True)
    for r in rows:
        cv2.imwrite(f"{out}/{r}.jpg", cv2.cvtColor(g["images"][int(r)], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(f"{out}/{r}_mask.png", g["masks"][int(r)] * 255)
    for b in range(g["backgrounds"].shape[0]):
        cv2.imwrite(f"{out}/bg_{b}.jpg", cv2.cvtColor(g["backgrounds"][b], cv2.COLOR_RGB2BGR))
    return rows.tolist()


def run_naive(args) -> dict:
    import torch
    import zarr

    rows = json.loads(Path(args.jpeg_dir, "rows.json").read_text())
    bank = zarr.open_group(args.store, mode="r")["backgrounds"].shape[0]
    ds = _NaivePairs(args.jpeg_dir, rows, bank, 3 * args.batch)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=args.workers)
    return _time_batches(iter(dl), 3, args.batches, 3 * args.batch)


def child(args) -> None:
    kind, shared = args.one.removesuffix("-shared"), args.one.endswith("-shared")
    if kind.startswith("raw"):
        r = run_raw(args, direct=kind == "raw-direct", shared=shared)
    elif kind == "naive":
        r = run_naive(args)
    elif kind == "dali-gpu":
        r = run_pairloader(args, "dali", device_id=0)
    else:
        r = run_pairloader(args, kind.replace("pairloader-", ""), shared=shared)
    kind = args.one
    print(json.dumps({"kind": kind, **r}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", nargs="?", default="demo/store.zarr")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=16, help="anchors per batch (3 pairs each)")
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement; the table shows the median")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--jpeg-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--kinds", default=None, help="comma-separated subset of the measurements "
                    "(naive and raw-direct always run: they are the baselines)")
    ap.add_argument("--out", default="benchmarks/results/loader_throughput.json")
    args = ap.parse_args()
    if args.one:
        return child(args)
    if not S.is_store(args.store):
        sys.exit(f"{args.store}: no store; run `sync-train demo` first or pass a store path")
    tmp = tempfile.mkdtemp(prefix="naive_jpeg_")
    args.jpeg_dir = tmp
    rows = write_jpegs(args.store, tmp, 2000)
    Path(tmp, "rows.json").write_text(json.dumps(rows))
    kinds = ["raw-zarr", "raw-direct", "naive", "pairloader-torch", "pairloader-opencv",
             "raw-direct-shared", "pairloader-opencv-shared"]
    try:
        import nvidia.dali  # noqa: F401
        kinds.append("pairloader-dali")
        import torch
        if torch.cuda.is_available():
            kinds.append("dali-gpu")
    except ImportError:
        pass
    if args.kinds:
        wanted = set(args.kinds.split(",")) | {"naive", "raw-direct"}
        wanted |= {"raw-direct-shared"} if any(k.endswith("-shared") for k in wanted) else set()
        kinds = [k for k in kinds if k in wanted]
    runs = {k: [] for k in kinds}
    for _ in range(args.repeats):  # interleaved rounds, so a slow spell of the machine hits every kind
        for k in kinds:
            runs[k].append(measure(k, args))
    results = [summarize(k, runs[k]) for k in kinds]
    by = {r["kind"]: r for r in results}
    naive = by["naive"].get("pairs_per_s")
    print(f"\n{'loader':<26}{'pairs/s':>10}{'x naive':>9}{'/ raw read':>11}{'peak RSS MB':>13}")
    for r in results:
        if "error" in r:
            print(f"{r['kind']:<26}  failed: {r['error']}")
            continue
        raw = by["raw-direct-shared" if r["kind"].endswith("-shared") else "raw-direct"].get("pairs_per_s")
        r["x_naive"], r["of_raw_read"] = r["pairs_per_s"] / naive, r["pairs_per_s"] / raw
        print(f"{r['kind']:<26}{r['pairs_per_s']:>10.1f}{r['x_naive']:>9.2f}"
              f"{r['of_raw_read']:>11.2f}{r['peak_rss_mb']:>13.0f}")
    print(f"({args.workers} workers: threads for the raw reads and the CPU backends, processes for naive "
          f"and DALI; batches of {3 * args.batch} pairs, 224 px output; raw: the image + mask chunks the "
          "loader reads, no augmentation; '/ raw read' is against raw-direct, or raw-direct-shared for the "
          f"-shared rows: share_anchor=True, a triplet's anchor read and rendered once; median of "
          f"{args.repeats} interleaved runs of {args.batches} batches)")
    doc = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "store": args.store,
           "workers": args.workers, "pairs_per_batch": 3 * args.batch, "repeats": args.repeats,
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
