"""Writing whole rows of the store's pixel arrays, fast.

A row of `images`, `masks` or `backgrounds` is one chunk (chunks.py): on a disk the build encodes
it with the array's own codec and writes its file, as the reader reads it, instead of going
through Zarr's general machinery (2.4 against 6.0 ms for a frame's crop and mask,
benchmarks/build_throughput.py; the bytes are the same, tested). In object storage, and for any other layout, rows go through Zarr,
which sends a block's chunks concurrently.
"""
from __future__ import annotations

import numpy as np
import zarr

from . import chunks
from .location import Location


class RowWriter:
    """rows -> the chunks of array `name` of the store at `location` (opened as `g`)."""

    def __init__(self, location: Location, g: zarr.Group):
        self.location, self.g = location, g
        self._direct: dict[str, tuple | None] = {}

    def _coder(self, name: str):
        if name not in self._direct:
            lay = None if self.location.remote else chunks.layout(self.location, name)
            self._direct[name] = None if lay is None else (lay, chunks.encoder(lay))
        return self._direct[name]

    def write(self, name: str, start: int, rows: np.ndarray) -> None:
        """rows [n, *row shape] into rows start .. start + n - 1 of `name`."""
        coder = self._coder(name)
        if coder is None or tuple(rows.shape[1:]) != coder[0].shape:
            self.g[name][start:start + len(rows)] = rows
            return
        lay, encode = coder
        for i, row in enumerate(rows):
            self.location.write(chunks.key(lay, start + i), encode(row))
