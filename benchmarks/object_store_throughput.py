"""Loader throughput from object storage: pairs/s of PairLoader reading a store from a local
folder, and the same store from an S3 server on this machine (SeaweedFS, started here), with the
read-ahead of planned batches off (each chunk fetched when rendered) and on.

    python benchmarks/object_store_throughput.py [--store STORE] [--batch 16] [--batches 40]
        [--workers 2] [--out-size 64] [--repeats 3] [--latency-ms 0]

Without --store a synthetic store is built (2 training subjects and S9, 2 actions, 4 cameras,
JPEG-90 crops of 256 px, the codec of real data). --latency-ms adds that much delay to every
GET (a proxy in front of the server), as a stand-in for the 10-50 ms of a cloud bucket seen from
another region. Each kind is measured `repeats` times, interleaved; the median is reported.
Prints a table, writes benchmarks/results/object_store_throughput.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the S3 server the tests start (tests/servers.py)


def make_store(folder: Path) -> Path:
    from h36m_prep.build import BuildConfig, build
    from h36m_prep.synth.dataset import SynthConfig, write_dataset

    raw, store = folder / "raw", folder / "store.zarr"
    write_dataset(raw, SynthConfig(subjects=("S1", "S5", "S9"), actions=("Walking", "Posing"), frames=120, scale=0.5,
                                   seed=1), workers=2, progress=False)
    build(raw, store, BuildConfig(image_codec="jpeg:90", bg_samples=24), workers=2, progress=False)
    return store


def upload(store: Path, url: str) -> int:
    """Copy every file of a local store to object storage -> bytes copied."""
    from h36m_prep.store.location import locate

    src, dst = locate(store), locate(url)
    files = src.sizes()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: dst.write(key, src.read(key)), [k for k in files if not k.endswith(".writer.lock")]))
    return sum(files.values())


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that holds every chunk of a request for `delay` seconds before
    passing it on: each round trip to the server then costs at least that much."""

    def __init__(self, target_port: int, delay: float):
        self.target, self.delay = target_port, delay
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader, writer):
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(r, w, delay):
            try:
                while data := await r.read(1 << 16):
                    if delay:
                        await asyncio.sleep(delay)
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w, self.delay), pipe(up_r, writer, 0.0))


def rate(store: str, args, ahead: int) -> float:
    """Pairs per second of PairLoader over `batches` batches (after 3 warm-up batches)."""
    from pairloader import PairLoader
    from pairloader.sampler import SamplerConfig

    loader = PairLoader(store, batch_size=args.batch, seed=0, backend="opencv", workers=args.workers,
                        steps=args.batches + 3, sampler=SamplerConfig(out_size=args.out_size), ahead=ahead)
    it = iter(loader)
    pairs = 0
    for _ in range(3):
        next(it)
    t = time.perf_counter()
    for batch in it:
        pairs += len(batch["x1"])
    return pairs / (time.perf_counter() - t)


def get_latency(url: str, n: int = 100) -> float:
    """Median seconds of one GET of a small object (an array's zarr.json)."""
    from h36m_prep.store.location import locate

    loc = locate(url)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        loc.read("images/zarr.json")
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=None, help="a local store [default: a synthetic one built here]")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/object_store_throughput.json"))
    args = ap.parse_args()
    from servers import S3Server

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = Path(args.store) if args.store else make_store(tmp)
        server = S3Server(tmp / "s3")
        try:
            os.environ.update(server.env())
            server.make_bucket("bench")
            t = time.perf_counter()
            size = upload(store, "s3://bench/store.zarr")
            upload_s = time.perf_counter() - t
            if args.latency_ms:
                proxy = DelayProxy(server.ports["s3"], args.latency_ms / 1000)
                os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
            latency = get_latency("s3://bench/store.zarr")
            kinds = {"local folder": (str(store), 0), "S3, no read-ahead": ("s3://bench/store.zarr", 0),
                     "S3, read-ahead 4 batches": ("s3://bench/store.zarr", 4)}
            rates = {k: [] for k in kinds}
            for _ in range(args.repeats):
                for kind, (where, ahead) in kinds.items():
                    rates[kind].append(rate(where, args, ahead))
        finally:
            server.stop()
    base = statistics.median(rates["local folder"])
    rows = [{"kind": k, "pairs_per_s": statistics.median(v), "runs": v, "vs_local": statistics.median(v) / base}
            for k, v in rates.items()]
    print(f"store {args.store or 'synthetic (JPEG-90, 256 px)'}: {size / 1e6:.0f} MB, uploaded in {upload_s:.1f} s; "
          f"one GET {latency * 1e3:.1f} ms; batch {args.batch}, {args.out_size} px, {args.workers} threads")
    print(f"| {'read from':<26} | pairs/s | vs local |\n| --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['kind']:<26} | {r['pairs_per_s']:7.0f} | {r['vs_local']:8.2f} |")
    doc = {"args": vars(args), "store_bytes": size, "upload_s": upload_s, "get_latency_s": latency, "rows": rows,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
