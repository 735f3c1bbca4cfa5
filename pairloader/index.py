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
    sequence, camera index and frame. bg_camera, bg_subject [B]: the background bank's views;
    bg_pool [B'] int64: the bank rows of training-split views, the only ones substitution draws
    (no test-subject pixel reaches pretraining). seq_pose [F, 17, 3] float32 mm: every sequence's
    poses in the frame of one of its cameras (distances as in the world), sequence s starting at
    row pose_start[s] (-1: no poses); move_threshold: the store's motion threshold, mm.
    """

    unit_start: np.ndarray
    seq_len: np.ndarray
    anchors: np.ndarray
    row_seq: np.ndarray
    row_cam: np.ndarray
    row_t: np.ndarray
    bg_subject: np.ndarray
    bg_camera: np.ndarray
    bg_pool: np.ndarray
    seq_pose: np.ndarray
    pose_start: np.ndarray
    move_threshold: float
    crop_size: int
    split: str = "train"
    seq_every: np.ndarray | None = None

    def __post_init__(self):
        if self.seq_every is None:
            object.__setattr__(self, "seq_every", np.ones(len(self.seq_len), np.int64))

    def row(self, sequence: int, camera: int, frame: int) -> int:
        """Store row of frame t of camera index `camera` in `sequence` (KeyError if absent)."""
        start, every = int(self.unit_start[sequence, camera]), int(self.seq_every[sequence])
        if start < 0 or not 0 <= frame < self.seq_len[sequence] or frame % every:
            raise KeyError((sequence, camera, frame))
        return start + frame // every


def load_index(store: str | Path, split: str = "train", moving_only: bool = True, subjects=None) -> FrameIndex:
    """Read the index of a complete store. split: 'train' or 'test' (which rows are anchors);
    subjects: only these subjects' rows are anchors, and only their views' backgrounds are
    substituted (a validation subject held out of training; None: every subject of the split)."""
    g = S.open_store(store)
    S.require_complete(g, store)
    a = g.attrs
    cams = a["cameras"]
    status = g["unit_status"][:]
    n_seq = len(a["sequences"])
    unit_start = np.full((n_seq, len(cams)), -1, dtype=np.int64)
    seq_len = np.array([s["frames"] for s in a["sequences"]], dtype=np.int64)
    seq_every = np.array([s.get("every", 1) for s in a["sequences"]], dtype=np.int64)
    for u, st in zip(a["units"], status):
        if st == S.DONE:
            unit_start[u["sequence"], cams.index(u["camera"])] = u["start"]
    row_seq, row_cam, row_t = g["sequence"][:], g["camera"][:], g["frame"][:]
    multi_view = (unit_start >= 0).sum(axis=1) >= 2
    ok = S.row_mask(g, split, subjects, moving=True if moving_only else None) & multi_view[row_seq]
    bg_subject = g["bg_subject"][:].astype(np.int64)
    pool = [s for s in S.subjects_of(g, "train") if subjects is None or s in subjects]
    bg_pool = np.flatnonzero(np.isin(bg_subject, [a["subjects"].index(s) for s in pool]))
    if S.has_poses(g):
        seq_pose, pose_start = sequence_poses(g, unit_start, seq_len, every=seq_every)
        threshold = float(a["build"].get("move_threshold", 25.0))
    else:
        from h36m_prep.crops import silhouette_threshold

        seq_pose, pose_start = sequence_poses(g, unit_start, seq_len, "silhouette", seq_every)
        threshold = silhouette_threshold(a["build"]["move_silhouette"])
    return FrameIndex(unit_start, seq_len, np.flatnonzero(ok).astype(np.int64), row_seq.astype(np.int64),
                      row_cam.astype(np.int64), row_t.astype(np.int64), bg_subject,
                      g["bg_camera"][:].astype(np.int64), bg_pool.astype(np.int64), seq_pose, pose_start,
                      threshold, int(a["crop_size"]), split, seq_every)


def sequence_poses(g, unit_start: np.ndarray, seq_len: np.ndarray, source: str = "pose3d",
                   every: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(seq_pose [F, 17, 3] float32, pose_start [n_seq] int64): each sequence's poses in the real
    frame of its first stored camera, X = R_v^T (pose3d + (0, 0, |root_cam|)), mm. A rigid
    change of frame keeps distances, so motion measured here is motion in the world.
    source "silhouette": that camera's silhouettes instead, [F, 1, 1024] float32 0/1. every: a
    subsampled sequence has one entry per stored frame (frame t at pose_start + t // every)."""
    stored = -(-seq_len // (every if every is not None else 1))  # rows per unit
    first = np.array([u[u >= 0].min() if (u >= 0).any() else -1 for u in unit_start], np.int64)
    pose_start = np.full(len(seq_len), -1, np.int64)
    have = first >= 0
    pose_start[have] = np.concatenate([[0], np.cumsum(stored[have])[:-1]])
    rows = np.concatenate([np.arange(f, f + n) for f, n in zip(first[have], stored[have])] or [np.zeros(0, int)])
    if source == "silhouette":
        sil = g["silhouette"].get_orthogonal_selection((rows,)) if len(rows) else np.zeros((0, 32, 32))
        return sil.reshape(len(rows), 1, -1).astype(np.float32), pose_start
    if not len(rows):
        return np.zeros((0, 17, 3), np.float32), pose_start
    pose3d = g["pose3d"].get_orthogonal_selection((rows,)).astype(np.float64)
    R_v = g["R_v"].get_orthogonal_selection((rows,))
    depth = np.linalg.norm(g["root_cam"].get_orthogonal_selection((rows,)), axis=-1)
    pose3d[..., 2] += depth[:, None]
    return np.einsum("nji,nkj->nki", R_v, pose3d).astype(np.float32), pose_start
