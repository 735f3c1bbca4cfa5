"""How well label-free crops hold the person, on the synthetic rig (`h36m-prep synth --layout rig`).

The rig's true poses3d.npy are moved aside before the build (the build must not need them), then
put back here for checking. Per (take, camera) and overall:

- joints inside: the share of true joints whose projection lies inside the row's crop footprint
  (`box`, video pixels), overall and the worst row;
- centre distance: the distance of the joints' centre (in crop pixels) from the crop centre, as a
  share of the crop side (mean and worst row);
- mask IoU: the store's mask against the renderer's true silhouette sampled into the crop.

    python benchmarks/rig_crops.py [--root runs/rig_crops] [--frames 300] [--workers 2]

writes benchmarks/results/rig_crops.json and prints a table. Rerun reuses the rig and the store.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from h36m_prep import store as S  # noqa: E402
from h36m_prep.build import BuildConfig, build  # noqa: E402
from h36m_prep.geometry import crop_sampling_map, project, project_virtual, world_to_camera  # noqa: E402
from h36m_prep.rig import rig_calibration  # noqa: E402
from h36m_prep.synth.rig import RigSynthConfig, render_take, take_name, write_rig  # noqa: E402


def crop_quality(store: str | Path, rig: str | Path, poses: dict[str, np.ndarray],
                 silhouettes: dict | None = None) -> dict:
    """{units: [{take, camera, joints_inside, worst_row_inside, centre_mean, centre_max, mask_iou}], overall}.
    poses: {take: [T, 17, 3] world mm}; silhouettes: {(take, camera): [T, H, W] bool} or None."""
    g = S.open_store(store)
    a = g.attrs
    cams = rig_calibration(rig)
    size = a["crop_size"]
    box, K, R_v = g["box"][:], g["K"][:], g["R_v"][:]
    units, inside_all, centre_all, ious = [], [], [], []
    for u in a["units"]:
        take = a["sequences"][u["sequence"]]["name"]
        rows = np.arange(u["start"], u["start"] + u["length"])
        pose, cam = poses[take][:u["length"]], cams[u["camera"]]
        uv = project(pose, cam)
        b = box[rows]
        inside = ((uv[..., 0] >= b[:, None, 0]) & (uv[..., 0] <= b[:, None, 2])
                  & (uv[..., 1] >= b[:, None, 1]) & (uv[..., 1] <= b[:, None, 3]))
        X_v = np.einsum("tij,tkj->tki", R_v[rows], world_to_camera(pose, cam))
        centre = np.linalg.norm(project_virtual(X_v, K[rows]).mean(1) - (size - 1) / 2, axis=-1) / size
        row = {"take": take, "camera": u["camera"], "joints_inside": float(inside.mean()),
               "worst_row_inside": float(inside.mean(1).min()), "centre_mean": float(centre.mean()),
               "centre_max": float(centre.max())}
        if silhouettes is not None:
            sil = silhouettes[(take, u["camera"])]
            masks = g["masks"][u["start"]:u["start"] + u["length"]]
            inter = union = 0
            for t in range(u["length"]):
                mx, my = crop_sampling_map(R_v[rows[t]], K[rows[t]], cam, size)
                truth = cv2.remap(sil[t].astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderValue=0) > 0
                inter += int((truth & (masks[t] > 0)).sum())
                union += int((truth | (masks[t] > 0)).sum())
            row["mask_iou"] = inter / max(union, 1)
            ious.append(row["mask_iou"])
        units.append(row)
        inside_all.append(inside)
        centre_all.append(centre)
    inside, centre = np.concatenate(inside_all), np.concatenate(centre_all)
    overall = {"rows": int(len(inside)), "joints_inside": float(inside.mean()),
               "rows_below_98": int((inside.mean(1) < 0.98).sum()), "worst_row_inside": float(inside.mean(1).min()),
               "centre_mean": float(centre.mean()), "centre_max": float(centre.max()),
               "rows_centre_over_0.2": int((centre > 0.2).sum())}
    if ious:
        overall["mask_iou_mean"] = float(np.mean(ious))
    return {"units": units, "overall": overall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="runs/rig_crops")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/rig_crops.json")
    args = ap.parse_args()
    root = Path(args.root)
    rig, aside, store = root / "rig", root / "poses_aside", root / "store.zarr"
    cfg = RigSynthConfig(frames=args.frames)
    t0 = time.perf_counter()
    write_rig(rig, cfg, workers=args.workers)
    aside.mkdir(parents=True, exist_ok=True)
    for action in cfg.takes:
        src = rig / take_name(action) / "poses3d.npy"
        if src.exists():
            shutil.move(src, aside / f"{take_name(action)}.npy")
    synth_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = build(rig, store, BuildConfig(), workers=args.workers)
    build_s = time.perf_counter() - t0
    poses = {p.stem: np.load(p) for p in aside.glob("*.npy")}
    sil = {(take_name(a), c): np.stack([m for _, m in render_take(cfg, a, c, with_masks=True)])
           for a in cfg.takes for c in rig_calibration(rig)}
    result = crop_quality(store, rig, poses, sil)
    result |= {"config": cfg.to_json(), "build_seconds": round(build_s, 1), "synth_seconds": round(synth_s, 1),
               "store_rows": summary["rows"], "moving_fraction": float(S.open_store(store)["moving"][:].mean())}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("| take | camera | joints inside | worst row | centre mean | centre max | mask IoU |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for u in result["units"]:
        print(f"| {u['take']} | {u['camera']} | {u['joints_inside']:.4f} | {u['worst_row_inside']:.3f} | "
              f"{u['centre_mean']:.3f} | {u['centre_max']:.3f} | {u['mask_iou']:.3f} |")
    o = result["overall"]
    print(f"| all | | {o['joints_inside']:.4f} | {o['worst_row_inside']:.3f} | {o['centre_mean']:.3f} | "
          f"{o['centre_max']:.3f} | {o['mask_iou_mean']:.3f} |")
    print(f"{o['rows']} rows, {o['rows_below_98']} with fewer than 98 % of the joints inside, "
          f"{o['rows_centre_over_0.2']} with the centre farther than 0.2 of the side; {args.out}")


if __name__ == "__main__":
    main()
