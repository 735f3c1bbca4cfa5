"""Reading a store: one row of a per-frame array, fast.

The store's image arrays have one frame per chunk and Blosc compression (or, for `images`, one
JPEG file per chunk); such a chunk is read by opening its file (or getting its object) and
decoding it, about 8x faster than through Zarr's general machinery (chunks.py knows where a
row's chunk lies and how it is encoded). Any other layout reads through Zarr.

In object storage every chunk is one GET, a round trip: the reader fetches concurrently and
ahead (`prefetch`: the loaders name the rows of the batches the sampler has already planned), so
a loader is not bound by the round trips.
"""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import zarr
from numcodecs import blosc

from ..errors import ToolkitError
from . import chunks
from .codec import decode_jpeg, encode_jpeg, jpeg_size
from .location import Location, ReadAhead, locate
from .schema import PIXEL_ARRAYS, done_rows


_MAKING = threading.Lock()


class StoreReadError(ToolkitError, RuntimeError):
    """A chunk of the store is damaged."""


class StoreReader:
    """Lazy reads of one row of a store's per-frame arrays (safe to share between threads and to
    pickle into worker processes).

    The store's image arrays have one frame per chunk and Blosc compression (or, for `images`,
    one JPEG file per chunk); such a chunk is read by opening its file (getting its object) and
    decoding it, about 8x faster than through Zarr's general machinery (see the README). Any other
    layout reads through Zarr. store: a folder or an object-storage URL (location.py).
    """

    def __init__(self, store: str | Path | Location):
        self.location = locate(store)
        self.path = str(self.location)
        self._g = None
        self._direct: dict[str, tuple | None] = {}
        self._bank: dict[tuple[int, bool], np.ndarray] = {}
        self._written: dict[str, np.ndarray] = {}
        self._ahead: ReadAhead | None = None

    def __getstate__(self):
        return {"location": self.location, "path": self.path, "_g": None, "_direct": {}, "_bank": {}, "_written": {},
                "_ahead": None}

    @property
    def remote(self) -> bool:
        return self.location.remote

    def prefetch(self, name: str, rows) -> None:
        """Start fetching the chunks of `rows` of array `name` (object storage; a no-op on a disk,
        where a read costs no round trip)."""
        if not self.remote or self._layout(name) is None:
            return
        self._read_ahead().request(self._key(name, r) for r in rows)

    def _read_ahead(self) -> ReadAhead:
        if self._ahead is None:
            with _MAKING:  # loader threads share a reader: one fetcher for all of them
                if self._ahead is None:
                    self._ahead = ReadAhead(self.location)
        return self._ahead

    def written(self, name: str) -> np.ndarray:
        """[rows] bool: the rows of `name` that the store says were written (a unit marked done;
        every background of a complete store)."""
        if name not in self._written:
            rows = done_rows(self.g) if name in PIXEL_ARRAYS else np.full(self.g[name].shape[0], True)
            self._written[name] = rows  # published once made: threads may ask at the same time
        return self._written[name]

    @property
    def g(self) -> zarr.Group:
        if self._g is None:
            self._g = zarr.open_group(self.location.zarr_store(read_only=True), mode="r")
        return self._g

    def _layout(self, name: str) -> chunks.Layout | None:
        if name not in self._direct:  # set once made: threads may ask at the same time
            self._direct[name] = chunks.layout(self.location, name)
        return self._direct[name]

    def _key(self, name: str, row: int) -> str:
        return chunks.key(self._layout(name), row)

    def _chunk(self, name: str, row: int) -> bytes | None:
        """The bytes of a directly readable row's chunk; None for a row never written. A written row
        whose chunk is absent is damage: StoreReadError."""
        key = self._key(name, row)
        if self.remote:
            data = self._read_ahead().read(key)
        else:
            data = self.location.read(key)
        if data is None:
            if self.written(name)[int(row)]:  # every written chunk is stored: its absence is damage
                raise StoreReadError(f"{self.location.name(key)}: row {row} of '{name}' is missing, though the store "
                                     f"says it was written; find every damaged row with `h36m-prep verify {self.path}`, "
                                     "mark them with `--mark-damaged` and rerun `h36m-prep build` to re-render them")
        return data

    def _chunk_name(self, name: str, row: int) -> str:
        return self.location.name(self._key(name, row))

    @property
    def jpeg(self) -> bool:
        """Whether the store's crops are JPEG files (so a reduced decode is possible)."""
        layout = self._layout("images")
        return bool(layout and layout.jpeg)

    def row(self, name: str, row: int, reduce: int = 1) -> np.ndarray:
        """Row `row` of array `name`; reduce 2, 4 or 8: a JPEG image decoded at that fraction of its size."""
        layout = self._layout(name)
        if layout is None:
            return self.g[name][int(row)]
        shape, dtype, fill, jpeg, raw = layout.shape, layout.dtype, layout.fill, layout.jpeg, layout.raw
        if raw and not self.remote:  # uncompressed on a disk: the file read straight into the row
            out = np.empty(shape, dtype)
            try:
                with open(self.location.name(self._key(name, row)), "rb", buffering=0) as f:
                    if f.readinto(memoryview(out).cast("B")) == out.nbytes and not f.read(1):
                        return out
            except FileNotFoundError:
                pass  # absent or the wrong size: the general path below says which, as for any chunk
        data = self._chunk(name, row)
        if data is None:  # a row never written holds the fill value
            full = np.full(shape, fill, dtype)
            return full if reduce == 1 else np.ascontiguousarray(full[::reduce, ::reduce])
        try:
            if jpeg:
                image = decode_jpeg(data, reduce)
                want = (-(-shape[0] // reduce), -(-shape[1] // reduce), shape[2])
                if image.shape != want:
                    raise ValueError(f"a valid JPEG of {image.shape[1]} x {image.shape[0]} px, where the store's "
                                     f"crops are {want[1]} x {want[0]}")
                return image
            out = np.empty(shape, dtype)
            if raw:  # uncompressed: the file is the pixels
                if len(data) != out.nbytes:
                    raise ValueError(f"{len(data)} bytes, where a row takes {out.nbytes}")
                out.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)
                return out
            blosc.decompress(data, out)  # into a writable array, no extra copy
            return out
        except (RuntimeError, ValueError) as e:
            raise StoreReadError(f"{self._chunk_name(name, row)}: row {row} of '{name}' cannot be decoded ({e}); "
                                 f"find every damaged row with `h36m-prep verify {self.path}`, mark them with "
                                 "`--mark-damaged` and rerun `h36m-prep build` to re-render them") from None

    def image(self, row: int, reduce: int = 1) -> np.ndarray:
        return self.row("images", row, reduce)

    def encoded_image(self, row: int) -> np.ndarray:
        """uint8 [bytes]: a JPEG crop's file as it is, for a decoder elsewhere (DALI's nvJPEG);
        checked for its start and end markers like a decode here."""
        raw = self._chunk("images", row)
        if raw is None:  # a row never written: the fill value, encoded
            return np.frombuffer(encode_jpeg(np.zeros(self._layout("images").shape, np.uint8), 90), np.uint8)
        data = np.frombuffer(raw, np.uint8)
        if len(data) < 4 or bytes(data[:2]) != b"\xff\xd8" or bytes(data[-2:]) != b"\xff\xd9":
            raise StoreReadError(f"{self._chunk_name('images', row)}: row {row} of 'images' is not a complete JPEG "
                                 f"image (truncated?); find every damaged row with `h36m-prep verify {self.path}`, "
                                 "mark them with `--mark-damaged` and rerun `h36m-prep build` to re-render them")
        shape = self._layout("images").shape
        size = jpeg_size(data)
        if size != (shape[1], shape[0]):
            raise StoreReadError(f"{self._chunk_name('images', row)}: row {row} of 'images' is a JPEG of "
                                 f"{'unknown size' if size is None else f'{size[0]} x {size[1]} px'}, where the "
                                 f"store's crops are {shape[1]} x {shape[0]}; find every such row with `h36m-prep "
                                 f"verify {self.path}`, mark them with `--mark-damaged` and rerun `h36m-prep build`")
        return data

    def mask(self, row: int, reduce: int = 1) -> np.ndarray:
        mask = self.row("masks", row)
        return mask if reduce == 1 else reduce_area(mask, reduce)

    def background(self, index: int, mirrored: bool = False, reduce: int = 1) -> np.ndarray:
        """Background-bank crop `index`, left-right mirrored if asked, at 1/reduce of its size
        (area average); never written to."""
        key = (int(index), bool(mirrored), int(reduce))
        if key not in self._bank:  # the bank is small and hit often: keep what was read
            crop = self.row("backgrounds", index)
            crop = np.ascontiguousarray(crop[:, ::-1]) if mirrored else crop
            self._bank[key] = crop if reduce == 1 else reduce_area(crop, reduce)
        return self._bank[key]


def reduce_area(image: np.ndarray, reduce: int) -> np.ndarray:
    """An image at 1/reduce of its size (rounded up, as libjpeg's scaled decode), area average;
    a 0/1 mask stays 0/1 (a pixel is 1 where most of its area was)."""
    h, w = image.shape[:2]
    return cv2.resize(image, (-(-w // reduce), -(-h // reduce)), interpolation=cv2.INTER_AREA)
