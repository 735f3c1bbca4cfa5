"""Mask quality of a store built from the synthetic dataset: IoU of the stored masks against
the renderer's true silhouettes, warped with each row's own crop camera, and the two kinds of
error: the false-positive share (mask pixels the person does not cover: background that a
removed-background image keeps, the edge that would mirror with the person) and the
false-negative share (person pixels the mask misses).

    python benchmarks/mask_quality.py demo/store.zarr [--units 12] [--every 10]

Prints a table per (subject, camera), writes benchmarks/results/mask_quality.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from h36m_prep import store as S
from h36m_prep.geometry import crop_sampling_map
from h36m_prep.raw import calibration_for
from h36m_prep.synth.dataset import SynthConfig, render_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--units", type=int, default=12, help="(sequence, camera) units to check")
    ap.add_argument("--every", type=int, default=10, help="check every k-th frame")
    ap.add_argument("--out", default="benchmarks/results/mask_quality.json")
    args = ap.parse_args()
    g = S.open_store(args.store)
    raw = Path(g.attrs["raw"])
    cfg_doc = json.loads((raw / ".synth" / "config.json").read_text())
    cfg = SynthConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_doc.items()})
    cams = calibration_for(raw)
    size = g.attrs["crop_size"]
    status = g["unit_status"][:]
    done = [u for u, s in zip(g.attrs["units"], status) if s == S.DONE]
    pick = [done[i] for i in np.linspace(0, len(done) - 1, min(args.units, len(done))).round().astype(int)]
    rows = []
    for u in pick:
        seq = g.attrs["sequences"][u["sequence"]]
        cam = cams[seq["subject"]][u["camera"]]
        ious, fp, fn = [], [], []
        for t, (_, truth) in enumerate(render_video(cfg, seq["subject"], seq["name"], u["camera"], with_masks=True)):
            if t >= u["length"]:
                break
            if t % args.every:
                continue
            r = u["start"] + t
            mx, my = crop_sampling_map(g["R_v"][r], g["K"][r], cam, size)
            true = cv2.remap(truth.astype(np.uint8), mx, my, cv2.INTER_NEAREST).astype(bool)
            mask = g["masks"][r].astype(bool)
            ious.append((mask & true).sum() / max((mask | true).sum(), 1))
            fp.append((mask & ~true).sum() / max(mask.sum(), 1))
            fn.append((true & ~mask).sum() / max(true.sum(), 1))
        rows.append({"subject": seq["subject"], "sequence": seq["name"], "camera": u["camera"],
                     "frames": len(ious), "mean_iou": float(np.mean(ious)), "min_iou": float(np.min(ious)),
                     "false_positive_share": float(np.mean(fp)), "false_negative_share": float(np.mean(fn))})
        print(f"{seq['subject']:<5}{seq['name']:<14}{u['camera']:<10}{len(ious):>5}  IoU mean "
              f"{rows[-1]['mean_iou']:.3f}  min {rows[-1]['min_iou']:.3f}  false positives "
              f"{rows[-1]['false_positive_share']:.3f}  false negatives {rows[-1]['false_negative_share']:.3f}")
    overall = {k: float(np.mean([r[k] for r in rows])) for k in ("mean_iou", "false_positive_share",
                                                                  "false_negative_share")}
    print(f"over {len(rows)} units: IoU {overall['mean_iou']:.3f}, false-positive share "
          f"{overall['false_positive_share']:.3f}, false-negative share {overall['false_negative_share']:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"store": args.store, **overall, "units": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
