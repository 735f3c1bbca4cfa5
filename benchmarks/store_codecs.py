"""The store's crop codecs side by side: Blosc-LZ4 (lossless), raw (uncompressed) and JPEG at
qualities 75, 90, 95.

For each codec, a store is built from the same raw videos (default: the demo's S1 and S9), then:

- bytes a frame (crop and mask, as on disk) and the projected size of a full Human3.6M store
  (2.5 M frames);
- build frames/s (2 worker processes);
- PSNR of the crops against the lossless store's (200 random rows);
- decode ms a frame: the crop chunk read and decoded as the loader does, whole, and (JPEG)
  at 1/2 of the side by libjpeg's DCT scaling, the size the 64 px presets use;
- loader pairs/s, OpenCV backend, 2 render threads, batch 16, at 224 px and at 64 px output,
  and the peak resident memory of that run (each loader run in its own process); with the store in
  the page cache (warm), and, where the OS page cache can be emptied (root), from the disk (cold:
  the case of a store larger than the memory, a full Human3.6M store on a workstation).

    python benchmarks/store_codecs.py [--raw demo/raw] [--subjects S1,S9] [--root runs/store_codecs]

Stores are kept under --root and reused by a rerun. Prints a table and writes
benchmarks/results/store_codecs.json. The LZ4 row is the baseline of the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loader_throughput import run_watched  # noqa: E402  (the child-process measurement with its peak memory)

CODECS = ("lz4", "raw", "jpeg:75", "jpeg:90", "jpeg:95")
H36M_FRAMES = 2_500_000


def drop_page_cache() -> bool:
    """Empty the OS page cache (root only), so that the next reads come from the disk, as they do
    for a store larger than the memory. -> whether it was possible."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def loader_rate(store: Path, out_size: int, batches: int, cold: bool = False, uint8: bool = False) -> dict:
    """pairs/s and peak RSS of the OpenCV loader in a child process (cold: from an empty page cache;
    uint8: uint8 batches, normalized afterwards as a training loop would, on the CPU here)."""
    if cold and not drop_page_cache():
        return {"pairs_per_s": None}
    cmd = [sys.executable, __file__, "--one-loader", str(store), "--out-size", str(out_size), "--batches", str(batches),
           *(["--uint8"] if uint8 else [])]
    code, out, peak_kb = run_watched(cmd)
    if code:
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}")
    return json.loads(out.strip().splitlines()[-1]) | {"peak_rss_mb": peak_kb / 1024}


def _one_loader(store: str, out_size: int, batches: int, uint8: bool = False) -> None:
    from pairloader import PairLoader, normalize
    from pairloader.sampler import SamplerConfig

    loader = PairLoader(store, batch_size=16, seed=0, backend="opencv", workers=2, steps=batches + 5,
                        sampler=SamplerConfig(out_size=out_size), uint8=uint8)
    it = iter(loader)
    for _ in range(5):  # warm-up: numba, page cache of the metadata
        next(it)
    t0 = time.perf_counter()
    n = 0
    for b in it:
        n += b["x1"].shape[0]
        if uint8:  # what the training loop then does (on the CPU of this machine)
            normalize(b["x1"]), normalize(b["x2"])
    print(json.dumps({"pairs_per_s": n / (time.perf_counter() - t0)}))


def decode_ms(store: Path, rows: np.ndarray, reduce: int = 1) -> float:
    from h36m_prep.store import StoreReader

    reader = StoreReader(store)
    reader.image(int(rows[0]), reduce)
    t0 = time.perf_counter()
    for r in rows:
        reader.image(int(r), reduce)
    return 1000 * (time.perf_counter() - t0) / len(rows)


def uint8_section(store: Path, out: Path, batches: int) -> None:
    """Float against uint8 batches (normalized after the hand-over, as training does), same store,
    same run, 2 repeats each alternated; added to the JSON under `batch_dtype`."""
    doc = json.loads(out.read_text())
    rows = {}
    for size in (224, 64):
        rates = {"float32": [], "uint8": []}
        for _ in range(2):
            for kind in rates:
                rates[kind].append(loader_rate(store, size, batches, uint8=kind == "uint8")["pairs_per_s"])
        rows[str(size)] = {k: float(np.median(v)) for k, v in rates.items()}
        print(f"| {size} px | float32 {rows[str(size)]['float32']:.0f} | uint8 {rows[str(size)]['uint8']:.0f} pairs/s |")
    doc["batch_dtype"] = {"store": str(store), "pairs_per_s": rows,
                          "note": "uint8 batches normalized after the hand-over, on the CPU (no GPU here)"}
    out.write_text(json.dumps(doc, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", default="demo/raw")
    ap.add_argument("--subjects", default="S1,S9")
    ap.add_argument("--root", default="runs/store_codecs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--out", default="benchmarks/results/store_codecs.json")
    ap.add_argument("--codecs", default=",".join(CODECS), help="the codecs measured, comma-separated (lz4 first: "
                                                                "the baseline) [default: all]")
    ap.add_argument("--one-loader", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out-size", type=int, default=224, help=argparse.SUPPRESS)
    ap.add_argument("--uint8", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--uint8-only", action="store_true",
                    help="only measure float against uint8 batches on the LZ4 store, added to the existing JSON")
    args = ap.parse_args()
    if args.one_loader:
        return _one_loader(args.one_loader, args.out_size, args.batches, args.uint8)
    if args.uint8_only:
        return uint8_section(Path(args.root) / "lz4.zarr", Path(args.out), args.batches)

    import zarr

    from h36m_prep.build import BuildConfig, build
    from h36m_prep.inspect_store import info

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    subjects = tuple(s.strip() for s in args.subjects.split(","))
    rows_out, stores = [], {}
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    if codecs[:1] != ["lz4"]:
        raise SystemExit("--codecs: lz4 comes first (the baseline of the ratios)")
    for codec in codecs:
        store = root / f"{codec.replace(':', '')}.zarr"
        t0 = time.perf_counter()
        r = build(args.raw, store, BuildConfig(subjects=subjects, image_codec=codec), workers=args.workers)
        seconds = time.perf_counter() - t0
        stats_path = root / f"{store.stem}.build.json"  # a rerun reuses the store and its build time
        if r["frames_written"]:
            stats_path.write_text(json.dumps({"seconds": seconds, "frames": r["frames_written"]}))
        built = json.loads(stats_path.read_text())
        stores[codec] = store
        i = info(store)
        rows_out.append({"codec": codec, "bytes_per_frame": i["bytes_per_frame"],
                         "projected_h36m_gb": i["bytes_per_frame"] * H36M_FRAMES / 1e9,
                         "build_frames_per_s": built["frames"] / built["seconds"]})
    ref = zarr.open_group(str(stores["lz4"]), mode="r")["images"]
    n = ref.shape[0]
    pick = np.sort(np.random.default_rng(0).choice(n, min(200, n), replace=False))
    truth = ref.get_orthogonal_selection((pick,)).astype(np.float64)
    for row in rows_out:
        store = stores[row["codec"]]
        img = zarr.open_group(str(store), mode="r")["images"].get_orthogonal_selection((pick,))
        mse = np.mean((img - truth) ** 2)
        row["psnr_db"] = float("inf") if mse == 0 else float(10 * np.log10(255 ** 2 / mse))
        row["decode_ms"] = decode_ms(store, pick)
        row["decode_ms_half"] = decode_ms(store, pick, 2) if row["codec"].startswith("jpeg") else None
        for size in (224, 64):
            rate = loader_rate(store, size, args.batches)
            row[f"pairs_per_s_{size}"] = rate["pairs_per_s"]
            row[f"peak_rss_mb_{size}"] = rate["peak_rss_mb"]
            row[f"cold_pairs_per_s_{size}"] = loader_rate(store, size, args.batches, cold=True)["pairs_per_s"]
    base = rows_out[0]
    for row in rows_out:
        row["loader_ratio_224"] = row["pairs_per_s_224"] / base["pairs_per_s_224"]
        row["loader_ratio_64"] = row["pairs_per_s_64"] / base["pairs_per_s_64"]
        for size in (224, 64):
            cold, cold_base = row[f"cold_pairs_per_s_{size}"], base[f"cold_pairs_per_s_{size}"]
            row[f"cold_loader_ratio_{size}"] = cold / cold_base if cold and cold_base else None
    doc = {"raw": args.raw, "subjects": list(subjects), "rows_per_store": int(n), "crop_size": int(ref.shape[1]),
           "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
           "written": time.strftime("%Y-%m-%d %H:%M:%S"), "codecs": rows_out}
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print("| codec | KB/frame | full H36M GB | build fr/s | PSNR dB | decode ms | decode ms 1/2 | pairs/s 224 warm / cold | "
          "pairs/s 64 warm / cold | x LZ4 224 warm / cold | x LZ4 64 warm / cold | peak MB 224 / 64 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    for r in rows_out:
        print(f"| {r['codec']} | {r['bytes_per_frame'] / 1e3:.1f} | {r['projected_h36m_gb']:.0f} | "
              f"{r['build_frames_per_s']:.0f} | {r['psnr_db']:.1f} | {r['decode_ms']:.2f} | {f(r['decode_ms_half'], '.2f')} | "
              f"{r['pairs_per_s_224']:.0f} / {f(r['cold_pairs_per_s_224'], '.0f')} | "
              f"{r['pairs_per_s_64']:.0f} / {f(r['cold_pairs_per_s_64'], '.0f')} | "
              f"{r['loader_ratio_224']:.2f} / {f(r['cold_loader_ratio_224'], '.2f')} | "
              f"{r['loader_ratio_64']:.2f} / {f(r['cold_loader_ratio_64'], '.2f')} | "
              f"{r['peak_rss_mb_224']:.0f} / {r['peak_rss_mb_64']:.0f} |")
    print(args.out)


if __name__ == "__main__":
    main()
