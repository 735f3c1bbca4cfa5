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
from collections import namedtuple

import numpy as np
from numba import njit

from .draws import view_affine as _affine
from .draws import key as _key
from .draws import permute as _permute
from .draws import uniform as _uniform

KEPT, REMOVED, SUBSTITUTED = 0, 1, 2
VIEW = 0.875   # the side of the crop every output shows by default: the paper's 224 of 256
JITTER = {"window": (0.7875, 0.9625), "shift": 0.0625}  # the optional crop jitter


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
    recompress: tuple[int, int] = (0, 0)  # JPEG quality range of a re-compression of every crop (0, 0: off)

    def __post_init__(self):
        lo, hi = self.recompress
        if (lo, hi) != (0, 0) and not 1 <= lo <= hi <= 100:
            raise ValueError(f"recompress {self.recompress}: a JPEG quality range LO <= HI within 1-100, or (0, 0)")
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
    quality: np.ndarray | None = None  # [P, 2] int16: the JPEG quality each crop is re-compressed at (0: not)

    def qualities(self) -> np.ndarray:
        """[2P] int: each image's re-compression quality, plan.images() order (0: none)."""
        return np.zeros(self.rows.size, np.int16) if self.quality is None else self.quality.reshape(-1)

    def images(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat per-image view (image 2k is x1 of pair k, 2k + 1 its x2): rows, bg_mode,
        bg_index, bg_flip, affine [2P, 2, 3]. bg_flip: mirror the substituted background before
        the composite, so that after the warp (which mirrors the whole image) it shows as
        bg_mirrored says."""
        bg_flip = (self.bg_mode == SUBSTITUTED) & (self.bg_mirrored != self.mirrored)
        return (self.rows.reshape(-1), self.bg_mode.reshape(-1), self.bg_index.reshape(-1),
                bg_flip.reshape(-1), self.affine.reshape(-1, 2, 3))


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


# The kernel's inputs, grouped and named (numba takes named tuples of numbers and arrays).
Frames = namedtuple("Frames", "anchors row_seq row_cam row_t unit_start seq_len seq_every bg_pool seq_pose pose_start")
View = namedtuple("View", "crop out_size win_lo win_hi shift rot_deg")
Draws = namedtuple("Draws", "d_min d_max p_kept p_removed single_view share_anchor move_threshold")


@njit(cache=True)
def _partner_views(state, seq, v1, unit_start, single_view):
    """(v2, v2u, state): the synchronized and the unsynchronized partner's cameras, each uniform
    over the sequence's other cameras (v1 itself in the single-view ablation)."""
    v2, v2u = v1, v1
    if single_view:
        return v2, v2u, state
    n_other = 0
    for c in range(unit_start.shape[1]):
        if c != v1 and unit_start[seq, c] >= 0:
            n_other += 1
    for which in range(2):
        u, state = _uniform(state)
        pick = int(u * n_other)
        for c in range(unit_start.shape[1]):
            if c != v1 and unit_start[seq, c] >= 0:
                if pick == 0:
                    if which == 0:
                        v2 = c
                    else:
                        v2u = c
                    break
                pick -= 1
    return v2, v2u, state


@njit(cache=True)
def _unsync_gap(state, seq, t, fr, d, gaps):
    """(dt, state): the unsynchronized partner's gap, uniform over d_min < |dt| < d_max inside the
    sequence among the stored frames where the pose moved (footnote 1; every anchor has one).
    gaps: scratch space for the candidates."""
    n_pos, n_neg = _gap_counts(t, fr.seq_len[seq], d.d_min, d.d_max)
    check = d.move_threshold >= 0 and fr.pose_start[seq] >= 0
    e = fr.seq_every[seq]  # a subsampled sequence: only frames t = 0, e, 2e, ... are stored, at row t // e
    n_ok = 0
    for k in range(n_pos + n_neg):
        gap = _unsync_offset(k, n_pos, d.d_min)
        if gap % e != 0:
            continue
        if not check or _moved(fr.seq_pose, fr.pose_start[seq], t // e, (t + gap) // e, d.move_threshold):
            gaps[n_ok] = gap
            n_ok += 1
    u, state = _uniform(state)
    return gaps[min(int(u * n_ok), n_ok - 1)], state


@njit(cache=True)
def _draw_view(state, out, mirror, view):
    """Draw one image's crop window (scale, shift, rotation) into out [2, 3]; -> (u1, u2, u3, u4, state)."""
    u1, state = _uniform(state)
    u2, state = _uniform(state)
    u3, state = _uniform(state)
    u4, state = _uniform(state)
    _affine(out, u1, u2, u3, u4, mirror, view.crop, view.out_size, view.win_lo, view.win_hi, view.shift, view.rot_deg)
    return u1, u2, u3, u4, state


@njit(cache=True)
def _draw_background(state, mirror, bg_pool, d):
    """One image's background: (mode, bank index or -1, shown mirrored, state). Kept: the image's
    own, mirrored with it; removed; substituted: a bank crop of a training view with its own mirror."""
    u, state = _uniform(state)
    if u < d.p_kept:
        return KEPT, -1, mirror, state
    if u < d.p_kept + d.p_removed:
        return REMOVED, -1, False, state
    u, state = _uniform(state)
    index = bg_pool[min(int(u * bg_pool.shape[0]), bg_pool.shape[0] - 1)]
    u, state = _uniform(state)
    return SUBSTITUTED, index, u < 0.5, state  # its own mirror, not the person's


@njit(cache=True)
def plan_batch(seed, rank, world_size, step, batch, fr, view, d):
    """The plan of one batch (see the module docstring); fr: Frames, view: View, d: Draws. A pure
    function of its arguments."""
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
    gaps = np.empty(2 * max(d.d_max, 1), np.int64)
    n = fr.anchors.shape[0]
    for i in range(batch):
        pos = (np.int64(step) * world_size + rank) * batch + i
        epoch, within = pos // n, pos % n
        a = fr.anchors[_permute(within, n, _key(seed, 0x5EED, epoch))]
        state = _key(seed, 0xA11CE, pos)
        seq, v1, t = fr.row_seq[a], fr.row_cam[a], fr.row_t[a]
        v2, v2u, state = _partner_views(state, seq, v1, fr.unit_start, d.single_view)
        dt, state = _unsync_gap(state, seq, t, fr, d, gaps)
        e = fr.seq_every[seq]
        anchor_row = fr.unit_start[seq, v1] + t // e
        rows[3 * i, 0], rows[3 * i, 1] = anchor_row, fr.unit_start[seq, v2] + t // e
        rows[3 * i + 1, 0], rows[3 * i + 1, 1] = anchor_row, fr.unit_start[seq, v2u] + (t + dt) // e
        rows[3 * i + 2, 0], rows[3 * i + 2, 1] = anchor_row, fr.unit_start[seq, v2] + t // e
        sync[3 * i], flip[3 * i] = 1, 0
        sync[3 * i + 1], flip[3 * i + 1] = 0, -1
        sync[3 * i + 2], flip[3 * i + 2] = -1, 1
        a1 = a2 = a3 = a4 = 0.0  # the anchor image's crop window
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
                if d.share_anchor and j == 0 and k > 0:  # the triplet's anchor image, mirrored or not
                    _affine(affine[pair, 0], a1, a2, a3, a4, mirrored[pair, 0], view.crop, view.out_size,
                            view.win_lo, view.win_hi, view.shift, view.rot_deg)
                    bg_mode[pair, 0], bg_index[pair, 0] = bg_mode[3 * i, 0], bg_index[3 * i, 0]
                    # the copy is the anchor image mirrored or not, its background with it
                    bg_mirrored[pair, 0] = bg_mirrored[3 * i, 0] != (mirrored[pair, 0] != mirrored[3 * i, 0])
                    same_as[pair, 0] = 6 * i
                    continue
                u1, u2, u3, u4, state = _draw_view(state, affine[pair, j], mirrored[pair, j], view)
                if k == 0 and j == 0:
                    a1, a2, a3, a4 = u1, u2, u3, u4
                mode, index, shown, state = _draw_background(state, mirrored[pair, j], fr.bg_pool, d)
                bg_mode[pair, j], bg_index[pair, j], bg_mirrored[pair, j] = mode, index, shown
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
        ix = index
        self.frames = Frames(self.anchors, ix.row_seq, ix.row_cam, ix.row_t, ix.unit_start, ix.seq_len, ix.seq_every,
                             ix.bg_pool, ix.seq_pose, ix.pose_start)
        self.view = View(int(ix.crop_size), int(cfg.out_size), float(cfg.window[0]), float(cfg.window[1]),
                         float(cfg.shift), float(cfg.rotation))
        self.draws = Draws(int(cfg.d_min), int(cfg.d_max), float(cfg.bg_mix[0]), float(cfg.bg_mix[1]),
                           bool(cfg.single_view), bool(cfg.share_anchor), float(self.threshold))

    def plan(self, seed: int, step: int, rank: int = 0, world_size: int = 1) -> Plan:
        arrays = plan_batch(seed, rank, world_size, step, self.cfg.batch, self.frames, self.view, self.draws)
        lo, hi = self.cfg.recompress
        quality = _qualities(seed, rank, world_size, step, self.cfg.batch, lo, hi) if hi else None
        return Plan(*arrays, quality=quality)


@njit(cache=True)
def _qualities(seed, rank, world_size, step, batch, lo, hi):
    """[3 batch, 2] int16: a JPEG quality in [lo, hi] for every image of a batch, from its own
    stream (the other draws of the plan are the same with re-compression on or off)."""
    out = np.empty((3 * batch, 2), np.int16)
    for i in range(batch):
        state = _key(seed, 0x1FE6, (np.int64(step) * world_size + rank) * batch + i)
        for k in range(3):
            for j in range(2):
                u, state = _uniform(state)
                out[3 * i + k, j] = lo + min(int(u * (hi - lo + 1)), hi - lo)
    return out
