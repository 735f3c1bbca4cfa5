"""The store: the format every other part of the toolkit reads and the build writes.

This package owns it whole, and nothing outside it parses a `zarr.json` or spells a split as a
number:

  schema   the arrays, their chunks and codecs, the format version; create and open a store
  codec    the JPEG codec of the `images` array (a registered Zarr v3 codec)
  chunks   where a row's chunk lies and how its bytes are encoded
  reader   StoreReader: one row of a per-frame array, read straight from its chunk file
  writer   RowWriter: whole rows of the pixel arrays, written straight into their chunk files
  query    rows by split, subjects, motion and frame step; the subjects of a split

    from h36m_prep import store as S
    g = S.open_store("store.zarr")
    test = S.rows(g, split="test", every=64)      # the paper's test frames
    S.subjects_of(g, "test")                      # ['S9', 'S11']
"""
from .codec import JpegCodec, JpegError, decode_jpeg, encode_jpeg
from .query import row_mask, rows, split_code, split_of_rows, subject_mask, subjects_of
from .reader import StoreReader, StoreReadError, reduce_area
from .writer import RowWriter
from .schema import (DONE, FORMAT_VERSION, IMAGE_CODECS, PENDING, PIXEL_ARRAYS, SKIPPED, SMALL_CHUNK, SPLITS,
                     StoreError, all_arrays, check_arrays, create, done_rows, has_poses, image_codec, images_codec,
                     is_started, is_store, mask_codec, open_store, parse_image_codec, per_frame_arrays, require_complete,
                     restore_arrays, store_arrays, subject_order, unreadable_arrays, writing)

__all__ = [
    "JpegCodec", "JpegError", "decode_jpeg", "encode_jpeg",
    "row_mask", "rows", "split_code", "split_of_rows", "subject_mask", "subjects_of",
    "StoreReader", "StoreReadError", "reduce_area", "RowWriter",
    "DONE", "FORMAT_VERSION", "IMAGE_CODECS", "PENDING", "PIXEL_ARRAYS", "SKIPPED", "SMALL_CHUNK", "SPLITS",
    "StoreError", "all_arrays", "check_arrays", "create", "done_rows", "has_poses", "image_codec", "images_codec",
    "is_started", "is_store", "mask_codec", "open_store", "parse_image_codec", "per_frame_arrays", "require_complete",
    "restore_arrays", "store_arrays", "subject_order", "unreadable_arrays", "writing",
]
