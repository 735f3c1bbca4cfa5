"""Reading a plan's pixels from the store: the only I/O of the loader.

For every image of a plan: the crop (uint8 [S, S, 3]), the foreground weight (uint8 [S, S, 1],
0/1) and what shows where the weight is 0 (uint8 [S, S, 3]): the image itself when the
background is kept (weight 1 everywhere), a flat fill of the normalisation mean when it is
removed (so it normalises to 0), a background-bank crop when it is substituted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from .sampler import KEPT, REMOVED

MEAN = np.array([0.485, 0.456, 0.406]) * 255.0
STD = np.array([0.229, 0.224, 0.225]) * 255.0


class StoreReader:
    """Lazy, per-process handles on a store's arrays (safe to pickle into worker processes)."""

    def __init__(self, store: str | Path):
        self.path = str(store)
        self._g = None
        self._bank: dict[int, np.ndarray] = {}

    def __getstate__(self):
        return {"path": self.path, "_g": None, "_bank": {}}

    @property
    def g(self) -> zarr.Group:
        if self._g is None:
            self._g = zarr.open_group(self.path, mode="r")
        return self._g

    def image(self, row: int) -> np.ndarray:
        return self.g["images"][int(row)]

    def mask(self, row: int) -> np.ndarray:
        return self.g["masks"][int(row)]

    def background(self, index: int) -> np.ndarray:
        if index not in self._bank:  # the bank is small and hit often: keep what was read
            self._bank[index] = self.g["backgrounds"][int(index)]
        return self._bank[index]


def fetch_image(reader: StoreReader, row: int, bg_mode: int, bg_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (image [S, S, 3], weight [S, S, 1], behind [S, S, 3]) uint8, as the module says."""
    image = reader.image(row)
    if bg_mode == KEPT:
        return image, np.ones(image.shape[:2] + (1,), np.uint8), image
    weight = reader.mask(row)[..., None]
    if bg_mode == REMOVED:
        behind = np.broadcast_to(np.round(MEAN).astype(np.uint8), image.shape)
    else:
        behind = reader.background(bg_index)
    return image, weight, np.ascontiguousarray(behind)


def dali_matrix(affine: np.ndarray) -> np.ndarray:
    """Our affine (pixel centres at integers) -> DALI warp_affine's (pixel centres at +0.5)."""
    m = np.array(affine, dtype=np.float64)
    m[..., 2] = affine[..., 2] + 0.5 - 0.5 * affine[..., 0] - 0.5 * affine[..., 1]
    return m.astype(np.float32)
