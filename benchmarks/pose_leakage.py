"""How much of the test subjects' motion the training subjects also perform (pose leakage).

    python benchmarks/pose_leakage.py demo/store.zarr [--every 8] [--train-every 1]

For every `every`-th test frame (one camera per sequence), the nearest training pose after
Procrustes alignment (rotation, scale, translation: what PMPJPE measures), among every
`train-every`-th training frame (default all). A test pose with a training pose within a few millimetres was, in
effect, seen in training, and a test error on it is optimistic. The synthetic dataset draws
every subject's motion from the same seven motion-capture takes, retargeted and replayed at
other speeds, so this is where its test split is weakest. Prints a table per action, writes
benchmarks/results/pose_leakage.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from h36m_prep import store as S
from h36m_prep.geometry.procrustes import procrustes

THRESHOLDS = (20.0, 40.0, 60.0)  # mm, mean joint distance after alignment


def nearest(test: np.ndarray, train: np.ndarray, chunk: int = 64) -> np.ndarray:
    """[N] mm: for each test pose [N, 17, 3], the smallest Procrustes-aligned mean joint
    distance to any of the training poses [M, 17, 3]."""
    out = np.empty(len(test))
    for i in range(0, len(test), chunk):
        q = test[i:i + chunk]
        a, b = np.broadcast_arrays(train[None], q[:, None])  # [n, M, 17, 3]: align each train pose onto q
        aligned = procrustes(a.reshape(-1, 17, 3), b.reshape(-1, 17, 3))[0].reshape(a.shape)
        out[i:i + chunk] = np.linalg.norm(aligned - b, axis=-1).mean(-1).min(-1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", nargs="?", default="demo/store.zarr")
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--train-every", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/pose_leakage.json")
    args = ap.parse_args()
    g = S.open_store(args.store)
    done, frame, cam = S.done_rows(g), g["frame"][:], g["camera"][:]
    seq = g["sequence"][:]
    first_cam = np.zeros(len(seq), bool)  # one camera per sequence: the pose is the same in all
    for s in np.unique(seq):
        rows = np.flatnonzero(seq == s)
        first_cam[rows[cam[rows] == cam[rows].min()]] = True
    pick = done & first_cam & (frame % args.every == 0)
    gallery = done & first_cam & (frame % args.train_every == 0)
    pose = g["pose3d"][:].astype(np.float64)
    action = g["action"][:]
    test, train = np.flatnonzero(pick & S.row_mask(g, "test")), np.flatnonzero(gallery & S.row_mask(g, "train"))
    d = nearest(pose[test], pose[train])
    rows = {}
    for name, sel in [("all", np.ones(len(test), bool))] + [(a, action[test] == i) for i, a in enumerate(g.attrs["actions"])]:
        if sel.any():
            rows[name] = {"test_poses": int(sel.sum()), "median_mm": float(np.median(d[sel])),
                          **{f"within_{int(t)}mm": float((d[sel] <= t).mean()) for t in THRESHOLDS}}
    print(f"{len(test)} test poses (every {args.every}th frame) against {len(train)} training poses (every "
          f"{args.train_every}th frame), one camera per sequence")
    print("| test poses of | n | nearest training pose, median | " + " | ".join(f"within {int(t)} mm" for t in THRESHOLDS) + " |")
    for name, r in rows.items():
        print(f"| {name} | {r['test_poses']} | {r['median_mm']:.1f} mm | "
              + " | ".join(f"{r[f'within_{int(t)}mm']:.0%}" for t in THRESHOLDS) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"store": args.store, "every": args.every, "train_every": args.train_every, "by_action": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
