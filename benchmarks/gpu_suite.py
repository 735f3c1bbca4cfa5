"""Everything a GPU machine has to measure, in one script, in phases that each fit one call:

    python benchmarks/gpu_suite.py data  --root /tmp/gpu                 # synth + store on that machine
    python benchmarks/gpu_suite.py bench --root /tmp/gpu --out DIR       # GPU tests, loader and training throughput
    python benchmarks/gpu_suite.py ssl   --root /tmp/gpu --out DIR       # SSL vs random init, protocol S1

`data` writes the synthetic dataset (`--frames` per sequence, 500 px) and its stores under ROOT
(LZ4 crops, and JPEG-90 crops for the nvJPEG path).
`bench` runs `pytest -m gpu`, `benchmarks/loader_throughput.py` (its DALI GPU row included when
DALI is installed) and `benchmarks/train_throughput.py` (paper preset: ResNet-18, 224 px, batch
16 and `--big-batch`). `ssl` runs the larger comparison: pretrain (paper preset, `--pretrain-steps`)
-> finetune under protocol S1 from it and from random init, frozen and unfrozen
(`--finetune-steps`) -> eval all three ->
a table. Finished stages are kept; a stage still running at `--minutes` is stopped with Ctrl-C
(which writes its checkpoint) and the next call of the same phase resumes it. Results (JSON, the
reports, the logs) are copied to --out.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class OutOfTime(Exception):
    pass


def run(cmd: list[str], deadline: float, log: Path) -> None:
    """Run cmd, its output appended to log; past the deadline it gets SIGINT (a training command
    then writes its checkpoint) and OutOfTime is raised."""
    print("$", " ".join(cmd), flush=True)
    with open(log, "a") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT_DIR)
        while p.poll() is None:
            if time.time() > deadline:
                p.send_signal(signal.SIGINT)
                p.wait()
                raise OutOfTime(f"{Path(cmd[0]).name} {cmd[1]}")
            time.sleep(1)
    if p.returncode:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}; see {log}")


def data(args, deadline: float) -> None:
    raw, store = args.root / "raw", args.root / "store.zarr"
    run([str(BIN / "h36m-prep"), "synth", str(raw), "--frames", str(args.frames)], deadline, args.root / "data.log")
    run([str(BIN / "h36m-prep"), "build", str(raw), str(store)], deadline, args.root / "data.log")
    run([str(BIN / "h36m-prep"), "build", str(raw), str(args.root / "store_jpeg.zarr"), "--image-codec", "jpeg:90"],
        deadline, args.root / "data.log")


def bench(args, deadline: float) -> None:
    store, res = str(args.root / "store.zarr"), args.out
    run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], deadline, res / "pytest_gpu.log")
    run([sys.executable, "benchmarks/loader_throughput.py", store, "--out", str(res / "loader_throughput.json")],
        deadline, res / "bench.log")
    jpeg = args.root / "store_jpeg.zarr"  # the DALI GPU row decodes its JPEG files with nvJPEG
    if jpeg.exists():
        run([sys.executable, "benchmarks/loader_throughput.py", str(jpeg), "--out",
             str(res / "loader_throughput_jpeg.json")], deadline, res / "bench.log")
    for batch in (16, args.big_batch):
        run([sys.executable, "benchmarks/train_throughput.py", store, "--preset", "paper", "--batch", str(batch),
             "--out", str(res / f"train_throughput_b{batch}.json")], deadline, res / "bench.log")


def ssl(args, deadline: float) -> None:
    store, root = str(args.root / "store.zarr"), args.root / "ssl"
    root.mkdir(parents=True, exist_ok=True)
    stages = [("pretrain", ["pretrain", "--preset", args.preset, "--steps", str(args.pretrain_steps),
                            "--checkpoint-every", "1000", "--log-every", "100"])]
    arms = (("ssl", str(root / "pretrain"), "stages:3"), ("random", "random", "stages:3"),
            ("random_unfrozen", "random", "none"))
    for name, init, frozen in arms:
        stages.append((f"finetune_{name}", ["finetune", "--preset", args.preset, "--protocol", "S1",
                                            "--init", init, "--freeze", frozen, "--steps", str(args.finetune_steps),
                                            "--checkpoint-every", "1000", "--log-every", "100"]))
    for name, cmd in stages:
        out = root / name
        if (out / "metrics.json").exists():
            continue
        resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
        run([str(BIN / "sync-train"), *cmd, "--store", store, "--out", str(out), *resume], deadline,
            args.out / "ssl.log")
    rows = {}
    runs = ("pretrain", *(f"finetune_{name}" for name, _, _ in arms))
    for name, _, _ in arms:
        rep = args.out / f"eval_{name}"
        run([str(BIN / "sync-train"), "eval", "--ckpt", str(root / f"finetune_{name}"), "--store", store,
             "--out", str(rep)], deadline, args.out / "ssl.log")
        rows[name] = json.loads((rep / "report.json").read_text())["overall"]
    pre = json.loads((root / "pretrain" / "metrics.json").read_text())
    summary = {"pretext": pre, "protocol": "S1", "test": rows,
               "seconds": {n: json.loads((root / n / "metrics.json").read_text())["seconds"]
                           for n in runs}}
    (args.out / "ssl_vs_random.json").write_text(json.dumps(summary, indent=1))
    for n in runs:
        for f in ("config.json", "log.jsonl", "metrics.json"):
            shutil.copy(root / n / f, args.out / f"{n}_{f}")
    print(json.dumps(summary, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["data", "bench", "ssl"])
    ap.add_argument("--root", type=Path, default=Path("/tmp/gpu"), help="where the data and runs live")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu"), help="where results go")
    ap.add_argument("--minutes", type=float, default=9.0, help="stop (resumably) after this long")
    ap.add_argument("--frames", type=int, default=1000, help="frames per synthetic sequence")
    ap.add_argument("--big-batch", type=int, default=64)
    ap.add_argument("--preset", default="paper", help="training presets of the ssl phase")
    ap.add_argument("--pretrain-steps", type=int, default=20_000)
    ap.add_argument("--finetune-steps", type=int, default=5_000)
    args = ap.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + 60 * args.minutes
    try:
        {"data": data, "bench": bench, "ssl": ssl}[args.phase](args, deadline)
    except OutOfTime as e:
        print(f"out of time in {e}; run the same phase again to continue", flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
