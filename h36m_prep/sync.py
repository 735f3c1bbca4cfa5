"""`h36m-prep sync RIG`: every camera's frame offset in every take, from the videos alone.

Cameras started by hand (phones, action cameras, webcams) are tens of frames apart, and the
pretext then trains on wrong labels: its "synchronized" pairs are not. Two label-free methods,
each usable alone, score every candidate lag between two cameras of a take:

  motion    (no calibration) the person's motion seen by each camera, as signals over time: how
            much their image changes from frame to frame in horizontal bands of their box (head
            and arms, trunk and hands, legs: upright cameras agree on which is which), and how
            fast that amount changes. Each signal is high-passed and standardized; a lag's score
            is their mean correlation over the frames both cameras hold.
  geometry  (with calibration) epipolar tangents (Sinha and Pollefeys, ICPR 2004): the two
            planes through the baseline of a calibrated pair that touch the person's silhouette
            are the same planes seen from both cameras at the same instant, so their angles over
            time are one signal seen twice; a lag's score is their correlation, as for motion.
  auto      motion and geometry together when the rig is calibrated (their scores added find the
            peak; the tangents, weighed TANGENT_WEIGHT times, place it between frames: two views'
            motion signals can peak a frame apart on a take of little motion, while the tangents
            match in 3D but lose precision on small silhouettes), motion alone when it is not.

The pairwise lags of all camera pairs, each weighted by its confidence (the margin of the best
lag's score over the best lag outside its neighbourhood), give each camera's offset by weighted
least squares; pairs that disagree with the solution by more than a frame are dropped and the
solution redone. A camera whose offset rests on no confident pair is named, never guessed.

Offsets follow offsets.toml's convention: row t of a take is frame t + offset of the camera's
video; the camera that started last has offset 0.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np

from .errors import ToolkitError
from .geometry import Camera, undistort
from .raw import RawDataError, iter_frames, video_info

SIDE = 320              # px: the longer side frames are read at (at most; a smaller video is read as it is)
OUTLINE_SIDE = 640      # px: the same for the silhouettes' outlines (the epipolar tangents' precision:
                        # docs/rig.md; at 320 px they placed 87 % of a pointing take's cameras exactly, 98 %)
TANGENT_WEIGHT = 2.0    # the tangents' weight against motion in placing a lag between frames (chosen on the
                        # synthetic rigs, docs/rig.md: 1 gave 93 % exact on a pointing take, 2 97 %; the
                        # tangents alone missed on silhouettes ~50 px tall)
BACKGROUND_SAMPLES = 48  # frames spread over a video: its median background
THRESHOLD = 20          # grey levels: a pixel differs from the background (or the last frame) by more
MAX_LAG_S = 2.0         # s: the default search, each way
MIN_OVERLAP = 0.5       # of the shorter video: the largest lag keeps at least this much overlap
MARGIN = 2.0            # a lag's score must beat the best lag outside its neighbourhood by this (motion: z units)
BANDS = 3               # the person's box in horizontal bands (head and arms, trunk and hands, legs)
NOISE = 6               # grey levels of frame-to-frame change taken as noise
MIN_SEEN = 0.3          # of its frames: a camera that sees someone in fewer cannot be synchronized
METHODS = ("auto", "motion", "geometry")
TANGENT_WINDOW_S = 1.0  # s: the tangent angles' high-pass (chosen on benchmarks/sync_accuracy.py's rig: 0.25-2 s)
WEDGE = math.radians(150)  # a silhouette spanning more of the planes about a baseline holds its epipole
DOUBT = 0.5             # frames: a camera whose pairs disagree with its offset by more may be a frame off
QUICK_TOLERANCE_S = 0.1  # s: the build's quick check warns about larger lags only


class SyncError(ToolkitError, ValueError):
    """A take that cannot be synchronized; the message names it and what would help."""


@dataclasses.dataclass
class Track:
    """One camera of one take, read once at low resolution."""

    camera: str
    path: Path
    fps: float
    scale: float                 # full-resolution pixels per low-resolution pixel
    energy: np.ndarray           # [T] share of pixels changed since the last frame
    bands: np.ndarray            # [T, BANDS] the change since the last frame in horizontal bands of the person's box
    seen: np.ndarray             # [T] bool: someone in the foreground
    outline: list                # [T] the silhouette's outline, [P, 2] full-resolution pixels; None where
                                 # nobody is seen or the silhouette touches the frame's edge (cut off)

    @property
    def frames(self) -> int:
        return len(self.energy)

    def cut(self, first: int, end: int) -> "Track":
        """The track of frames [first, end) alone: what a camera started `first` frames late and
        stopped at `end` would have recorded."""
        return dataclasses.replace(self, energy=self.energy[first:end], bands=self.bands[first:end],
                                   seen=self.seen[first:end], outline=self.outline[first:end])


def read_track(path: str | Path, camera: str, rate: float | None = None, limit: int | None = None,
               outline: bool = True) -> Track:
    """The signals of one video (its first `limit` frames), streamed: the change and the person's
    box at SIDE px, the silhouette's outline (unless `outline` is False) at OUTLINE_SIDE px, each
    against the median of BACKGROUND_SAMPLES frames spread over the video."""
    from .background import sample_frames

    info = video_info(path, rate)
    n = info.frames if limit is None else min(limit, info.frames)
    coarse = _size(info.width, info.height, SIDE)
    fine = _size(info.width, info.height, OUTLINE_SIDE)
    samples = [f for _, _, f in sample_frames([(Path(path), n)], BACKGROUND_SAMPLES, rate=rate, size=fine)]
    background = np.median(np.stack([_resized(f, coarse) for f in samples]), axis=0).astype(np.uint8)
    same = fine == coarse  # a video of at most SIDE px: one mask serves both
    fine_background = np.median(np.stack(samples), axis=0).astype(np.uint8) if outline and not same else None
    del samples
    energy, bands, seen = np.zeros(n), np.zeros((n, BANDS)), np.zeros(n, bool)
    outlines: list = [None] * n
    kernel = np.ones((3, 3), np.uint8)
    box, last = None, None
    for t, frame in enumerate(iter_frames(path, n, rate=rate)):
        frame = _resized(frame, fine)
        f = _resized(frame, coarse)
        if last is not None:
            energy[t] = (_change(f, last) > THRESHOLD).mean()
            if box is not None:  # the change since the last frame, band by band down the person's last box
                y0, y1, x0, x1 = box
                change = cv2.subtract(_change(f[y0:y1, x0:x1], last[y0:y1, x0:x1]), NOISE).astype(np.float64)
                edges = np.linspace(0, y1 - y0, BANDS + 1).round().astype(int)
                bands[t] = [change[edges[k]:edges[k + 1]].sum() for k in range(BANDS)]
                bands[t] /= max(1, (y1 - y0) * (x1 - x0))
        last = f
        mask = cv2.morphologyEx(_foreground(f, background), cv2.MORPH_OPEN, kernel)
        ys, xs = np.nonzero(mask)
        if len(ys) < max(4, 0.001 * mask.size):
            box = None
            continue
        seen[t] = True
        if outline:
            fine_mask = mask if same else cv2.morphologyEx(_foreground(frame, fine_background), cv2.MORPH_OPEN,
                                                           kernel)
            outlines[t] = _outline(fine_mask, info.width / fine[0])
        top, bottom = np.percentile(ys, 2), np.percentile(ys, 98)
        pad = max(2, int(0.1 * (bottom - top)))
        box = (max(0, int(top) - pad), min(f.shape[0], int(bottom) + pad + 1),
               max(0, int(np.percentile(xs, 2)) - pad), min(f.shape[1], int(np.percentile(xs, 98)) + pad + 1))
    if n > 1:
        energy[0], bands[0] = energy[1], bands[1]
    return Track(camera, Path(path), info.fps, info.width / coarse[0], energy, bands, seen, outlines)


def _size(width: int, height: int, side: int) -> tuple[int, int]:
    """(w, h) of a frame scaled so that its longer side is at most `side` px."""
    scale = max(1.0, max(width, height) / side)
    return max(1, round(width / scale)), max(1, round(height / scale))


def _resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return frame if (frame.shape[1], frame.shape[0]) == size else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[H, W] uint8: the largest absolute difference over the colour channels of two frames."""
    d = cv2.split(cv2.absdiff(a, b))
    return cv2.max(cv2.max(d[0], d[1]), d[2])


def _foreground(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """[H, W] uint8 0/1: the pixels that differ from the background by more than THRESHOLD."""
    return (_change(frame, background) > THRESHOLD).view(np.uint8)


def _outline(mask: np.ndarray, scale: float) -> np.ndarray | None:
    """[P, 2] full-resolution pixels: the outline of every blob of a foreground mask read at
    1/scale; None where there is none or a blob touches the frame's edge (the person cut off)."""
    if not mask.any() or mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
        return None
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    edge = np.concatenate([c[:, 0, :] for c in contours]).astype(np.float64)
    return (edge + 0.5) * scale - 0.5


# ---------------------------------------------------------------- the two scores of a lag

def _standardized(x: np.ndarray, window: int) -> np.ndarray:
    """NaN-filled by interpolation, high-passed (minus a running mean over `window` frames), z-scored."""
    x = np.asarray(x, np.float64).copy()
    ok = np.isfinite(x)
    if ok.sum() < 2:
        return np.zeros_like(x)
    x[~ok] = np.interp(np.flatnonzero(~ok), np.flatnonzero(ok), x[ok])
    if len(x) > 2:  # a one-frame spike (a keyframe's new quality, a flicker) is not motion: a median of three
        x = np.concatenate([x[:1], np.median(np.stack([x[:-2], x[1:-1], x[2:]]), axis=0), x[-1:]])
    if window > 1:
        x = x - np.convolve(np.pad(x, window // 2, mode="edge"), np.ones(window) / window, mode="valid")[:len(x)]
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def motion_signals(track: Track) -> np.ndarray:
    """[2 BANDS, T] standardized signals: how much the person's image changes from frame to frame
    in each horizontal band of their box (head and arms, trunk and hands, legs; upright cameras
    agree on which is which), and how fast that amount changes (the onsets and ends of movements,
    sharper in time than the amount, which depends more on the view), high-passed over half a second."""
    window = max(3, int(round(track.fps / 2)) | 1)
    bands = [track.bands[:, k] for k in range(track.bands.shape[1])]
    return np.stack([_standardized(b, window) for b in bands] + [_standardized(np.gradient(b), window) for b in bands])


def lag_range(a: Track, b: Track, max_lag_s: float = MAX_LAG_S) -> int:
    """The largest lag searched: max_lag_s, narrowed so that the overlap keeps MIN_OVERLAP of the shorter video."""
    return reach(a.frames, b.frames, a.fps, max_lag_s)


def reach(n_a: int, n_b: int, fps: float, max_lag_s: float = MAX_LAG_S) -> int:
    """lag_range of two videos of n_a and n_b frames at fps."""
    return int(max(0, min(round(max_lag_s * fps), math.floor(min(n_a, n_b) * (1 - MIN_OVERLAP)))))


def _pairs(n_a: int, n_b: int, lag: int) -> tuple[slice, slice]:
    """Frames i of a and i + lag of b that both videos hold."""
    lo, hi = max(0, -lag), min(n_a, n_b - lag)
    return slice(lo, max(lo, hi)), slice(lo + lag, max(lo, hi) + lag)


def correlation_scores(sa: np.ndarray, sb: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """[len(lags)] the mean correlation of two cameras' signals ([S, T_a], [S, T_b]) at each lag
    (frame i of a with i + lag of b), as Fisher's z times its standard error: a short overlap at a
    far lag must correlate more to win. -inf where fewer than 8 frames overlap."""
    out = np.full(len(lags), -np.inf)
    for k, lag in enumerate(lags):
        ia, ib = _pairs(sa.shape[1], sb.shape[1], int(lag))
        xa, xb = sa[:, ia], sb[:, ib]
        if xa.shape[1] < 8:
            continue
        xa = xa - xa.mean(axis=1, keepdims=True)
        xb = xb - xb.mean(axis=1, keepdims=True)
        den = np.sqrt((xa ** 2).sum(axis=1) * (xb ** 2).sum(axis=1))
        corr = np.where(den > 0, (xa * xb).sum(axis=1) / np.where(den > 0, den, 1), 0.0)
        out[k] = float(np.mean(np.arctanh(np.clip(corr, -0.999, 0.999)))) * math.sqrt(xa.shape[1] - 3)
    return out


def outline_rays(track: Track, cam: Camera) -> list:
    """[T] the rays through the silhouette's outline in each frame, [P, 3] in the world's axes
    (None where there is no outline): undistorted once per camera, whatever pairs it is in."""
    R = np.asarray(cam.R, np.float64)
    out: list = [None] * track.frames
    for t, pts in enumerate(track.outline):
        if pts is not None:
            x = undistort((pts - cam.c) / cam.f, cam.k, cam.p, model=cam.model)
            out[t] = np.concatenate([x, np.ones((len(x), 1))], axis=1) @ R.T
    return out


def tangent_planes(rays: list, axis: np.ndarray) -> np.ndarray:
    """[T, 2] the angles (radians, about `axis`, the unit baseline of a camera pair) of the two
    epipolar planes tangent to the silhouette in each frame (rays: outline_rays of the camera;
    NaN where there is no silhouette, or where the other camera's centre lies inside the
    silhouette's wedge, so that no plane through the baseline touches it). Both cameras of a pair
    see the same two planes at the same instant when they turn them about the same axis: each
    touches the person at a real point (a frontier point), so unlike a centroid or a top point the
    match is exact in 3D."""
    axis = np.asarray(axis, np.float64)
    u = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    out = np.full((len(rays), 2), np.nan)
    for t, ray in enumerate(rays):
        if ray is None:
            continue
        # the plane through the baseline and a ray; for the other camera's rays to the same point
        # the normal is the same, since the baseline joins the two centres
        normal = np.cross(axis, ray)
        angle = np.arctan2(normal @ v, normal @ u)
        centre = np.angle(np.mean(np.exp(1j * angle)))
        rel = np.angle(np.exp(1j * (angle - centre)))  # unwrapped about the silhouette's middle
        if rel.max() - rel.min() > WEDGE:  # the epipole is inside (or next to) the silhouette
            continue
        out[t] = centre + rel.min(), centre + rel.max()
    return out


def tangent_signals(planes: np.ndarray, fps: float) -> np.ndarray | None:
    """[2, T] the two tangent planes' angles over time, unwrapped, gaps filled, high-passed over
    TANGENT_WINDOW_S and standardized; None where fewer than half the frames have them."""
    window = max(3, int(round(fps * TANGENT_WINDOW_S)) | 1)
    out = []
    for k in range(2):
        x = planes[:, k].copy()
        ok = np.isfinite(x)
        if ok.mean() < 0.5:
            return None
        x[ok] = np.unwrap(x[ok])
        out.append(_standardized(x, window))
    return np.stack(out)


def geometry_scores(rays_a: list, rays_b: list, cam_a: Camera, cam_b: Camera, fps_a: float, fps_b: float,
                    lags: np.ndarray) -> np.ndarray:
    """The correlation of two cameras' tangent-plane angles (Sinha and Pollefeys' epipolar
    tangents, turned about the pair's one baseline; rays_a, rays_b: their outline_rays) at each
    lag, in correlation_scores' units, as the motion signals are scored; -inf throughout where
    either camera lacks them (the baseline passes through the person, or the person is cut off by
    the frame's edge, in most frames)."""
    axis = np.asarray(cam_b.C, np.float64) - np.asarray(cam_a.C, np.float64)
    axis /= np.linalg.norm(axis)
    sa = tangent_signals(tangent_planes(rays_a, axis), fps_a)
    sb = tangent_signals(tangent_planes(rays_b, axis), fps_b)
    if sa is None or sb is None:
        return np.full(len(lags), -np.inf)
    return correlation_scores(sa, sb, lags)


# ---------------------------------------------------------------- from scores to offsets

@dataclasses.dataclass
class PairLag:
    a: str
    b: str
    lag: float          # frame i of a shows the instant of frame i + lag of b: offset_b - offset_a (to a
                        # fraction of a frame: the peak between frames)
    score: float
    margin: float       # over the best lag outside the neighbourhood, in the method's units
    confident: bool


def best_lag(lags: np.ndarray, scores: np.ndarray, fps: float, margin: float, relative: bool = False,
             precise: np.ndarray | None = None) -> tuple:
    """(lag, score, margin, confident): the best lag and its margin over the best lag more than a
    tenth of a second (at least 2 frames) away; relative: the margin as a share of the scores' range.
    precise: scores whose peak within that neighbourhood places the lag instead (to a fraction of a
    frame), where they have one there."""
    ok = np.isfinite(scores)
    if not ok.any():
        return 0, -np.inf, 0.0, False
    k = int(np.argmax(np.where(ok, scores, -np.inf)))
    near = max(2, int(round(fps / 10)))
    lag = _peak(lags, scores, k)
    if precise is not None:  # its highest lag in the neighbourhood, when a peak (not rising beyond it)
        around = np.isfinite(precise) & (np.abs(lags - lags[k]) <= near)
        j = int(np.argmax(np.where(around, precise, -np.inf)))
        if around[j] and 0 < j < len(lags) - 1 and around[j - 1] and around[j + 1]:
            lag = _peak(lags, precise, j)
    far = ok & (np.abs(lags - lags[k]) > near)
    second = scores[far].max() if far.any() else scores[ok].min()
    gap = float(scores[k] - second)
    if relative:
        span = float(scores[ok].max() - scores[ok].min())
        gap = gap / span if span > 0 else 0.0
    return lag, float(scores[k]), gap, gap >= margin


def _peak(lags: np.ndarray, scores: np.ndarray, k: int) -> float:
    """The lag of the peak at index k to a fraction of a frame: the vertex of a parabola through three."""
    lag = float(lags[k])
    if 0 < k < len(lags) - 1 and np.isfinite(scores[k - 1]) and np.isfinite(scores[k + 1]):
        curve = scores[k - 1] - 2 * scores[k] + scores[k + 1]
        if curve < 0:
            lag += float(np.clip(0.5 * (scores[k - 1] - scores[k + 1]) / curve, -0.5, 0.5))
    return lag


def solve_offsets(cameras: list[str], pairs: list[PairLag]) -> tuple[dict[str, int], list[str]]:
    """({camera: offset >= 0}, cameras without a confident pair) from the pairwise lags, by
    weighted least squares with outlier pairs dropped."""
    index = {c: i for i, c in enumerate(cameras)}
    use = [p for p in pairs if p.confident]
    for _ in range(3):
        linked = _components(cameras, use)
        anchor = max(linked, key=len) if linked else [cameras[0]]
        rows, rhs, w = [], [], []
        for p in use:
            if p.a in anchor and p.b in anchor:
                r = np.zeros(len(cameras))
                r[index[p.b]], r[index[p.a]] = 1, -1
                rows.append(r)
                rhs.append(p.lag)
                w.append(max(p.margin, 1e-3))
        r = np.zeros(len(cameras))
        r[index[anchor[0]]] = 1  # fixes the free constant
        rows.append(r * 1e3)
        rhs.append(0.0)
        w.append(1.0)
        sw = np.sqrt(np.array(w))[:, None]
        x = np.linalg.lstsq(np.array(rows) * sw, np.array(rhs) * sw[:, 0], rcond=None)[0]
        resid = [abs(p.lag - (x[index[p.b]] - x[index[p.a]])) for p in use]
        bad = [p for p, e in zip(use, resid) if e > 1.5]
        if not bad:
            break
        worst = max(zip(resid, range(len(use))))[1]
        use = [p for i, p in enumerate(use) if i != worst]
    linked = _components(cameras, use)
    anchor = max(linked, key=len) if linked else [cameras[0]]
    offsets = {c: int(round(x[index[c]])) for c in anchor}
    low = min(offsets.values())
    return {c: v - low for c, v in offsets.items()}, [c for c in cameras if c not in anchor]


def _components(cameras: list[str], pairs: list[PairLag]) -> list[list[str]]:
    parent = {c: c for c in cameras}

    def root(c):
        while parent[c] != c:
            c = parent[c]
        return c
    for p in pairs:
        parent[root(p.a)] = root(p.b)
    groups: dict[str, list[str]] = {}
    for c in cameras:
        groups.setdefault(root(c), []).append(c)
    return [g for g in groups.values() if len(g) > 1]


@dataclasses.dataclass
class TakeSync:
    take: str
    offsets: dict[str, int]        # the cameras synchronized
    unresolved: dict[str, str]     # camera -> why it is left out
    pairs: list[PairLag]
    method: str
    lengths: dict[str, int]

    def confidence(self, camera: str) -> float:
        """The largest margin among the confident pairs the camera's offset rests on."""
        ms = [p.margin for p in self.pairs if p.confident and camera in (p.a, p.b)]
        return max(ms) if ms else 0.0

    def disagreement(self, camera: str) -> float:
        """Frames: the largest difference between a confident pair's lag (to a fraction of a frame)
        and the offsets written, over the pairs the camera is in. Above DOUBT the camera's offset
        may be a frame off (measured in docs/rig.md: most cameras a frame off are caught, and on
        a take of little motion most exact ones too)."""
        off = self.offsets
        ds = [abs(p.lag - (off[p.b] - off[p.a])) for p in self.pairs
              if p.confident and camera in (p.a, p.b) and p.a in off and p.b in off]
        return max(ds) if ds else 0.0

    def doubtful(self) -> list[str]:
        """The cameras written whose offset may be a frame off (disagreement above DOUBT)."""
        return [c for c in sorted(self.offsets) if self.disagreement(c) > DOUBT]


def sync_take(take: str, videos: dict[str, Path], cams: dict[str, Camera] | None = None, method: str = "auto",
              max_lag_s: float = MAX_LAG_S, rate: float | None = None, limit: int | None = None) -> TakeSync:
    """The offsets of one take's cameras. method: motion, geometry (needs cams), or auto: both
    (their scores added; the tangents weigh more between frames) when there are cams, motion
    otherwise (measured in docs/rig.md)."""
    _check_method(take, method, cams)  # before the videos are read
    outline = method != "motion" and cams is not None  # the silhouettes only where the tangents are used
    tracks = {c: read_track(p, c, rate, limit, outline) for c, p in sorted(videos.items())}
    return sync_tracks(take, tracks, cams, method, max_lag_s)


def _check_method(take: str, method: str, cams) -> None:
    if method not in METHODS:
        raise SyncError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if method == "geometry" and cams is None:
        raise SyncError(f"take {take}: --method geometry needs the rig's calibration.toml; use --method motion")


def sync_tracks(take: str, tracks: dict[str, Track], cams: dict[str, Camera] | None = None, method: str = "auto",
                max_lag_s: float = MAX_LAG_S) -> TakeSync:
    """sync_take on tracks already read."""
    _check_method(take, method, cams)
    uses = {"motion": ("motion",), "geometry": ("geometry",)}.get(
        method, ("motion", "geometry") if cams is not None else ("motion",))
    shortest = min(tracks.values(), key=lambda t: t.frames)
    if math.floor(shortest.frames * (1 - MIN_OVERLAP)) < 3:
        raise SyncError(f"take {take}: {shortest.frames} frames in camera {shortest.camera}, too short to tell lags "
                        "apart; record a longer take")
    unresolved = {}
    for c, tr in tracks.items():
        if tr.seen.mean() < MIN_SEEN:
            unresolved[c] = (f"sees someone in {tr.seen.mean():.0%} of its frames (nothing differs from its median "
                             f"background by more than {THRESHOLD} grey levels); point it at the person or leave it "
                             "out of the take")
        elif tr.energy.std() == 0 or np.ptp(tr.energy) < 1e-4:
            unresolved[c] = "shows no motion; synchronization needs someone who moves in every camera"
    live = [c for c in tracks if c not in unresolved]  # each camera's signals and rays once, whatever its pairs
    signals = {c: motion_signals(tracks[c]) for c in live} if "motion" in uses else {}
    rays = {c: outline_rays(tracks[c], cams[c]) for c in live} if "geometry" in uses else {}

    def score(a: str, b: str, lags: np.ndarray):
        total = np.zeros(len(lags))
        if "motion" in uses:
            total += correlation_scores(signals[a], signals[b], lags)
        if "geometry" not in uses:
            return total
        g = geometry_scores(rays[a], rays[b], cams[a], cams[b], tracks[a].fps, tracks[b].fps, lags)
        if uses == ("geometry",):
            return g
        if not np.isfinite(g).any():  # a pair whose baseline passes through the person has no tangents
            return total
        # both find the peak; the tangents, weighed more, place it between frames
        return total + g, total + TANGENT_WEIGHT * g

    return offsets_from_scores(take, {c: t.frames for c, t in tracks.items()}, shortest.fps, score, MARGIN, False,
                               "+".join(uses), max_lag_s, unresolved)


def _split(scores) -> tuple[np.ndarray, np.ndarray | None]:
    return scores if isinstance(scores, tuple) else (scores, None)


def offsets_from_scores(take: str, lengths: dict[str, int], fps: float, score, margin: float, relative: bool,
                        method: str, max_lag_s: float = MAX_LAG_S, unresolved: dict | None = None) -> TakeSync:
    """Every camera's offset in a take from a method's lag scores: score(a, b, lags) -> [len(lags)]
    (higher: frame i of a more likely the instant of frame i + lag of b), or (scores, precise) where
    another score places the peak more precisely (best_lag), for every pair of the
    cameras in `lengths` (frames per camera) not already `unresolved` (camera -> why); the best lag
    of each pair with its margin (relative: as a share of the scores' range), then solve_offsets.
    Any method (motion, geometry, a trained network) goes through here."""
    unresolved = dict(unresolved or {})
    live = [c for c in lengths if c not in unresolved]
    if len(live) < 2:
        raise SyncError(f"take {take}: fewer than two cameras see someone move "
                        f"({'; '.join(f'{c} {why}' for c, why in unresolved.items())}); nothing to synchronize")
    pairs = []
    for i, a in enumerate(live):
        for b in live[i + 1:]:
            r = reach(lengths[a], lengths[b], fps, max_lag_s)
            if r < 3:
                raise SyncError(f"take {take}: {min(lengths[a], lengths[b])} frames, too short to tell lags apart "
                                f"(cameras {a} and {b}); record a longer take")
            lags = np.arange(-r, r + 1)
            scores, precise = _split(score(a, b, lags))
            lag, best, gap, ok = best_lag(lags, scores, fps, margin, relative, precise)
            pairs.append(PairLag(a, b, lag, best, gap, ok))
    offsets, alone = solve_offsets(live, pairs)
    for c in alone:
        unresolved[c] = ("no camera pair gives it a clear lag (the best lag does not stand out: the motion may be "
                         "periodic or too little); a take with more varied movement, or the rig's "
                         "calibration.toml (the default method then adds the epipolar tangents), would help")
    return TakeSync(take, offsets, unresolved, pairs, method, dict(lengths))


# ---------------------------------------------------------------- a rig

def sync_rig(raw: str | Path, method: str = "auto", max_lag_s: float = MAX_LAG_S, calib_units: str = "m",
             progress=None) -> list[TakeSync]:
    """sync_take for every take of a rig folder (the rig layout)."""
    from .rig import discover_rig, rig_calibration

    raw = Path(raw)
    cams = rig_calibration(raw, calib_units)
    if method == "geometry" and cams is None:
        raise SyncError(f"{raw}: --method geometry needs {raw / 'calibration.toml'}; use --method motion")
    out = []
    for take in discover_rig(raw, cams, offsets=False):
        rates = {c: video_info(p).fps for c, p in take.videos.items()}
        rate = float(np.median(list(rates.values())))
        if progress:
            progress(take.name)
        out.append(sync_take(take.name, take.videos, cams, method, max_lag_s, rate))
    return out


def offsets_path(rig: str | Path, overwrite: bool) -> Path:
    """RIG/offsets.toml, checked before any work: an existing one is replaced only when asked."""
    from .errors import ConfigError
    from .rig import OFFSETS

    path = Path(rig) / OFFSETS
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: exists; pass --overwrite to replace it (or move it aside)")
    return path


def write_offsets(path: Path, results: list[TakeSync], force: bool, echo=print) -> None:
    """Print the table (take, camera, offset, confidence, method; unresolved cameras with why)
    and write offsets.toml atomically."""
    import os

    echo(f"{'take':<16} {'camera':<16} {'offset':>7} {'confidence':>11} {'pairs off by':>13}  method")
    for r in results:
        for cam in sorted(r.lengths):
            if cam in r.offsets:
                d = r.disagreement(cam)
                note = "  (may be a frame off)" if d > DOUBT else ""
                echo(f"{r.take:<16} {cam:<16} {r.offsets[cam]:>7} {r.confidence(cam):>11.3f} {d:>13.2f}  "
                     f"{r.method}{note}")
            else:
                echo(f"{r.take:<16} {cam:<16} {'?':>7} {'':>11}  unresolved: {r.unresolved[cam]}")
    tmp = path.with_name(f".tmp.{path.name}")
    tmp.write_text(offsets_toml(results, force))
    os.replace(tmp, path)
    left = sum(len(r.unresolved) for r in results)
    echo(f"wrote {path}" + (f"; {left} camera(s) left out (commented): the build refuses their takes until "
                            "they have an offset" if left and not force else ""))
    doubt = [f"{r.take}/{c}" for r in results for c in r.doubtful()]
    if doubt:
        echo(f"{len(doubt)} camera(s) may be a frame off ({', '.join(doubt)}): their camera pairs disagree by more "
             f"than {DOUBT:g} frame; a take with more varied movement, or the rig's calibration.toml, would help")


def offsets_toml(results: list[TakeSync], force: bool = False) -> str:
    """The offsets file: one table per take; an unresolved camera is written as a comment saying
    why (the build then refuses the take until it has a value), or, with force, at offset 0."""
    lines = ["# written by `h36m-prep sync`: row t of a take is frame t + offset of the camera's video", ""]
    for r in results:
        lines.append(f"[{_toml_key(r.take)}]")
        for c in sorted(r.lengths):
            if c in r.offsets:
                d = r.disagreement(c)
                doubt = f", pairs disagree by {d:.2f} frames: may be a frame off" if d > DOUBT else ""
                lines.append(f"{_toml_key(c)} = {r.offsets[c]}  # confidence {r.confidence(c):.3f}, {r.method}{doubt}")
            elif force:
                lines.append(f"{_toml_key(c)} = 0  # a guess (--force): {r.unresolved[c]}")
            else:
                lines.append(f"# {_toml_key(c)} = ?  unresolved: {r.unresolved[c]}")
        lines.append("")
    return "\n".join(lines)


def _toml_key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else '"' + name.replace('"', '\\"') + '"'


def quick_check(takes, rate: float, seconds: float = 10.0) -> str | None:
    """A note when a rig without offsets.toml looks unsynchronized: videos of one take whose
    lengths differ, or a confident lag of more than QUICK_TOLERANCE_S on the first `seconds` of the
    first take (the motion method's own error on a synchronized take with little motion reaches a
    few frames: docs/rig.md). None when it looks synchronized."""
    for take in takes:
        lengths = {c: video_info(p, rate).frames for c, p in take.videos.items()}
        if max(lengths.values()) - min(lengths.values()) > 2:
            return (f"take {take.name}: its videos have {', '.join(f'{c} {n}' for c, n in lengths.items())} frames "
                    "(cameras started or stopped at different moments?)")
    first = takes[0]
    try:
        r = sync_take(first.name, first.videos, None, "motion", min(MAX_LAG_S, seconds / 4), rate,
                      limit=int(seconds * rate))
    except (SyncError, RawDataError):
        return None
    off = {c: o for c, o in r.offsets.items() if o}
    if off and max(off.values()) > QUICK_TOLERANCE_S * rate:
        return (f"take {first.name}: its cameras look {', '.join(f'{c} {o}' for c, o in off.items())} frames apart "
                "(a quick estimate on its first seconds)")
    return None
