"""Reading a plan's pixels from the store (through h36m_prep.store's reader): the only I/O of the loader.

For every image of a plan: the crop (uint8 [S, S, 3]), the foreground weight (uint8 [S, S, 1],
0/1) and what shows where the weight is 0 (uint8 [S, S, 3]): the image itself when the
background is kept (weight 1 everywhere), a flat fill of the normalisation mean when it is
removed (so it normalises to 0), a background-bank crop when it is substituted (mirrored
first when the plan says so: the warp that mirrors the person then leaves the background in
its own, independently drawn mirror state).
"""
from __future__ import annotations

import itertools
from collections import deque

import numpy as np

from h36m_prep.store import StoreReader, StoreReadError, reduce_area  # noqa: F401  (re-exported)

from .sampler import KEPT, REMOVED

MEAN = np.array([0.485, 0.456, 0.406]) * 255.0
STD = np.array([0.229, 0.224, 0.225]) * 255.0


def mean_fill(shape: tuple[int, ...]) -> np.ndarray:
    """uint8 [S, S, 3] filled with the normalisation mean (made once per shape; never written to)."""
    fill = _FILLS.get(shape)
    if fill is None:
        fill = np.empty(shape, np.uint8)
        fill[:] = np.round(MEAN).astype(np.uint8)
        _FILLS[shape] = fill  # published once filled: threads may ask at the same time
    return fill


_FILLS: dict[tuple, np.ndarray] = {}


def reduction(affine: np.ndarray, reader: StoreReader, allowed: tuple[int, ...] = (8, 4, 2)) -> int:
    """The largest JPEG decode reduction (8, 4, 2, else 1) at which the crop still has at least as
    many pixels as the output samples: every output pixel spans at least `reduce` crop pixels
    along both axes. 1 for a store without JPEG crops."""
    if not reader.jpeg:
        return 1
    scale = float(np.linalg.svd(np.asarray(affine)[:, :2], compute_uv=False).min())
    return next((k for k in allowed if k <= scale + 1e-9), 1)


def reduced_affine(affine: np.ndarray, reduce: int) -> np.ndarray:
    """The affine (output pixel -> crop pixel, centres at integers) onto the crop decoded at 1/reduce."""
    if reduce == 1:
        return affine
    a = np.array(affine, dtype=np.float64)
    a[:, :2] /= reduce
    a[:, 2] = (affine[:, 2] + 0.5) / reduce - 0.5
    return a


def recompressed(image: np.ndarray, quality: int) -> np.ndarray:
    """uint8 [H, W, 3] encoded as a JPEG of `quality` and decoded again (0: as it is). Every crop
    re-compressed at its own random quality no longer shows where its video's keyframes fell: a
    synchronized pair of cameras encoded with one keyframe interval from frame 0 shares that
    phase, a cue the sync head could learn instead of the person (docs/training.md)."""
    if not quality:
        return image
    import cv2

    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])


def fetch_image(reader: StoreReader, row: int, bg_mode: int, bg_index: int,
                bg_flip: bool = False, reduce: int = 1, quality: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (image [S, S, 3], weight [S, S, 1], behind [S, S, 3]) uint8, as the module says, at
    1/reduce of the crop's size (a JPEG crop's reduced decode). bg_flip: mirror a substituted
    background before the composite. quality: re-compress the crop as a JPEG of this quality
    (0: not)."""
    image = recompressed(reader.image(row, reduce), quality)
    if bg_mode == KEPT:
        return image, np.ones(image.shape[:2] + (1,), np.uint8), image
    weight = reader.mask(row, reduce)[..., None]
    behind = mean_fill(image.shape) if bg_mode == REMOVED else reader.background(bg_index, bg_flip, reduce)
    return image, weight, behind


def fetch_encoded(reader: StoreReader, row: int, bg_mode: int, bg_index: int,
                  bg_flip: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As fetch_image, with the crop still a JPEG file (uint8 [bytes]) for the decoder of the DALI
    pipeline; kept backgrounds (weight 1) get the mean fill behind, which the weight hides."""
    data = reader.encoded_image(row)
    size = reader.g["images"].shape[1:]
    if bg_mode == KEPT:
        return data, np.ones(size[:2] + (1,), np.uint8), mean_fill(tuple(size))
    weight = reader.mask(row)[..., None]
    behind = mean_fill(tuple(size)) if bg_mode == REMOVED else reader.background(bg_index, bg_flip)
    return data, weight, behind


def prefetch_plan(reader: StoreReader, plan) -> None:
    """Ask the reader to start fetching every chunk the images of `plan` will read (a store in
    object storage: concurrent GETs ahead of the render; on a disk, nothing)."""
    if not reader.remote:
        return
    rows, bg_mode, bg_index, _, _ = plan.images()
    reader.prefetch("images", rows)
    reader.prefetch("masks", rows[bg_mode != KEPT])
    reader.prefetch("backgrounds", np.unique(bg_index[(bg_mode != KEPT) & (bg_mode != REMOVED)]))


def read_ahead(steps, plan_of, reader: StoreReader, ahead: int):
    """Yield the steps of `steps` in order, having asked the reader for the chunks of each step's
    plan `ahead` steps before it is yielded (plan_of(step) -> its plan). A store on a disk:
    the steps as they are."""
    if not reader.remote or ahead <= 0:
        yield from steps
        return
    it, queue = iter(steps), deque()
    for step in itertools.islice(it, ahead + 1):
        prefetch_plan(reader, plan_of(step))
        queue.append(step)
    while queue:
        yield queue.popleft()
        for step in itertools.islice(it, 1):
            prefetch_plan(reader, plan_of(step))
            queue.append(step)


def dali_matrix(affine: np.ndarray) -> np.ndarray:
    """Our affine (pixel centres at integers) -> DALI warp_affine's (pixel centres at +0.5)."""
    m = np.array(affine, dtype=np.float64)
    m[..., 2] = affine[..., 2] + 0.5 - 0.5 * affine[..., 0] - 0.5 * affine[..., 1]
    return m.astype(np.float32)
