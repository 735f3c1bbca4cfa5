"""`sync-train sync RIG --model RUN`: the pretrained sync head as a synchronizer.

The paper's classifier tells whether two views show the same instant. Over a whole take that is a
synchronizer: for two cameras a and b, every frame of a is compared with every frame of b (the
Siamese features of each frame are computed once; the fusion and the linear sync head are cheap),
and a lag's score is the mean sync logit of the frame pairs it puts together (frame i of a with
frame i + lag of b, over the frames both hold and both show someone in). The best lag of each
pair and its margin go through the same solver as the label-free methods
(`h36m_prep.sync.offsets_from_scores`), and an ambiguous camera is named, never guessed.

The frames come from a store of the rig built without offsets (`h36m-prep build RIG STORE`: each
camera's rows are its video's frames from the first), made here when none is given. The head was
trained to tell pairs at least `d_min` frames apart (4 by default), so lags closer than that are
told apart by the shape of the score's peak only: expect the label-free methods to be the more
exact, and this one to help where the motion is periodic or small.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from h36m_prep import store as S
from h36m_prep.store import StoreReader
from h36m_prep.sync import MAX_LAG_S, TakeSync, _pairs, offsets_from_scores

LEARNED_MARGIN = 0.15  # the best lag's score must beat the best lag outside its neighbourhood by this share of the range
MIN_SHARED = 8         # frame pairs a lag needs to be scored


def take_features(sync, store) -> dict[str, dict]:
    """{take: {"fps", "features": {camera: [T, F]}, "seen": {camera: [T] bool}}} for every take
    of a rig store: the network's features of every stored frame (rows in frame order), and
    whether its mask shows someone."""
    g = S.open_store(store)
    S.require_complete(g, store)
    reader, crop = StoreReader(store), int(g.attrs["crop_size"])
    status = g["unit_status"][:]
    sil = g["silhouette"] if "silhouette" in g else None
    out: dict[str, dict] = {}
    for u, unit in enumerate(g.attrs["units"]):
        if status[u] != S.DONE:
            continue
        take = g.attrs["sequences"][unit["sequence"]]["name"]
        rows = np.arange(unit["start"], unit["start"] + unit["length"])
        entry = out.setdefault(take, {"fps": float(g.attrs["fps"]) / unit.get("every", 1), "features": {},
                                      "seen": {}})
        entry["features"][unit["camera"]] = sync.features(reader, rows, crop)
        seen = sil[unit["start"]:unit["start"] + unit["length"]].reshape(len(rows), -1).any(axis=1) if sil is not None \
            else g["masks"].get_orthogonal_selection((rows,)).reshape(len(rows), -1).any(axis=1)
        entry["seen"][unit["camera"]] = np.asarray(seen, bool)
    return out


@torch.no_grad()
def logit_matrix(sync, fa: torch.Tensor, fb: torch.Tensor, block: int = 256) -> np.ndarray:
    """[Ta, Tb]: the sync logit of frame i of a with frame j of b."""
    from models.siamese import fuse

    rows = []
    for i in range(0, len(fa), block):
        f1 = fa[i:i + block, None].expand(-1, len(fb), -1)
        f2 = fb[None].expand(len(f1), -1, -1)
        fused = fuse(f1.reshape(-1, fa.shape[1]), f2.reshape(-1, fb.shape[1]), sync.model.fusion)
        rows.append(sync.model.omega_sync(fused)[:, 0].reshape(len(f1), len(fb)).float().numpy())
    return np.concatenate(rows)


def lag_scores(logits: np.ndarray, seen_a: np.ndarray, seen_b: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """The mean logit along each lag's diagonal (frame i of a with i + lag of b), over the frame
    pairs in which both show someone; -inf where fewer than MIN_SHARED."""
    out = np.full(len(lags), -np.inf)
    for k, lag in enumerate(lags):
        ia, ib = _pairs(len(seen_a), len(seen_b), int(lag))
        diag = logits[np.arange(ia.start, ia.stop), np.arange(ib.start, ib.stop)]
        both = seen_a[ia] & seen_b[ib]
        if both.sum() >= MIN_SHARED:
            out[k] = float(diag[both].mean())
    return out


def sync_features(take: str, entry: dict, sync, max_lag_s: float = MAX_LAG_S) -> TakeSync:
    """The offsets of one take from its frames' features (take_features)."""
    feats, seen = entry["features"], entry["seen"]
    unresolved = {c: "shows nobody in most of its frames (empty masks); point it at the person or leave it out"
                  for c, s in seen.items() if s.mean() < 0.3}
    cache: dict = {}

    def score(a, b, lags):
        if (a, b) not in cache:
            cache[(a, b)] = logit_matrix(sync, feats[a], feats[b])
        return lag_scores(cache[(a, b)], seen[a], seen[b], lags)

    return offsets_from_scores(take, {c: len(f) for c, f in feats.items()}, entry["fps"], score, LEARNED_MARGIN, True,
                               "learned", max_lag_s, unresolved)


def sync_rig_learned(rig: str | Path, run: str | Path, store: str | Path | None = None, max_lag_s: float = MAX_LAG_S,
                     crop_size: int = 128, workers: int = 0, progress=print) -> list[TakeSync]:
    """Every take's offsets by the sync head of pretraining run `run`; store: a build of the rig
    without offsets (made in a temporary folder when None, `crop_size` px crops)."""
    from h36m_prep.build import BuildConfig, build

    from .evaluate import load_sync_model

    sync = load_sync_model(run)
    with tempfile.TemporaryDirectory(prefix="sync-store-") as tmp:
        if store is None:
            store = Path(tmp) / "store.zarr"
            progress(f"building the rig's frames into {store} (no offsets) ...")
            build(_without_offsets(Path(rig), Path(tmp) / "rig"), store, BuildConfig(layout="rig", crop_size=crop_size),
                  workers=workers, progress=False)
        progress(f"features of every frame ({run}) ...")
        takes = take_features(sync, store)
        return [sync_features(take, entry, sync, max_lag_s) for take, entry in sorted(takes.items())]


def _without_offsets(rig: Path, view: Path) -> Path:
    """A view of the rig (links to its takes and calibration) without its offsets.toml: every
    camera's rows then start at its video's first frame."""
    from h36m_prep.rig import OFFSETS

    view.mkdir()
    for child in rig.iterdir():
        if child.name != OFFSETS:
            (view / child.name).symlink_to(child.resolve(), target_is_directory=child.is_dir())
    return view
