"""How well `h36m-prep sync` recovers camera offsets: many random offset sets on the synthetic rig.

A synchronized synthetic rig (`h36m-prep synth --layout rig`, every camera holding the whole take)
is read once per camera; each trial then gives every camera of a take its own start (0 to
--spread seconds late) and its own stop (up to a quarter of that early) by cutting the camera's
signals, which is what dropping those frames from its video would give, and runs each method on
the cut take. Reported per method: the share of cameras whose offset is exact, within one frame,
the mean absolute error, the share left unresolved (named, not guessed), and the seconds a take
takes (reading its videos once, then the search).

    python benchmarks/sync_accuracy.py                    # writes benchmarks/results/sync_accuracy.json
    python benchmarks/sync_accuracy.py --model runs/ssl   # and the learned method (sync-train sync)

The learned method reads the rig's frames from a store of it (built once, --crop-size px) and
the features of every frame once; a trial cuts the features as it cuts the signals.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from h36m_prep.rig import discover_rig, rig_calibration
from h36m_prep.sync import read_track, sync_tracks
from h36m_prep.synth.rig import RigSynthConfig, write_rig


def trial(tracks: dict, cams, method: str, rng: np.random.Generator, spread: int, name: str,
          learned: tuple | None = None) -> dict:
    """One random offset set: each camera starts 0..spread frames late and stops up to spread/4
    early. learned: (sync model, the take's features entry) for the learned method."""
    n = min(t.frames for t in tracks.values())
    firsts = {c: int(rng.integers(0, spread + 1)) for c in tracks}
    ends = {c: n - int(rng.integers(0, spread // 4 + 1)) for c in tracks}
    late = max(firsts.values())
    truth = {c: late - f for c, f in firsts.items()}
    t0 = time.perf_counter()
    if method == "learned":
        from train.synchronize import sync_features

        sync, entry = learned
        cut = {"fps": entry["fps"], "features": {c: f[firsts[c]:ends[c]] for c, f in entry["features"].items()},
               "seen": {c: s[firsts[c]:ends[c]] for c, s in entry["seen"].items()}}
        r = sync_features(name, cut, sync)
    else:
        r = sync_tracks(name, {c: t.cut(firsts[c], ends[c]) for c, t in tracks.items()}, cams, method)
    seconds = time.perf_counter() - t0
    if r.offsets:
        low = min(truth[c] for c in r.offsets)
        errors = {c: r.offsets[c] - (truth[c] - low) for c in r.offsets}
    else:
        errors = {}
    return {"truth": truth, "offsets": r.offsets, "errors": errors, "unresolved": sorted(r.unresolved),
            "doubtful": r.doubtful(), "seconds": seconds}


def _share(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def summarize(trials: list[dict], cameras: int) -> dict:
    errs = np.array([e for t in trials for e in t["errors"].values()], np.float64)
    total = len(trials) * cameras
    return {"cameras": total, "exact": float((errs == 0).sum() / total), "within_1": float((np.abs(errs) <= 1).sum() / total),
            "mean_abs_error": float(np.abs(errs).mean()) if len(errs) else None,
            "max_abs_error": float(np.abs(errs).max()) if len(errs) else None,
            "unresolved": float(sum(len(t["unresolved"]) for t in trials) / total),
            # "may be a frame off": the share of the cameras written wrong that are flagged, and of the exact ones
            "wrong_flagged": _share([c in t.get("doubtful", ()) for t in trials for c, e in t["errors"].items() if e]),
            "exact_flagged": _share([c in t.get("doubtful", ()) for t in trials for c, e in t["errors"].items() if not e]),
            "search_seconds": float(np.mean([t["seconds"] for t in trials]))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rig", default="runs/sync_rig", help="a synchronized synthetic rig (written if missing)")
    ap.add_argument("--frames", type=int, default=420, help="frames per take of the rig written")
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--spread", type=float, default=2.0, help="seconds: the latest start")
    ap.add_argument("--trials", type=int, default=30, help="offset sets per take")
    ap.add_argument("--methods", nargs="+", default=["motion", "geometry", "auto"],
                    help="label-free methods measured (auto: motion and geometry together, the rig being calibrated)")
    ap.add_argument("--model", default=None, help="a pretraining run: adds the learned method (sync-train sync)")
    ap.add_argument("--crop-size", type=int, default=128, help="px: crops of the rig's store for the learned method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/sync_accuracy.json")
    args = ap.parse_args(argv)
    rig = Path(args.rig)
    cfg = RigSynthConfig(frames=args.frames, scale=args.scale)
    write_rig(rig, cfg, progress=False)
    cams = rig_calibration(rig)
    learned = {}
    if args.model:
        from h36m_prep.build import BuildConfig, build
        from train.evaluate import load_sync_model
        from train.synchronize import take_features

        args.methods = [*args.methods, "learned"]
        store = rig.with_name(rig.name + f"_store{args.crop_size}.zarr")
        build(rig, store, BuildConfig(layout="rig", crop_size=args.crop_size), workers=2, progress=False)
        sync = load_sync_model(args.model)
        t0 = time.perf_counter()
        learned = {take: (sync, entry) for take, entry in take_features(sync, store).items()}
        learned_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    results, read_seconds = {m: [] for m in args.methods}, {}
    for take in discover_rig(rig, cams):
        t0 = time.perf_counter()
        tracks = {c: read_track(p, c) for c, p in take.videos.items()}
        read_seconds[take.name] = time.perf_counter() - t0
        spread = int(round(args.spread * cfg.fps))
        for k in range(args.trials):
            seed = rng.integers(1 << 31)
            for m in args.methods:  # every method on the same cut
                results[m].append({"take": take.name, **trial(tracks, cams, m, np.random.default_rng(seed), spread,
                                                               take.name, learned.get(take.name))})
    cameras = len(cams)
    doc = {"rig": str(rig), "rig_config": cfg.to_json(), "spread_s": args.spread, "trials_per_take": args.trials,
           "read_seconds_per_take": read_seconds, "model": args.model,
           "learned_feature_seconds": learned_seconds if args.model else None,
           "summary": {m: summarize(t, cameras) for m, t in results.items()},
           "per_take": {m: {take: summarize([t for t in tr if t["take"] == take], cameras) for take in read_seconds}
                        for m, tr in results.items()},
           "trials": results}
    print(f"| method | take | cameras | exact | within 1 frame | mean abs error | unresolved | wrong flagged | "
          f"exact flagged | search s/take |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    share = lambda x: "-" if x is None else f"{x:.0%}"  # noqa: E731
    for m, per in doc["per_take"].items():
        for take, s in per.items():
            mae = "-" if s["mean_abs_error"] is None else f"{s['mean_abs_error']:.2f}"
            print(f"| {m} | {take} | {s['cameras']} | {s['exact']:.0%} | {s['within_1']:.0%} | {mae} | "
                  f"{s['unresolved']:.0%} | {share(s['wrong_flagged'])} | {share(s['exact_flagged'])} | "
                  f"{s['search_seconds']:.1f} |")
    print(f"reading the videos: {', '.join(f'{t} {s:.1f} s' for t, s in read_seconds.items())} "
          f"({cameras} cameras x {args.frames} frames)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    return doc


if __name__ == "__main__":
    main()
