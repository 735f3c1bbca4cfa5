"""Where a row's chunk lies and how its bytes are encoded: the only code besides Zarr that knows
the store's chunks on disk.

The pixel arrays (`images`, `masks`, `backgrounds`) have one row per chunk, so a row is one
chunk file (or object) that can be read and written without Zarr's general machinery: Blosc
(the bytes as Zarr's Blosc codec makes them), one JPEG (codec.py), or the pixels uncompressed.
`layout` says whether an array has such chunks; `encoder` turns a row into its chunk's bytes.
Any other layout goes through Zarr.
"""
from __future__ import annotations

import json
from typing import Callable, NamedTuple

import numpy as np

from .codec import NAME as JPEG
from .codec import encode_jpeg
from .location import Location

_SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


class Layout(NamedTuple):
    """A directly readable array: chunk keys f"{prefix}/{row}/{suffix}", rows of `shape`."""
    prefix: str
    suffix: str
    shape: tuple
    dtype: np.dtype
    fill: object
    jpeg: bool  # each chunk is one JPEG file
    raw: bool  # each chunk is the row's pixels, little-endian, uncompressed
    codecs: tuple  # the array's codecs as zarr.json spells them


def layout(location: Location, name: str) -> Layout | None:
    """The chunk layout of array `name` when its rows can be read and written directly (one row
    per chunk; Blosc, one JPEG, or the pixels uncompressed in little-endian order), else None."""
    text = location.read(f"{name}/zarr.json")
    if text is None:
        return None
    meta = json.loads(text)
    codecs = [c["name"] for c in meta.get("codecs", [])]
    key = meta.get("chunk_key_encoding", {})
    chunk = meta["chunk_grid"]["configuration"]["chunk_shape"]
    if not (codecs in (["bytes", "blosc"], ["bytes"], [JPEG]) and key.get("name") == "default"
            and key.get("configuration", {}).get("separator", "/") == "/"
            and chunk[0] == 1 and list(chunk[1:]) == list(meta["shape"][1:])):
        return None
    raw = codecs == ["bytes"] and meta["codecs"][0].get("configuration", {}).get("endian", "little") in ("little", None)
    if codecs == ["bytes"] and not raw:
        return None
    return Layout(f"{name}/c", "/".join("0" * (len(chunk) - 1)), tuple(chunk[1:]), np.dtype(meta["data_type"]),
                  meta.get("fill_value", 0), codecs == [JPEG], raw, tuple(meta["codecs"]))


def key(lay: Layout, row: int) -> str:
    return f"{lay.prefix}/{int(row)}/{lay.suffix}"


def encoder(lay: Layout) -> Callable[[np.ndarray], bytes]:
    """row [*shape] -> the bytes of its chunk, as Zarr would write them (the same codec, the same
    configuration: tests compare the files byte for byte)."""
    if lay.jpeg:
        quality = int(lay.codecs[0].get("configuration", {}).get("quality", 90))
        return lambda row: encode_jpeg(row, quality)
    dtype = lay.dtype.newbyteorder("<")
    if lay.raw:
        return lambda row: np.ascontiguousarray(row, dtype).tobytes()
    from numcodecs import Blosc

    conf = lay.codecs[1].get("configuration", {})
    blosc = Blosc(cname=conf.get("cname", "lz4"), clevel=int(conf.get("clevel", 5)),
                  shuffle=_SHUFFLES[conf.get("shuffle", "shuffle")], blocksize=int(conf.get("blocksize", 0)),
                  typesize=int(conf.get("typesize", dtype.itemsize)))
    return lambda row: blosc.encode(np.ascontiguousarray(row, dtype))
