"""A Zarr v3 array-to-bytes codec that stores each chunk of an RGB image array as one baseline JPEG.

The store's `images` array has one frame per chunk ([1, S, S, 3] uint8), so with this codec every
chunk file *is* a JPEG file: any JPEG decoder (DALI's nvJPEG, libjpeg through OpenCV, a browser)
reads it as it is, and a plain Zarr client reads the array as uint8 once the codec is registered:

    import h36m_prep.store        # registers it; also registered as a
    import zarr                   # `zarr.codecs` entry point when multiview-sync is installed
    zarr.open_group("store.zarr")["images"][0]      # uint8 [S, S, 3], decoded

The array metadata names it {"name": "multiview_sync.jpeg", "configuration": {"quality": Q}}.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.registry import register_codec

from ..errors import ToolkitError

NAME = "multiview_sync.jpeg"
SOI, EOI = b"\xff\xd8", b"\xff\xd9"


class JpegError(ToolkitError, ValueError):
    """Bytes that are not one complete JPEG image."""


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """uint8 [H, W, 3] RGB -> baseline JPEG bytes (4:2:0, libjpeg through OpenCV)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise JpegError("OpenCV could not encode the image as JPEG")
    return buf.tobytes()


def decode_jpeg(data: bytes | np.ndarray, reduce: int = 1) -> np.ndarray:
    """JPEG bytes -> uint8 [H / reduce, W / reduce, 3] RGB (rounded up). reduce 2, 4 or 8 decodes
    at that fraction of the size with libjpeg's DCT scaling: a fraction of the work of a full
    decode. A truncated or damaged image raises JpegError (libjpeg would fill it in silently)."""
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    if len(buf) < 4 or bytes(buf[:2]) != SOI or bytes(buf[-2:]) != EOI:
        raise JpegError("not a complete JPEG image (no start or end marker; truncated?)")
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
    bgr = cv2.imdecode(buf, flag)
    if bgr is None:
        raise JpegError("libjpeg cannot decode the image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding; None when there is none."""
    buf = bytes(data[:65536]) if isinstance(data, np.ndarray) else bytes(data[:65536])
    i = 2
    while i + 9 < len(buf):
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(buf[i + 2:i + 4], "big")
        if marker in _SOF:
            return int.from_bytes(buf[i + 7:i + 9], "big"), int.from_bytes(buf[i + 5:i + 7], "big")
        i += 2 + length
    return None


@dataclass(frozen=True)
class JpegCodec(ArrayBytesCodec):
    """Chunks of shape [1, H, W, 3] uint8 <-> one JPEG of the given quality."""

    is_fixed_size = False
    quality: int = 90

    def __init__(self, *, quality: int = 90) -> None:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality {quality}: expected 1..100")
        object.__setattr__(self, "quality", int(quality))

    @classmethod
    def from_dict(cls, data: dict) -> "JpegCodec":
        return cls(**(data.get("configuration") or {}))

    def to_dict(self) -> dict:
        return {"name": NAME, "configuration": {"quality": self.quality}}

    def validate(self, *, shape, dtype, chunk_grid) -> None:
        chunk = tuple(chunk_grid.chunk_shape)
        if str(dtype.to_native_dtype()) != "uint8" or len(chunk) != 4 or chunk[0] != 1 or chunk[3] != 3:
            raise ValueError(f"{NAME} stores uint8 chunks of shape [1, H, W, 3], not {dtype} {chunk}")

    def _decode_sync(self, chunk_bytes, chunk_spec):
        rgb = decode_jpeg(chunk_bytes.as_numpy_array())
        if rgb.shape != tuple(chunk_spec.shape[1:]):
            raise JpegError(f"a valid JPEG of {rgb.shape[1]} x {rgb.shape[0]} px in an array of "
                            f"{chunk_spec.shape[2]} x {chunk_spec.shape[1]} px chunks")
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(rgb.reshape(chunk_spec.shape))

    async def _decode_single(self, chunk_bytes, chunk_spec):
        return self._decode_sync(chunk_bytes, chunk_spec)

    def _encode_sync(self, chunk_array, chunk_spec):
        data = encode_jpeg(chunk_array.as_numpy_array()[0], self.quality)
        return chunk_spec.prototype.buffer.from_bytes(data)

    async def _encode_single(self, chunk_array, chunk_spec):
        return self._encode_sync(chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec) -> int:
        raise NotImplementedError("a JPEG's size depends on the image")


register_codec(NAME, JpegCodec)
