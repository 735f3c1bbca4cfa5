"""The pair sampler: every random choice of a batch, drawn in one numba function from
(seed, rank, step) and returned as plain arrays (paper, section 3.1).

For each anchor frame x(v1, t), three pairs:
  k = 3i     synchronized   (x(v1, t), x(v2, t)),  v2 != v1          sync 1, flip 0
  k = 3i + 1 unsynchronized (x(v1, t), x(v2', t2)), d_min < |t2 - t| < d_max   sync 0, flip -1
  k = 3i + 2 flipped        (x(v1, t), x(v2, t)) with one side mirrored         sync -1, flip 1
A random horizontal flip is applied to both images of a pair before the flipped pair is made,
so flip_label == (mirrored1 != mirrored2) wherever it is trained. With share_anchor the three
pairs of an anchor show the same anchor image (one crop jitter, one background), each pair
mirroring it or not, and the OpenCV backend renders it once; by default (as in the paper) every
image is drawn on its own. Each image also gets a crop
jitter (window scale, shift, and in the single-view ablation a rotation) and a background mode
(kept / removed / substituted by a background-bank crop of a random view).

Anchors are visited in a pseudo-random order per epoch (a keyed Feistel permutation of the
anchor list); global position p = (step * world_size + rank) * batch + i, so ranks read
disjoint anchors and the plan of a step does not depend on anything but its arguments.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from numba import njit

KEPT, REMOVED, SUBSTITUTED = 0, 1, 2
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """batch: anchors per batch (3 pairs each). out_size: output pixels. window: the side of
    the part of the store crop that the output shows, as a fraction of the crop (the paper's
    224 of 256 is 0.875; the default jitters it by +-10 %); shift: the largest move of the
    window centre, as a fraction of the crop. Both independent of out_size."""

    batch: int = 16
    d_min: int = 4
    d_max: int = 128
    out_size: int = 224
    window: tuple[float, float] = (0.7875, 0.9625)
    shift: float = 0.0625
    rotation: float = 0.0             # max rotation, degrees (single-view ablation: 15)
    bg_mix: tuple[float, float, float] = (0.0, 0.5, 0.5)  # kept : removed : substituted
    single_view: bool = False
    share_anchor: bool = False        # one anchor image per triplet (rendered once)

    def __post_init__(self):
        if not 0 <= self.d_min < self.d_max - 1:
            raise ValueError(f"need 0 <= d_min < d_max - 1, got d_min={self.d_min}, d_max={self.d_max}")
        if abs(sum(self.bg_mix) - 1) > 1e-6 or min(self.bg_mix) < 0:
            raise ValueError(f"bg_mix {self.bg_mix} must be three non-negative weights summing to 1")


@dataclasses.dataclass(frozen=True)
class Plan:
    """One batch, P = 3 * batch pairs. rows [P, 2] store rows; mirrored [P, 2] bool;
    sync_label, flip_label [P] int8 (1, 0, or -1: not trained); affine [P, 2, 2, 3]: output pixel
    (x, y, 1) -> store-crop pixel (pixel centres at integers), mirror included; bg_mode [P, 2]
    int8; bg_index [P, 2] int64 (-1 unless substituted); same_as [P, 2] int64: the flat image
    index (2 * pair + side) of an earlier image that this one equals up to a mirror, or -1."""

    rows: np.ndarray
    mirrored: np.ndarray
    sync_label: np.ndarray
    flip_label: np.ndarray
    affine: np.ndarray
    bg_mode: np.ndarray
    bg_index: np.ndarray
    same_as: np.ndarray

    def images(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat per-image view (image 2k is x1 of pair k, 2k + 1 its x2): rows, bg_mode,
        bg_index, affine [2P, 2, 3]."""
        return (self.rows.reshape(-1), self.bg_mode.reshape(-1), self.bg_index.reshape(-1),
                self.affine.reshape(-1, 2, 3))


@njit(cache=True)
def _mix(x):
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def _key(a, b, c):
    return _mix(_mix(_mix(np.uint64(a)) ^ np.uint64(b)) ^ np.uint64(c))


@njit(cache=True)
def _uniform(state):
    """-> (uniform in [0, 1), next state)."""
    state = _mix(state)
    return float(state >> np.uint64(11)) * (1.0 / 9007199254740992.0), state


@njit(cache=True)
def _permute(p, n, key):
    """A keyed bijection of [0, n): 4-round Feistel network with cycle walking."""
    bits = 2
    while (np.uint64(1) << np.uint64(bits)) < np.uint64(n):
        bits += 2
    half = np.uint64(bits // 2)
    mask = (np.uint64(1) << half) - np.uint64(1)
    x = np.uint64(p)
    while True:
        left, right = x >> half, x & mask
        for r in range(4):
            left, right = right, left ^ (_mix(right ^ _mix(key + np.uint64(r))) & mask)
        x = (left << half) | right
        if x < np.uint64(n):
            return np.int64(x)


@njit(cache=True)
def _affine(out, u_scale, u_shift_x, u_shift_y, u_rot, mirror, crop, out_size, win_lo, win_hi, shift, rot_deg):
    """Output pixel -> store-crop pixel for a window of side crop * (win_lo..win_hi) centred
    within shift * crop of the crop centre, turned by up to rot_deg, mirrored if asked."""
    w = crop * (win_lo + (win_hi - win_lo) * u_scale)
    k = w / out_size
    cx = (crop - 1) / 2.0 + shift * crop * (2 * u_shift_x - 1)
    cy = (crop - 1) / 2.0 + shift * crop * (2 * u_shift_y - 1)
    th = math.radians(rot_deg * (2 * u_rot - 1))
    c, s = math.cos(th), math.sin(th)
    sgn = -1.0 if mirror else 1.0
    co = (out_size - 1) / 2.0
    a, b = c * sgn * k, -s * k
    cc, d = s * sgn * k, c * k
    out[0, 0], out[0, 1], out[0, 2] = a, b, cx - a * co - b * co
    out[1, 0], out[1, 1], out[1, 2] = cc, d, cy - cc * co - d * co


@njit(cache=True)
def plan_batch(seed, rank, world_size, step, batch, anchors, row_seq, row_cam, row_t, unit_start,
               seq_len, n_bg, d_min, d_max, crop, out_size, win_lo, win_hi, shift, rot_deg,
               p_kept, p_removed, single_view, share_anchor):
    """The plan of one batch; see the module docstring. Pure function of its arguments."""
    P = 3 * batch
    rows = np.empty((P, 2), np.int64)
    mirrored = np.zeros((P, 2), np.bool_)
    sync = np.empty(P, np.int8)
    flip = np.empty(P, np.int8)
    affine = np.empty((P, 2, 2, 3), np.float64)
    bg_mode = np.empty((P, 2), np.int8)
    bg_index = np.full((P, 2), -1, np.int64)
    same_as = np.full((P, 2), -1, np.int64)
    n = anchors.shape[0]
    n_cams = unit_start.shape[1]
    for i in range(batch):
        pos = (np.int64(step) * world_size + rank) * batch + i
        epoch, within = pos // n, pos % n
        a = anchors[_permute(within, n, _key(seed, 0x5EED, epoch))]
        state = _key(seed, 0xA11CE, pos)
        seq, v1, t = row_seq[a], row_cam[a], row_t[a]
        T = seq_len[seq]
        # partner views: a different camera of the same sequence (the same one if single-view)
        v2, v2u = v1, v1
        if not single_view:
            n_other = 0
            for c in range(n_cams):
                if c != v1 and unit_start[seq, c] >= 0:
                    n_other += 1
            for which in range(2):
                u, state = _uniform(state)
                pick = int(u * n_other)
                for c in range(n_cams):
                    if c != v1 and unit_start[seq, c] >= 0:
                        if pick == 0:
                            if which == 0:
                                v2 = c
                            else:
                                v2u = c
                            break
                        pick -= 1
        # the unsynchronized frame: uniform over d_min < |dt| < d_max inside the sequence
        n_pos = max(0, min(d_max - 1, T - 1 - t) - d_min)
        n_neg = max(0, min(d_max - 1, t) - d_min)
        u, state = _uniform(state)
        r = int(u * (n_pos + n_neg))
        dt = d_min + 1 + r if r < n_pos else -(d_min + 1 + r - n_pos)
        anchor_row = unit_start[seq, v1] + t
        rows[3 * i, 0], rows[3 * i, 1] = anchor_row, unit_start[seq, v2] + t
        rows[3 * i + 1, 0], rows[3 * i + 1, 1] = anchor_row, unit_start[seq, v2u] + t + dt
        rows[3 * i + 2, 0], rows[3 * i + 2, 1] = anchor_row, unit_start[seq, v2] + t
        sync[3 * i], flip[3 * i] = 1, 0
        sync[3 * i + 1], flip[3 * i + 1] = 0, -1
        sync[3 * i + 2], flip[3 * i + 2] = -1, 1
        a1 = a2 = a3 = a4 = 0.0  # the anchor image's crop jitter
        for k in range(3):
            pair = 3 * i + k
            u, state = _uniform(state)
            both = u < 0.5  # the consistent random flip of the whole pair
            mirrored[pair, 0], mirrored[pair, 1] = both, both
            if k == 2:  # then one side, either one, is mirrored on top
                u, state = _uniform(state)
                side = 0 if u < 0.5 else 1
                mirrored[pair, side] = not mirrored[pair, side]
            for j in range(2):
                if share_anchor and j == 0 and k > 0:  # the triplet's anchor image, mirrored or not
                    _affine(affine[pair, 0], a1, a2, a3, a4, mirrored[pair, 0], crop, out_size,
                            win_lo, win_hi, shift, rot_deg)
                    bg_mode[pair, 0], bg_index[pair, 0] = bg_mode[3 * i, 0], bg_index[3 * i, 0]
                    same_as[pair, 0] = 6 * i
                    continue
                u1, state = _uniform(state)
                u2, state = _uniform(state)
                u3, state = _uniform(state)
                u4, state = _uniform(state)
                if k == 0 and j == 0:
                    a1, a2, a3, a4 = u1, u2, u3, u4
                _affine(affine[pair, j], u1, u2, u3, u4, mirrored[pair, j], crop, out_size,
                        win_lo, win_hi, shift, rot_deg)
                u, state = _uniform(state)
                if u < p_kept:
                    bg_mode[pair, j] = 0
                elif u < p_kept + p_removed:
                    bg_mode[pair, j] = 1
                else:
                    bg_mode[pair, j] = 2
                    u, state = _uniform(state)
                    bg_index[pair, j] = min(int(u * n_bg), n_bg - 1)
    return rows, mirrored, sync, flip, affine, bg_mode, bg_index, same_as


def unsync_possible(index, d_min: int, d_max: int) -> np.ndarray:
    """[A] bool: the anchor has at least one frame t2 with d_min < |t2 - t| < d_max."""
    t = index.row_t[index.anchors]
    T = index.seq_len[index.row_seq[index.anchors]]
    n_pos = np.maximum(0, np.minimum(d_max - 1, T - 1 - t) - d_min)
    n_neg = np.maximum(0, np.minimum(d_max - 1, t) - d_min)
    return (n_pos + n_neg) > 0


class PairSampler:
    """Binds a FrameIndex and a SamplerConfig: plan(seed, step, rank, world_size) -> Plan."""

    def __init__(self, index, cfg: SamplerConfig):
        self.index, self.cfg = index, cfg
        self.anchors = index.anchors[unsync_possible(index, cfg.d_min, cfg.d_max)]
        if not len(self.anchors):
            raise ValueError("no anchor frame has an unsynchronized partner: sequences shorter than "
                             f"d_min + 2 = {cfg.d_min + 2} frames, or no train rows in the store")

    def plan(self, seed: int, step: int, rank: int = 0, world_size: int = 1) -> Plan:
        c, ix = self.cfg, self.index
        out = plan_batch(seed, rank, world_size, step, c.batch, self.anchors, ix.row_seq, ix.row_cam,
                         ix.row_t, ix.unit_start, ix.seq_len, len(ix.bg_subject), c.d_min, c.d_max,
                         ix.crop_size, c.out_size, c.window[0], c.window[1], c.shift, c.rotation,
                         c.bg_mix[0], c.bg_mix[1], c.single_view, c.share_anchor)
        return Plan(*out)
