"""The pair sampler: every random choice of a batch, drawn in one numba function from
(seed, rank, step) and returned as plain arrays (paper, section 3.1).

For each anchor frame x(v1, t), three pairs:
  k = 3i     synchronized   (x(v1, t), x(v2, t)),  v2 != v1          sync 1, flip 0
  k = 3i + 1 unsynchronized (x(v1, t), x(v2', t2)), d_min < |t2 - t| < d_max   sync 0, flip -1
  k = 3i + 2 flipped        (x(v1, t), x(v2, t)) with one side mirrored         sync -1, flip 1
A random horizontal flip is applied to both images of a pair before the flipped pair is made,
so flip_label == (mirrored1 != mirrored2) wherever it is trained. The unsynchronized partner
shows motion (paper, footnote 1): some joint moved more than the store's motion threshold
between t and t2, so a subject who stands still never makes a rigid "unsynchronized" pair.

With share_anchor the three pairs of an anchor show the same anchor image (one view, one
background), each pair mirroring it or not, and the OpenCV backend renders it once; by default
(as in the paper) every image is drawn on its own. Each image gets a view of its crop (by
default the paper's centred 224 of 256; a window scale and shift jitter and, in the single-view
ablation, a rotation are options) and a background mode (kept / removed / substituted by a
background-bank crop of a random training view). A substituted background gets its own random
mirror, drawn independently of the person's: mirrored with the person it would reveal the
image's mirror state, and the flip label with it (paper, section 3.2).

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
VIEW = 0.875   # the side of the crop every output shows by default: the paper's 224 of 256
JITTER = {"window": (0.7875, 0.9625), "shift": 0.0625}  # the optional crop jitter
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """batch: anchors per batch (3 pairs each). out_size: output pixels. window: the side of
    the part of the store crop that the output shows, as a fraction of the crop, drawn from
    this range (default the paper's 224 of 256, no jitter; JITTER is the optional jitter);
    shift: the largest move of the window centre, as a fraction of the crop. Both independent
    of out_size. motion: unsynchronized partners must show motion (footnote 1)."""

    batch: int = 16
    d_min: int = 4
    d_max: int = 128
    out_size: int = 224
    window: tuple[float, float] = (VIEW, VIEW)
    shift: float = 0.0
    rotation: float = 0.0             # max rotation, degrees (single-view ablation: 15)
    bg_mix: tuple[float, float, float] = (0.0, 0.5, 0.5)  # kept : removed : substituted
    single_view: bool = False
    share_anchor: bool = False        # one anchor image per triplet (rendered once)
    motion: bool = True               # unsynchronized partners moved (footnote 1)

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
    int8; bg_index [P, 2] int64 (-1 unless substituted); bg_mirrored [P, 2] bool: whether the
    background shows mirrored in the output (substituted: its own random draw; kept: the image's
    mirror; removed: False); same_as [P, 2] int64: the flat image index (2 * pair + side) of an
    earlier image that this one equals up to a mirror, or -1."""

    rows: np.ndarray
    mirrored: np.ndarray
    sync_label: np.ndarray
    flip_label: np.ndarray
    affine: np.ndarray
    bg_mode: np.ndarray
    bg_index: np.ndarray
    bg_mirrored: np.ndarray
    same_as: np.ndarray

    def images(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat per-image view (image 2k is x1 of pair k, 2k + 1 its x2): rows, bg_mode,
        bg_index, bg_flip, affine [2P, 2, 3]. bg_flip: mirror the substituted background before
        the composite, so that after the warp (which mirrors the whole image) it shows as
        bg_mirrored says."""
        bg_flip = (self.bg_mode == SUBSTITUTED) & (self.bg_mirrored != self.mirrored)
        return (self.rows.reshape(-1), self.bg_mode.reshape(-1), self.bg_index.reshape(-1),
                bg_flip.reshape(-1), self.affine.reshape(-1, 2, 3))


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
def _moved(seq_pose, base, t, t2, threshold):
    """Whether some joint moved more than `threshold` mm between frames t and t2 of a sequence
    whose poses start at row `base` of seq_pose [F, 17, 3] (mm, one camera's frame); for a store
    without poses, seq_pose [F, 1, 1024] holds silhouettes and the threshold is in their units."""
    limit = threshold * threshold
    for j in range(seq_pose.shape[1]):
        d = 0.0
        for c in range(seq_pose.shape[2]):
            e = seq_pose[base + t2, j, c] - seq_pose[base + t, j, c]
            d += e * e
        if d > limit:
            return True
    return False


@njit(cache=True)
def _gap_counts(t, T, d_min, d_max):
    """(forward, backward) numbers of candidate partner frames t2, d_min < |t2 - t| < d_max,
    for frame t of a sequence of T frames."""
    return max(0, min(d_max - 1, T - 1 - t) - d_min), max(0, min(d_max - 1, t) - d_min)


@njit(cache=True)
def _unsync_offset(k, n_pos, d_min):
    """The k-th candidate gap of an anchor: d_min + 1 .. forward first, then backward."""
    return d_min + 1 + k if k < n_pos else -(d_min + 1 + k - n_pos)


@njit(cache=True)
def moving_partner_exists(anchors, row_seq, row_t, seq_len, seq_pose, pose_start, d_min, d_max, threshold,
                          seq_every):
    """[A] bool: the anchor has a stored frame t2, d_min < |t2 - t| < d_max, whose pose moved
    (threshold < 0, or a sequence without poses: any such frame). The farthest backward gaps
    are tried first: far gaps move most often, so the scan usually stops at once. seq_every [n_seq]:
    a subsampled sequence stores every e-th frame only (t = 0, e, 2e, ...; row t // e)."""
    out = np.zeros(anchors.shape[0], np.bool_)
    for i in range(anchors.shape[0]):
        a = anchors[i]
        seq, t = row_seq[a], row_t[a]
        e = seq_every[seq]
        n_pos, n_neg = _gap_counts(t, seq_len[seq], d_min, d_max)
        for k in range(n_pos + n_neg - 1, -1, -1):
            gap = _unsync_offset(k, n_pos, d_min)
            if gap % e != 0:
                continue
            if threshold < 0 or pose_start[seq] < 0 or _moved(seq_pose, pose_start[seq], t // e, (t + gap) // e,
                                                              threshold):
                out[i] = True
                break
    return out


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
               seq_len, bg_pool, d_min, d_max, crop, out_size, win_lo, win_hi, shift, rot_deg,
               p_kept, p_removed, single_view, share_anchor, seq_pose, pose_start, move_threshold, seq_every):
    """The plan of one batch; see the module docstring. Pure function of its arguments."""
    P = 3 * batch
    rows = np.empty((P, 2), np.int64)
    mirrored = np.zeros((P, 2), np.bool_)
    sync = np.empty(P, np.int8)
    flip = np.empty(P, np.int8)
    affine = np.empty((P, 2, 2, 3), np.float64)
    bg_mode = np.empty((P, 2), np.int8)
    bg_index = np.full((P, 2), -1, np.int64)
    bg_mirrored = np.zeros((P, 2), np.bool_)
    same_as = np.full((P, 2), -1, np.int64)
    n_bg = bg_pool.shape[0]
    gaps = np.empty(2 * max(d_max, 1), np.int64)  # the candidate gaps of one anchor
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
        # the unsynchronized frame: uniform over d_min < |dt| < d_max inside the sequence, among
        # the frames where the pose moved (footnote 1; the anchors all have one)
        n_pos, n_neg = _gap_counts(t, T, d_min, d_max)
        check = move_threshold >= 0 and pose_start[seq] >= 0
        e = seq_every[seq]  # a subsampled sequence: only frames t = 0, e, 2e, ... are stored, at row t // e
        n_ok = 0
        for k in range(n_pos + n_neg):
            gap = _unsync_offset(k, n_pos, d_min)
            if gap % e != 0:
                continue
            if not check or _moved(seq_pose, pose_start[seq], t // e, (t + gap) // e, move_threshold):
                gaps[n_ok] = gap
                n_ok += 1
        u, state = _uniform(state)
        dt = gaps[min(int(u * n_ok), n_ok - 1)]
        anchor_row = unit_start[seq, v1] + t // e
        rows[3 * i, 0], rows[3 * i, 1] = anchor_row, unit_start[seq, v2] + t // e
        rows[3 * i + 1, 0], rows[3 * i + 1, 1] = anchor_row, unit_start[seq, v2u] + (t + dt) // e
        rows[3 * i + 2, 0], rows[3 * i + 2, 1] = anchor_row, unit_start[seq, v2] + t // e
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
                    # the copy is the anchor image mirrored or not, its background with it
                    bg_mirrored[pair, 0] = bg_mirrored[3 * i, 0] != (mirrored[pair, 0] != mirrored[3 * i, 0])
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
                    bg_mode[pair, j] = KEPT
                    bg_mirrored[pair, j] = mirrored[pair, j]  # the image's own background
                elif u < p_kept + p_removed:
                    bg_mode[pair, j] = REMOVED
                else:
                    bg_mode[pair, j] = SUBSTITUTED
                    u, state = _uniform(state)
                    bg_index[pair, j] = bg_pool[min(int(u * n_bg), n_bg - 1)]
                    u, state = _uniform(state)
                    bg_mirrored[pair, j] = u < 0.5  # its own mirror, not the person's
    return rows, mirrored, sync, flip, affine, bg_mode, bg_index, bg_mirrored, same_as


class PairSampler:
    """Binds a FrameIndex and a SamplerConfig: plan(seed, step, rank, world_size) -> Plan.

    Anchors are the index's anchors that have an unsynchronized partner (with motion, unless
    cfg.motion is off); substituted backgrounds come from the index's bg_pool (training views)."""

    def __init__(self, index, cfg: SamplerConfig):
        self.index, self.cfg = index, cfg
        self.threshold = float(index.move_threshold) if cfg.motion else -1.0
        ok = moving_partner_exists(index.anchors, index.row_seq, index.row_t, index.seq_len, index.seq_pose,
                                   index.pose_start, cfg.d_min, cfg.d_max, self.threshold, index.seq_every)
        self.anchors = index.anchors[ok]
        if not len(index.anchors):
            raise ValueError(f"the store has no {index.split}-split frames to draw anchors from (moving frames of "
                             "sequences with at least two cameras)" + (
                                 "; a store built without a test split (a rig without --test-takes) has none"
                                 if index.split == "test" else ""))
        if not len(self.anchors):
            raise ValueError("no anchor frame has an unsynchronized partner (another frame d_min < |dt| < "
                             f"d_max of the same sequence{' that shows motion' if cfg.motion else ''}): "
                             f"sequences shorter than d_min + 2 = {cfg.d_min + 2} frames, subjects who never "
                             "move, or no rows of this split in the store")
        if cfg.bg_mix[2] > 0 and not len(index.bg_pool):
            raise ValueError("background substitution needs training views in the background bank, and "
                             "this store has none; choose another background mode")

    def plan(self, seed: int, step: int, rank: int = 0, world_size: int = 1) -> Plan:
        c, ix = self.cfg, self.index
        out = plan_batch(seed, rank, world_size, step, c.batch, self.anchors, ix.row_seq, ix.row_cam,
                         ix.row_t, ix.unit_start, ix.seq_len, ix.bg_pool, c.d_min, c.d_max,
                         ix.crop_size, c.out_size, c.window[0], c.window[1], c.shift, c.rotation,
                         c.bg_mix[0], c.bg_mix[1], c.single_view, c.share_anchor, ix.seq_pose,
                         ix.pose_start, self.threshold, ix.seq_every)
        return Plan(*out)
