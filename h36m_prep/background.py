"""Per-view median backgrounds: the static room, without the person.

For one subject and camera, a per-pixel median over frames sampled evenly across all of that
subject's sequences (paper, section 3.2), made robust without any label: at each pixel the
median is taken over the samples that agree with the value most samples agree with (within a
few grey levels), not over all of them. The room looks the same in every sample that shows it,
while a person who stands in one place for much of the footage still moves a little and looks
different from sample to sample, so the room wins the vote even where the person covers the
pixel in more than half of the samples, where the plain median leaves a ghost (README, "Median
backgrounds", measures it). Memory is bounded by the number of samples, not the video length.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numba import njit

from .raw import RawDataError, iter_rows, video_info


SEEK_GAP = 48  # frames: a pick at most this far ahead is reached by decoding forward; an OpenCV seek
SEEK_COST = 40  # costs about as much as decoding 40 frames (it decodes from well before the keyframe), measured


def spread(lengths: list[int], samples: int) -> list[np.ndarray]:
    """`samples` frames spread evenly over takes of these lengths, end to end (all of them when
    fewer): each take's picks, counted from its first frame."""
    total = sum(lengths)
    picks = np.unique(np.linspace(0, total - 1, min(samples, total)).round().astype(int))
    starts = np.cumsum([0] + list(lengths))
    return [picks[(picks >= a) & (picks < b)] - a for a, b in zip(starts[:-1], starts[1:])]


def sampling_cost(videos: list[tuple[Path, int]], samples: int, rate: float | None = None) -> int:
    """About how many frames `sample_frames` decodes for these picks (a seek counted as SEEK_COST):
    all of them when the picks are dense (short videos), a few per pick when they are far apart."""
    cost = 0
    for (path, _), local in zip(videos, spread([n for _, n in videos], samples)):
        if not len(local):
            continue
        if video_info(path, rate).variable:  # one pass from the start
            cost += int(local[-1]) + 1
            continue
        at = 0
        for t in local:
            cost += int(t - at) + 1 if 0 <= t - at <= SEEK_GAP else SEEK_COST + 1
            at = t + 1
    return cost


def sample_frames(videos: list[tuple[Path, int]], samples: int, skip_bad: bool = False,
                  rate: float | None = None, size: tuple[int, int] | None = None) -> list[tuple[int, int, np.ndarray]]:
    """Decode `samples` frames spread evenly over the concatenation of (video, usable frames),
    each video in one forward pass that seeks only across long gaps.

    -> [(video index, frame t, RGB frame [H, W, 3] uint8)], each resized to `size` (w, h; area
    averaging) as it is decoded when given. With skip_bad a video that fails to decode gives no
    samples (the build skips its sequence when it gets there).
    """
    def fit(frame):
        if size is None or (frame.shape[1], frame.shape[0]) == tuple(size):
            return frame
        return cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA)

    out = []
    for v, ((path, _), local) in enumerate(zip(videos, spread([n for _, n in videos], samples))):
        if not len(local):
            continue
        if video_info(path, rate).variable:  # rows placed by timestamp (at the store's rate): one pass, no seeking
            try:
                out += [(v, int(t), fit(f)) for t, f in zip(local, iter_rows(path, local, rate))]
            except RawDataError:
                if not skip_bad:
                    raise
            continue
        cap = cv2.VideoCapture(str(path))
        got, at = [], 0  # at: the frame the next read returns
        try:
            for t in local:
                if not 0 <= t - at <= SEEK_GAP:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, int(t))
                    at = t
                while at < t and cap.grab():  # a near pick: decoding forward is cheaper than a seek
                    at += 1
                ok, bgr = cap.read() if at == t else (False, None)
                at = t + 1
                if not ok:
                    if skip_bad:
                        got = []
                        break
                    raise RawDataError(f"{path}: cannot decode frame {t} (truncated?); replace the "
                                       "file or skip the sequence with --skip-bad")
                got.append((v, int(t), fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))))
        finally:
            cap.release()
        out += got
    if not out:
        raise RawDataError(f"{videos[0][0].parent}: no frame of this view could be decoded for the "
                           "median background; replace the videos")
    return out


@njit(cache=True, nogil=True)
def _channel_planes(stack, y, r, g, b):
    """Row y of every sample as three channel planes ([W, n] int16 each: one pixel's samples of one
    channel side by side in memory, so a sample's agreements are counted as vector operations)."""
    n, _, W, _ = stack.shape
    for x in range(W):
        for i in range(n):
            r[x, i] = stack[i, y, x, 0]
            g[x, i] = stack[i, y, x, 1]
            b[x, i] = stack[i, y, x, 2]


@njit(cache=True, nogil=True, inline="always")
def _plane_buffers(n, W):
    return np.empty((W, n), np.int16), np.empty((W, n), np.int16), np.empty((W, n), np.int16)


@njit(cache=True, nogil=True, inline="always")
def _winner(pr, pg, pb, tol):
    """The first sample with the most votes (samples that agree with it, itself included), as in a
    vote over all ordered pairs; pr, pg, pb: one pixel's samples of each channel ([n] int16).
    Each sample's votes are one branch-free count over all n samples (the compiler vectorizes it:
    4x faster than comparing each pair once with early exits, the same winners). Sample 0 is
    counted first: where it agrees with every sample (the room, seen in all of them) no sample can
    beat it, and the others are not counted."""
    n = len(pr)
    best, most = 0, -1
    for i in range(n):
        ri, gi, bi = pr[i], pg[i], pb[i]
        k = 0
        for j in range(n):
            k += (np.abs(pr[j] - ri) <= tol) & (np.abs(pg[j] - gi) <= tol) & (np.abs(pb[j] - bi) <= tol)
        if k > most:
            best, most = i, k
        if i == 0 and k == n:
            break
    return best


@njit(cache=True, nogil=True, inline="always")
def _median_agreeing(pr, pg, pb, best, tolerance, counts, out):
    """out [3]: the median of the samples that agree with sample `best`, counted, not sorted: they
    lie within `tolerance` of it, 2 tolerance + 1 grey levels. One pass over the samples counts all
    three channels (counts: [3, 2 tolerance + 1] scratch)."""
    rb, gb, bb = pr[best], pg[best], pb[best]
    counts[:] = 0
    k = 0
    for j in range(len(pr)):
        dr, dg, db = pr[j] - rb, pg[j] - gb, pb[j] - bb
        if abs(dr) <= tolerance and abs(dg) <= tolerance and abs(db) <= tolerance:
            counts[0, dr + tolerance] += 1
            counts[1, dg + tolerance] += 1
            counts[2, db + tolerance] += 1
            k += 1
    for c in range(3):
        lo, hi, seen = -1, 0, 0
        for v in range(counts.shape[1]):
            seen += counts[c, v]
            if lo < 0 and seen > (k - 1) // 2:
                lo = v
            if seen > k // 2:
                hi = v
                break
        base = (rb if c == 0 else gb if c == 1 else bb) - tolerance
        out[c] = np.uint8(np.round(0.5 * (lo + hi) + base))


@njit(cache=True, nogil=True)
def _plurality(stack, tolerance, out):
    """The vote and the median at full size, each row's channel planes made once for both."""
    n, H, W, _ = stack.shape
    r, g, b = _plane_buffers(n, W)
    counts = np.empty((3, 2 * tolerance + 1), np.int32)
    tol = np.int16(tolerance)
    for y in range(H):
        _channel_planes(stack, y, r, g, b)
        for x in range(W):
            _median_agreeing(r[x], g[x], b[x], _winner(r[x], g[x], b[x], tol), tolerance, counts, out[y, x])


@njit(cache=True, nogil=True)
def _vote(stack, tolerance, winner):
    """winner [H, W]: at each pixel the winning sample (`_winner`). stack [n, H, W, 3]."""
    n, H, W, _ = stack.shape
    r, g, b = _plane_buffers(n, W)
    tol = np.int16(tolerance)
    for y in range(H):
        _channel_planes(stack, y, r, g, b)
        for x in range(W):
            winner[y, x] = _winner(r[x], g[x], b[x], tol)


@njit(cache=True, nogil=True)
def _median_of_agreeing(stack, winner, scale, tolerance, out):
    """out [H, W, 3]: at each pixel the median of the samples that agree with the winner there
    (winner [ceil(H / scale), ceil(W / scale)]: the vote at 1/scale of the size)."""
    n, H, W, _ = stack.shape
    r, g, b = _plane_buffers(n, W)
    counts = np.empty((3, 2 * tolerance + 1), np.int32)
    for y in range(H):
        _channel_planes(stack, y, r, g, b)
        for x in range(W):
            _median_agreeing(r[x], g[x], b[x], winner[y // scale, x // scale], tolerance, counts, out[y, x])


def plurality_reference(stack: np.ndarray, tolerance: int = 8) -> np.ndarray:
    """plurality_background written out with numpy over every ordered pair of samples (memory
    n^2 H W: small images only; the test and the benchmark of the compiled vote)."""
    s = stack.astype(np.int32)
    agree = (np.abs(s[:, None] - s[None]) <= tolerance).all(axis=-1)  # [n, n, H, W]
    best = agree.sum(axis=1).argmax(axis=0)  # [H, W]: the first sample with the most votes
    chosen = np.take_along_axis(agree, best[None, None], axis=0)[0]  # [n, H, W]: agrees with it
    masked = np.where(chosen[..., None], s, 1 << 20)  # others sort last
    masked.sort(axis=0)
    k = chosen.sum(axis=0)[..., None]  # [H, W, 1]
    lo = np.take_along_axis(masked, ((k - 1) // 2)[None], axis=0)[0]
    hi = np.take_along_axis(masked, (k // 2)[None], axis=0)[0]
    return np.round(0.5 * (lo + hi)).astype(np.uint8)


def plurality_background(frames: list[np.ndarray], tolerance: int = 8, vote_scale: int = 1) -> np.ndarray:
    """[H, W, 3] uint8: at each pixel, the median of the samples whose colour lies within
    `tolerance` grey levels (every channel) of the sample that most samples lie within
    `tolerance` of. frames: [H, W, 3] uint8 each, the same view. No label is used.

    vote_scale k > 1: the winning sample is voted on the samples area-averaged to 1/k of the size
    (k^2 fewer pixels, and their noise averaged down), then the median is taken at full size over
    the samples that agree with it there (benchmarks/background_vote.py measures both against the
    room the synthetic renderer drew)."""
    stack = np.ascontiguousarray(np.stack(frames))
    if stack.ndim != 4 or stack.shape[-1] != 3:
        raise ValueError(f"frames of shape {stack.shape[1:]}, expected [H, W, 3] colour frames")
    out = np.empty(stack.shape[1:], np.uint8)
    if vote_scale == 1:
        _plurality(stack, int(tolerance), out)
        return out
    h, w = stack.shape[1:3]
    size = (-(-w // vote_scale), -(-h // vote_scale))
    small = np.stack([_area(f, size, vote_scale) for f in stack])
    winner = np.empty(small.shape[1:3], np.int16)
    _vote(small, int(tolerance), winner)
    _median_of_agreeing(stack, winner, int(vote_scale), int(tolerance), out)
    return out


def _area(frame: np.ndarray, size: tuple[int, int], k: int) -> np.ndarray:
    """frame area-averaged over k x k blocks (a partial block at the edge with its edge pixels repeated)."""
    h, w = frame.shape[:2]
    padded = cv2.copyMakeBorder(frame, 0, size[1] * k - h, 0, size[0] * k - w, cv2.BORDER_REPLICATE)
    return cv2.resize(padded, size, interpolation=cv2.INTER_AREA)


def median_background(frames: list[np.ndarray], person: list[np.ndarray] | None = None) -> np.ndarray:
    """[H, W, 3] uint8 per-pixel median of the frames, leaving out each frame's person region
    ([H, W] bool per frame). A pixel covered by the person in every sample falls back to the
    plain median. Works in bands of rows to bound the temporary memory.
    """
    stack = np.stack(frames)
    n, H = stack.shape[:2]
    covered = np.stack(person) if person else None  # [n, H, W] bool
    out = np.empty(stack.shape[1:], dtype=np.uint8)
    for i in range(0, H, 64):
        band = stack[:, i:i + 64]
        valid = None if covered is None else (~covered[:, i:i + 64]).sum(axis=0)[..., None]  # [h, W, 1]
        median = np.zeros(band.shape[1:], np.float32)
        if valid is None or (valid == 0).any():  # the plain median is needed somewhere
            plain = np.sort(band, axis=0).astype(np.float32)
            median = 0.5 * (plain[(n - 1) // 2] + plain[n // 2])
        if valid is not None:
            # excluded samples sort last as 256; the median of the k valid ones is at (k-1)//2, k//2
            masked = band.astype(np.int16)
            masked[np.broadcast_to(covered[:, i:i + 64, :, None], masked.shape)] = 256
            masked.sort(axis=0)
            lo = np.take_along_axis(masked, (np.maximum(valid - 1, 0) // 2)[None], 0)[0]
            hi = np.take_along_axis(masked, (valid // 2)[None], 0)[0]
            median = np.where(valid > 0, 0.5 * (lo + hi), median)
        out[i:i + 64] = np.round(median).astype(np.uint8)
    return out
