"""The frame index of a store: which rows are anchors, and (sequence, camera, frame) -> row.

Everything the sampler needs, as plain arrays read once from the store's small columns.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from h36m_prep import store as S


@dataclasses.dataclass(frozen=True)
class FrameIndex:
    """unit_start [n_seq, n_cam] int64: first store row of (sequence, camera), -1 if absent.
    seq_len [n_seq] int64: frames per sequence. anchors [A] int64: eligible anchor rows (train
    split, `moving`, complete, at least two cameras). row_seq, row_cam, row_t [N]: each row's
    sequence, camera index and frame. bg_camera, bg_subject [B]: the background bank's views.
    """

    unit_start: np.ndarray
    seq_len: np.ndarray
    anchors: np.ndarray
    row_seq: np.ndarray
    row_cam: np.ndarray
    row_t: np.ndarray
    row_split: np.ndarray
    bg_subject: np.ndarray
    bg_camera: np.ndarray
    crop_size: int

    def row(self, sequence: int, camera: int, frame: int) -> int:
        """Store row of frame t of camera index `camera` in `sequence` (KeyError if absent)."""
        start = int(self.unit_start[sequence, camera])
        if start < 0 or not 0 <= frame < self.seq_len[sequence]:
            raise KeyError((sequence, camera, frame))
        return start + frame


def load_index(store: str | Path, split: str = "train", moving_only: bool = True) -> FrameIndex:
    """Read the index of a complete store. split: 'train' or 'test' (which rows are anchors)."""
    g = S.open_store(store)
    S.require_complete(g, store)
    a = g.attrs
    cams = a["cameras"]
    status = g["unit_status"][:]
    n_seq = len(a["sequences"])
    unit_start = np.full((n_seq, len(cams)), -1, dtype=np.int64)
    seq_len = np.array([s["frames"] for s in a["sequences"]], dtype=np.int64)
    for u, st in zip(a["units"], status):
        if st == S.DONE:
            unit_start[u["sequence"], cams.index(u["camera"])] = u["start"]
    row_seq, row_cam, row_t = g["sequence"][:], g["camera"][:], g["frame"][:]
    row_split = g["split"][:]
    done = S.done_rows(g)
    multi_view = (unit_start >= 0).sum(axis=1) >= 2
    want = {"train": 0, "test": 1}[split]
    ok = done & (row_split == want) & multi_view[row_seq]
    if moving_only:
        ok &= g["moving"][:]
    return FrameIndex(unit_start, seq_len, np.flatnonzero(ok).astype(np.int64), row_seq.astype(np.int64),
                      row_cam.astype(np.int64), row_t.astype(np.int64), row_split,
                      g["bg_subject"][:].astype(np.int64), g["bg_camera"][:].astype(np.int64),
                      int(a["crop_size"]))
