"""Our loader against FFCV per core, on the same crops, cores and batch, in one run.

FFCV (https://github.com/libffcv/ffcv) reads images from a `.beton` file and runs its standard
train pipeline: RandomResizedCrop to the output size and a random flip, each stage compiled with
numba, uint8 out. We write N random crops of the store (the 256 px crops the loader reads) to a
RAW and a JPEG `.beton` once, and time, each in its own process, median of --repeats runs (interleaved):

- FFCV RAW and FFCV JPG: images/s after one warm-up epoch (its compilation), batch --batch,
  --workers threads;
- ours: `PairLoader` on each STORE given (uint8 out, the OpenCV backend, --workers render
  threads, batch --batch images = batch/6 anchors x 3 pairs x 2 images), which does more per
  image: it decodes the person's mask too, composites the removed or substituted background,
  and warps by the plan's affine (the paper's centred 224 of 256 by default: at 224 px a copy);
  and on the first STORE with float32 normalized out (FFCV's NormalizeImage needs a GPU) and
  with the optional crop jitter (a random window, resampled, as FFCV's RandomResizedCrop does).
  It samples from every row of the store, FFCV from the N crops written; both read from the
  page cache (the store and the files are read once before), and with --cold also from the disk
  (their files dropped from the cache after the warm-up);

at 224 px and 64 px. Our JPEG row needs a JPEG store (`h36m-prep build --image-codec jpeg`).
With --build RAW the same table ends with a build of RAW against only decoding its videos.

    python benchmarks/ffcv_compare.py [STORE ...] [--ffcv-python PY] [--crops 4000] [--cold] [--build RAW]

FFCV is optional: --ffcv-python names an interpreter that can import it (default: this one);
where none can, its rows are skipped with a note (`pip install ffcv` builds it against
libturbojpeg and OpenCV: apt install libturbojpeg0-dev libopencv-dev pkg-config). Prints a
table with the ratios, writes benchmarks/results/ffcv_compare.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = (224, 64)


# ---------------------------------------------------------------- child side

def evict(target: str) -> None:
    """Drop every file of `target` (a file or a folder) from the page cache: the next reads come
    from the disk, as a store or a .beton larger than the memory would be read."""
    paths = [Path(target)] if Path(target).is_file() else [p for p in Path(target).rglob("*") if p.is_file()]
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_ffcv(beton: str, size: int, batch: int, workers: int, epochs: int, cold: bool = False) -> dict:
    from ffcv.fields.decoders import RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage

    pipeline = [RandomResizedCropRGBImageDecoder((size, size)), RandomHorizontalFlip(), ToTensor(), ToTorchImage()]
    loader = Loader(beton, batch_size=batch, num_workers=workers, order=OrderOption.RANDOM, drop_last=True,
                    pipelines={"image": pipeline}, seed=0)
    for (x,) in loader:  # the first epoch compiles the pipeline
        pass
    assert x.dtype.is_floating_point is False and tuple(x.shape[1:]) == (3, size, size), x.shape
    if cold:
        evict(beton)
        epochs = 1  # a second epoch would read from the page cache again
    images, t = 0, time.perf_counter()
    for _ in range(epochs):
        for (x,) in loader:
            images += len(x)
    return {"images": images, "seconds": time.perf_counter() - t}


def run_ours(store: str, size: int, batch: int, workers: int, batches: int, cold: bool = False,
             uint8: bool = True, jitter: bool = False) -> dict:
    from pairloader import PairLoader, SamplerConfig
    from pairloader.sampler import JITTER

    sampler = SamplerConfig(out_size=size, **(JITTER if jitter else {}))
    loader = PairLoader(store, batch_size=max(1, batch // 6), seed=0, backend="opencv", workers=workers,
                        uint8=uint8, sampler=sampler)
    it = iter(loader)
    for _ in range(3):
        b = next(it)
    assert b["x1"].dtype.is_floating_point is not uint8 and tuple(b["x1"].shape[1:]) == (3, size, size)
    if cold:
        evict(store)
        for _ in range(2 * workers + 1):  # the batches rendered ahead before the eviction
            next(it)
    images, t = 0, time.perf_counter()
    for _ in range(batches):
        b = next(it)
        images += 2 * len(b["x1"])
    return {"images": images, "seconds": time.perf_counter() - t}


# ---------------------------------------------------------------- parent side

def write_betons(store: str, out: Path, crops: int, python: str) -> dict[str, str]:
    """RAW and JPEG-90 .beton files of `crops` random rows of the store (kept and reused)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"raw": out / f"crops{crops}_raw.beton", "jpg": out / f"crops{crops}_jpg90.beton"}
    rows = out / f"crops{crops}_rows.npy"
    if not rows.exists():
        import zarr

        n = zarr.open_group(store, mode="r")["images"].shape[0]
        np.save(rows, np.sort(np.random.default_rng(0).choice(n, min(crops, n), replace=False)))
    for mode, path in paths.items():
        if not path.exists():
            code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import ffcv_compare as f; "
                    f"f._write({store!r}, {str(rows)!r}, {str(path)!r}, {mode!r})")
            subprocess.run([python, "-c", code], check=True)
    return {k: str(v) for k, v in paths.items()}


def _write(store: str, rows_file: str, path: str, mode: str) -> None:
    import zarr
    from ffcv.fields import RGBImageField
    from ffcv.writer import DatasetWriter

    images, rows = zarr.open_group(store, mode="r")["images"], np.load(rows_file)

    class Crops:
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return (images[int(rows[i])],)

    tmp = path + ".tmp"
    field = RGBImageField(write_mode=mode, jpeg_quality=90)
    DatasetWriter(tmp, {"image": field}, num_workers=2).from_indexed_dataset(Crops())
    os.replace(tmp, path)


def child_run(python: str, kind: str, target: str, size: int, args, cold: bool = False, uint8: bool = True,
              jitter: bool = False) -> dict:
    call = (f"run_ffcv({target!r}, {size}, {args.batch}, {args.workers}, {args.epochs}, {cold})" if kind == "ffcv"
            else f"run_ours({target!r}, {size}, {args.batch}, {args.workers}, {args.batches}, {cold}, {uint8}, "
                 f"{jitter})")
    code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import ffcv_compare as f; "
            f"print(json.dumps(f.{call}))")
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {**r, "images_per_s": r["images"] / r["seconds"]}


def ffcv_usable(python: str) -> str | None:
    """None when `python` can import ffcv, else why not."""
    r = subprocess.run([python, "-c", "import ffcv.loader"], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["import failed"])[-1]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="*", default=["demo/store.zarr"], help="our stores (default demo/store.zarr)")
    ap.add_argument("--ffcv-python", default=sys.executable, help="an interpreter that can import ffcv "
                    "(default: this one)")
    ap.add_argument("--crops", type=int, default=4000, help="crops written to the .beton files (default 4000)")
    ap.add_argument("--batch", type=int, default=96, help="images a batch (default 96)")
    ap.add_argument("--workers", type=int, default=2, help="threads of each loader (default 2)")
    ap.add_argument("--epochs", type=int, default=2, help="FFCV epochs timed after the warm-up (default 2)")
    ap.add_argument("--batches", type=int, default=60, help="our batches timed after 3 warm-up (default 60)")
    ap.add_argument("--repeats", type=int, default=3, help="runs a row; the table shows the median (default 3)")
    ap.add_argument("--cache", default="runs/ffcv_compare", help="where the .beton files are kept")
    ap.add_argument("--cold", action="store_true", help="also time every loader from a cold page cache (its files "
                    "dropped from the cache after the warm-up; FFCV then times one epoch)")
    ap.add_argument("--build", default=None, metavar="RAW", help="also time a build of RAW against decoding its "
                    "videos, with --workers processes (benchmarks/build_throughput.py)")
    ap.add_argument("--build-subjects", default="S1,S9", help="the subjects of RAW built (default S1,S9)")
    ap.add_argument("--out", default="benchmarks/results/ffcv_compare.json")
    args = ap.parse_args(argv)
    why = ffcv_usable(args.ffcv_python)
    betons = {} if why else write_betons(args.stores[0], Path(args.cache), args.crops, args.ffcv_python)
    if why:
        print(f"FFCV rows skipped: {args.ffcv_python} cannot import ffcv ({why}); pip install ffcv (needs apt "
              "libturbojpeg0-dev libopencv-dev pkg-config) and pass --ffcv-python")
    for target in [*betons.values(), *args.stores]:  # into the page cache before any timing
        for p in Path(target).rglob("*") if Path(target).is_dir() else [Path(target)]:
            if p.is_file():
                with open(p, "rb") as f:
                    while f.read(1 << 24):
                        pass
    rows = []
    caches = ("memory", "cold") if args.cold else ("memory",)
    for size in SIZES:
        first = Path(args.stores[0]).name
        targets = [("ffcv", f"FFCV {mode.upper()}", b, True, False) for mode, b in betons.items()]
        targets += [("ours", f"ours {Path(s).name}", s, True, False) for s in args.stores]
        targets += [("ours", f"ours {first}", args.stores[0], False, False)]  # the float path
        # with the optional crop jitter (a random window, resampled like FFCV's RandomResizedCrop)
        # where the default copies the paper's centred window at 224 px
        targets += [("ours", f"ours {first}, crop jitter", args.stores[0], True, True)]
        runs = {(name, uint8, cache): [] for _, name, _, uint8, _ in targets for cache in caches}
        for _ in range(args.repeats):  # interleaved: a change in the machine's load reaches every row alike
            for cache in caches:
                for kind, name, target, uint8, jitter in targets:
                    python = args.ffcv_python if kind == "ffcv" else sys.executable
                    r = child_run(python, kind, target, size, args, cache == "cold", uint8, jitter)
                    runs[(name, uint8, cache)].append(r["images_per_s"])
        for cache in caches:
            for kind, name, target, uint8, _ in targets:
                rate = float(np.median(runs[(name, uint8, cache)]))
                rows.append({"loader": name, "kind": kind, "target": target, "size": size,
                             "out": "uint8" if uint8 else "float32", "cache": cache, "images_per_s": rate,
                             "runs_images_per_s": runs[(name, uint8, cache)]})
                print(f"{name:<28} {size:>4} px {rows[-1]['out']:>8} {cache:>7}  {rate:8.0f} images/s", flush=True)
    print("\n| loader | px | out | page cache | images/s | / FFCV RAW | / FFCV JPG |\n"
          "|---|---:|---|---|---:|---:|---:|")
    for r in rows:
        ref = {k: next((x["images_per_s"] for x in rows if x["loader"] == f"FFCV {k}" and x["size"] == r["size"]
                        and x["cache"] == r["cache"]), None) for k in ("RAW", "JPG")}
        ratio = [f"{r['images_per_s'] / v:.2f}" if v else "-" for v in ref.values()]
        print(f"| {r['loader']} | {r['size']} | {r['out']} | {r['cache']} | {r['images_per_s']:.0f} | {ratio[0]} | "
              f"{ratio[1]} |")
    build = None
    if args.build:
        from build_throughput import measure

        build = measure(Path(args.build), tuple(args.build_subjects.split(",")), args.workers)
        print(f"| build / decode-only ({build['video_size'][1]} x {build['video_size'][0]}, {args.workers} processes) "
              f"| | | | {build['build']['fps']:.0f} frames/s | {build['ratio_build_over_decode']:.2f} of "
              f"{build['decode_only']['fps']:.0f} | |")
    doc = {"stores": args.stores, "crops": args.crops, "batch": args.batch, "workers": args.workers,
           "ffcv": why or "measured", "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "written": time.strftime("%Y-%m-%d %H:%M"), "rows": rows, "build": build}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    return doc


if __name__ == "__main__":
    main()
