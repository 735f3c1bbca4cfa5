"""Training throughput: pretraining steps/s with the real loader next to the same model fed
with synthetic in-memory tensors, in one run, so the ratio shows how much of a step the loader
hides (1.0: the loader costs nothing).

    python benchmarks/train_throughput.py [STORE] [--preset tiny] [--batch 8] [--input-size 64]
                                          [--steps 30] [--backend auto]

STORE defaults to demo/store.zarr. On a GPU it runs on the GPU (bf16, channels_last) and also
measures batch 64. Prints a table, writes benchmarks/results/train_throughput.json.

    python benchmarks/train_throughput.py --precision [--preset cpu] [--compile]

measures the CPU training step on in-memory tensors in fp32, bf16 autocast, channels_last, and both
(and torch.compile with --compile), all in one run, with whether the CPU computes bf16 natively
(AVX-512 BF16 or AMX): benchmarks/results/train_precision.json. `--cpu-bf16` (pretrain, finetune)
turns bf16 on for a CPU where this table shows it faster.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import torch

from models import SiameseSync, ssl_loss
from pairloader import PairLoader
from train.config import PRETRAIN_PRESETS


def _step(model, opt, x1, x2, s_lab, f_lab, gpu, bf16):
    with torch.autocast("cuda" if gpu else "cpu", dtype=torch.bfloat16, enabled=bf16):
        s, f = model(x1, x2)
    loss = ssl_loss(s.float(), f.float(), s_lab, f_lab)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def measure(store, cfg, steps: int, synthetic: bool) -> dict:
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    torch.manual_seed(0)
    model = SiameseSync(cfg.arch, cfg.fusion).to(device)
    if gpu and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    P, S = 3 * cfg.batch, cfg.input_size
    warm = 3
    if synthetic:
        x1, x2 = torch.randn(P, 3, S, S, device=device), torch.randn(P, 3, S, S, device=device)
        s_lab = torch.tensor([1, 0, -1] * cfg.batch, device=device)
        f_lab = torch.tensor([0, -1, 1] * cfg.batch, device=device)
        batches = ((x1, x2, s_lab, f_lab) for _ in range(steps + warm))
    else:
        loader = PairLoader(store, batch_size=cfg.batch, seed=0, backend=cfg.backend, workers=cfg.workers,
                            steps=steps + warm, sampler=cfg.sampler_config(),
                            device_id=0 if gpu and cfg.backend == "dali" else None)
        batches = ((b["x1"].to(device, non_blocking=True), b["x2"].to(device, non_blocking=True),
                    b["sync_label"].to(device), b["flip_label"].to(device)) for b in loader)
    for k, (x1, x2, s_lab, f_lab) in enumerate(batches):
        if k == warm:
            if gpu:
                torch.cuda.synchronize()
            t = time.perf_counter()
        _step(model, opt, x1, x2, s_lab, f_lab, gpu, gpu and cfg.bf16)
    if gpu:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "pairs_per_s": steps * P / dt}


def precision_step_rate(cfg, steps: int, bf16: bool, channels_last: bool, compiled: bool) -> dict:
    """CPU steps/s of the pretraining step on in-memory tensors in one numeric setting."""
    torch.manual_seed(0)
    model = SiameseSync(cfg.arch, cfg.fusion)
    P, S = 3 * cfg.batch, cfg.input_size
    x1, x2 = torch.randn(P, 3, S, S), torch.randn(P, 3, S, S)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x1, x2 = x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    net = torch.compile(model) if compiled else model
    s_lab, f_lab = torch.tensor([1, 0, -1] * cfg.batch), torch.tensor([0, -1, 1] * cfg.batch)
    for _ in range(3):
        _step(net, opt, x1, x2, s_lab, f_lab, False, bf16)
    t = time.perf_counter()
    for _ in range(steps):
        _step(net, opt, x1, x2, s_lab, f_lab, False, bf16)
    dt = time.perf_counter() - t
    return {"bf16": bf16, "channels_last": channels_last, "compile": compiled, "steps": steps,
            "steps_per_s": steps / dt}


def cpu_bf16_native() -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX tiles), from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_table(args) -> None:
    base = dataclasses.replace(PRETRAIN_PRESETS[args.preset], **({"batch": args.batch} if args.batch else {}))
    settings = [(False, False, False), (True, False, False), (False, True, False), (True, True, False)]
    if args.compile:
        settings += [(False, False, True), (True, True, True)]
    rows = [precision_step_rate(base, args.steps, *s) for s in settings]
    fp32 = rows[0]["steps_per_s"]
    native = cpu_bf16_native()
    print(f"\n{'setting':<30}{'steps/s':>9}{'vs fp32':>9}   ({base.arch}, batch {base.batch}, {base.input_size} px; "
          f"bf16 native: {'yes' if native else 'no'})")
    for r in rows:
        name = " + ".join(k for k in ("bf16", "channels_last", "compile") if r[k]) or "fp32"
        r["vs_fp32"] = r["steps_per_s"] / fp32
        print(f"{name:<30}{r['steps_per_s']:>9.2f}{r['vs_fp32']:>9.2f}")
    out = Path(args.out).with_name("train_precision.json")
    out.write_text(json.dumps({"device": f"CPU ({os.cpu_count()} cores)", "platform": platform.platform(),
                               "processor": platform.processor(), "bf16_native": native, "preset": args.preset,
                               "batch": base.batch, "input_size": base.input_size, "arch": base.arch,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", nargs="?", default="demo/store.zarr")
    ap.add_argument("--preset", default="tiny", choices=list(PRETRAIN_PRESETS))
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/train_throughput.json")
    ap.add_argument("--precision", action="store_true",
                    help="the CPU step in fp32 / bf16 / channels_last on in-memory tensors (train_precision.json)")
    ap.add_argument("--compile", action="store_true", help="with --precision: torch.compile rows too")
    args = ap.parse_args()
    if args.precision:
        return precision_table(args)
    base = PRETRAIN_PRESETS[args.preset]
    over = {k: v for k, v in {"batch": args.batch, "input_size": args.input_size, "backend": args.backend,
                              "workers": args.workers}.items() if v is not None}
    configs = [dataclasses.replace(base, **over)]
    if torch.cuda.is_available():
        configs.append(dataclasses.replace(configs[0], batch=64))
    rows = []
    for cfg in configs:
        real = measure(args.store, cfg, args.steps, synthetic=False)
        synth = measure(args.store, cfg, args.steps, synthetic=True)
        rows.append({"batch": cfg.batch, "pairs_per_batch": 3 * cfg.batch, "input_size": cfg.input_size,
                     "arch": cfg.arch, "backend": cfg.backend, "workers": cfg.workers,
                     "real_loader": real, "synthetic": synth,
                     "loader_hidden": real["steps_per_s"] / synth["steps_per_s"]})
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"\n{'arch':<10}{'batch':>6}{'px':>5}{'real steps/s':>14}{'synthetic steps/s':>19}{'ratio':>7}{'pairs/s':>9}")
    for r in rows:
        print(f"{r['arch']:<10}{r['batch']:>6}{r['input_size']:>5}{r['real_loader']['steps_per_s']:>14.2f}"
              f"{r['synthetic']['steps_per_s']:>19.2f}{r['loader_hidden']:>7.2f}{r['real_loader']['pairs_per_s']:>9.1f}")
    print(f"({device}; ratio = real / synthetic: the share of the step the loader does not cost)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": device, "platform": platform.platform(), "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
