"""The store's format: one Zarr v3 group per build, every per-frame array sharing the row index.

    images      uint8   [N, S, S, 3]  crop of the virtual camera (RGB); Blosc-LZ4, or one JPEG per
                                      frame (attrs["image_codec"], codec.py)
    masks       uint8   [N, S, S]     foreground, 0/1
    pose3d      float32 [N, 17, 3]    mm, virtual-camera frame, root-relative
    pose2d      float32 [N, 17, 2]    crop pixels
    K, R_v      float64 [N, 3, 3]     crop intrinsics; real camera -> virtual camera rotation
    root_cam    float64 [N, 3]        mm, root joint in the real camera frame (|root_cam| = depth)
    box         float32 [N, 4]        x0, y0, x1, y1: the crop's footprint in the real image
    subject, action, subaction, camera  int16 [N]  indices into the attribute lists
    frame, sequence                     int32 [N]  t in the sequence; row of attrs["sequences"]
    moving      bool    [N]           significant motion since the last kept frame
    split       uint8   [N]           SPLITS: 0 train, 1 test (query.py asks by name)
    backgrounds uint8   [B, S, S, 3]  crops of median backgrounds (substitution, removal)
    bg_subject, bg_camera int16 [B]
    medians/<subject>/<camera> uint8 [H, W, 3]  the full median backgrounds
    unit_status uint8 [U]             per (sequence, camera): 0 pending, 1 done, 2 skipped
    silhouette  uint8   [N, 32, 32]   only in a store without poses: the crop mask at 32 px, the
                                      label-free motion measure

A store built without poses (a rig, attrs["poses"] false) has the same arrays: pose3d, pose2d
and root_cam are NaN (no joints, no depth), K, R_v and box describe each crop as usual, and
`moving` comes from the silhouettes. attrs["layout"] is "h36m" or "rig"; attrs["fps"] the
videos' frame rate; for a rig the `subject` column holds the take's session (takes whose
median backgrounds are pooled) and `action` the take.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from ..errors import ToolkitError
from ..lock import LOCK_NAME
from . import codec  # noqa: F401  registers the JPEG codec, so every reader of a store knows it
from .location import Location, locate

FORMAT_VERSION = 2  # 2: every written image, mask and background chunk is stored, empty or not
PENDING, DONE, SKIPPED = 0, 1, 2
SPLITS = {"train": 0, "test": 1}  # the values of the `split` column
SMALL_CHUNK = 4096  # rows per chunk of the per-frame metadata arrays


PIXEL_ARRAYS = ("images", "masks")


def writing():
    """Context for every write of a build: Zarr leaves out a chunk that equals the fill value (an
    empty mask, a black frame) unless told otherwise, and this store keeps every chunk written,
    so that an absent chunk of a written row is always damage, never data. (The setting is not
    stored with an array: each writing process needs it.)"""
    return zarr.config.set({"array.write_empty_chunks": True})


class StoreError(ToolkitError, ValueError):
    """A store that cannot be used; the message names it and the fix."""


def image_codec() -> list:
    # lz4 + byte shuffle: the fastest random reads of the codecs measured (README, "The store")
    return [BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle)]


IMAGE_CODECS = ("lz4", "raw", "jpeg")


def parse_image_codec(spec: str) -> tuple[str, int | None]:
    """'lz4' -> ('lz4', None); 'raw' -> ('raw', None); 'jpeg' or 'jpeg:Q' -> ('jpeg', Q) (default
    quality 90)."""
    name, _, quality = str(spec).partition(":")
    if name in ("lz4", "raw") and not quality:
        return name, None
    if name == "jpeg":
        try:
            q = int(quality or 90)
        except ValueError:
            q = -1
        if 1 <= q <= 100:
            return "jpeg", q
    raise ValueError(f"image codec {spec!r}: expected lz4, raw, jpeg or jpeg:QUALITY (1-100)")


def images_codec(spec: str = "lz4") -> list:
    """The codec of the `images` array: Blosc-LZ4 (lossless), raw (the pixels as they are, no
    compression: a read is a file read, no decode; 3 S^2 bytes a frame), or one JPEG per frame
    (codec.JpegCodec, an array-to-bytes codec: every chunk file is a JPEG file)."""
    name, quality = parse_image_codec(spec)
    if name == "jpeg":
        return [codec.JpegCodec(quality=quality)]
    if name == "raw":
        return []
    return image_codec()


def mask_codec() -> list:
    # lz4 without a shuffle: a 0/1 mask decodes in a quarter of the time a bit shuffle takes (10 against
    # 39 us at 256 px) for 2.8 KB a frame instead of 1.2 (docs/store.md)
    return [BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.noshuffle)]


def per_frame_arrays(n: int, size: int, silhouettes: bool = False,
                     codec: str = "lz4") -> dict[str, tuple[tuple, tuple, str, list]]:
    """name -> (shape, chunks, dtype, codecs) of every array with one row per frame (with
    silhouettes: also the `silhouette` array of a store without poses; codec: of `images`)."""
    small = lambda shape, dtype: ((n, *shape), (min(SMALL_CHUNK, max(n, 1)), *shape), dtype,  # noqa: E731
                                  [BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)])
    return {
        "images": ((n, size, size, 3), (1, size, size, 3), "uint8", images_codec(codec)),
        "masks": ((n, size, size), (1, size, size), "uint8", mask_codec()),
        "pose3d": small((17, 3), "float32"),
        "pose2d": small((17, 2), "float32"),
        "K": small((3, 3), "float64"),
        "R_v": small((3, 3), "float64"),
        "root_cam": small((3,), "float64"),
        "box": small((4,), "float32"),
        "subject": small((), "int16"),
        "action": small((), "int16"),
        "subaction": small((), "int16"),
        "camera": small((), "int16"),
        "frame": small((), "int32"),
        "sequence": small((), "int32"),
        "moving": small((), "bool"),
        "split": small((), "uint8"),
    } | ({"silhouette": ((n, 32, 32), (min(SMALL_CHUNK, max(n, 1)), 32, 32), "uint8", mask_codec())}
         if silhouettes else {})


def create(path: str | Path | Location, n: int, size: int, n_backgrounds: int, n_units: int, attrs: dict,
           silhouettes: bool = False, codec: str = "lz4") -> zarr.Group:
    """A new, empty store with every array allocated and the attributes written (a folder or a
    prefix in object storage).

    Refuses to replace a folder that holds anything but an unfinished creation of a store.
    """
    loc = locate(path)
    if _contents(loc) and not _ours(loc):
        raise StoreError(f"{loc}: exists and is not an h36m-prep store; choose a new path")
    if _contents(loc) and "units" in _open(loc, "r").attrs:
        raise StoreError(f"{loc}: holds a created store whose zarr.json lacks \"format_version\" (edited or "
                         f"damaged attributes); restore \"format_version\": {FORMAT_VERSION} in {loc.name('zarr.json')} "
                         "if this version of h36m-prep built it, or delete the folder to rebuild")
    loc.remove_all(keep=(LOCK_NAME,))  # an unfinished creation; the writer's lock stays
    g = zarr.open_group(loc.zarr_store(), mode="a", zarr_format=3, attributes={"h36m_prep_store": True})
    for name, definition in all_arrays(n, size, n_backgrounds, n_units, silhouettes, codec).items():
        _create_array(g, name, *definition)
    g.create_group("medians")
    g.attrs.update({**attrs, "format_version": FORMAT_VERSION, "complete": False})
    return g


def _open(loc: Location, mode: str) -> zarr.Group:
    return zarr.open_group(loc.zarr_store(read_only=mode == "r"), mode=mode)


def all_arrays(n: int, size: int, n_backgrounds: int, n_units: int, silhouettes: bool = False,
               codec: str = "lz4") -> dict[str, tuple]:
    """name -> (shape, chunks, dtype, codecs, fill value) of every array of a store."""
    arrays = {name: (*d, 0) for name, d in per_frame_arrays(n, size, silhouettes, codec).items()}
    arrays["backgrounds"] = ((n_backgrounds, size, size, 3), (1, size, size, 3), "uint8", image_codec(), 0)
    for name in ("bg_subject", "bg_camera"):
        arrays[name] = ((n_backgrounds,), (max(n_backgrounds, 1),), "int16", None, 0)
    arrays["unit_status"] = ((n_units,), (1,), "uint8", None, PENDING)
    return arrays


def _create_array(g: zarr.Group, name: str, shape, chunks, dtype, comp, fill, overwrite: bool = False):
    kind = {"serializer": comp[0], "compressors": None} if comp and _is_serializer(comp) else \
        {"compressors": comp} if comp else {"compressors": None} if comp == [] else {}  # []: uncompressed
    return g.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill, overwrite=overwrite, **kind)


def store_arrays(g: zarr.Group) -> dict[str, tuple]:
    """all_arrays of this store, from its attributes."""
    a = g.attrs
    units = a["units"]
    views = {(a["sequences"][u["sequence"]]["subject"], u["camera"]) for u in units}
    return all_arrays(units[-1]["start"] + units[-1]["length"], a["crop_size"], a["build"]["bg_crops"] * len(views),
                      len(units), not has_poses(g), a.get("image_codec", "lz4"))


def unreadable_arrays(g: zarr.Group) -> dict[str, str]:
    """{array: why} for every array of the store whose metadata is missing or cannot be read
    (a deleted zarr.json, an edited codec name)."""
    out = {}
    for name in store_arrays(g):
        try:
            g[name]
        except KeyError:
            out[name] = "its metadata (zarr.json) is missing"
        except Exception as e:  # an unknown codec or a malformed entry: Zarr raises many kinds
            out[name] = f"its metadata cannot be read ({type(e).__name__}: {e})"
    return out


def restore_arrays(path: str | Path | Location, names) -> list[str]:
    """Write the metadata of the named arrays anew from the store's format, keeping their chunks
    (each chunk is then checked by verify). -> the arrays restored."""
    loc = locate(path)
    defs = store_arrays(_open(loc, "r+"))
    done = []
    for name in names:
        tmp = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
        _create_array(tmp, name, *defs[name])
        loc.write(f"{name}/zarr.json", tmp.store._store_dict[f"{name}/zarr.json"].to_bytes())
        done.append(name)
    return done


def check_arrays(g: zarr.Group, path: str | Path) -> None:
    bad = unreadable_arrays(g)
    if bad:
        raise StoreError(f"{path}: " + "; ".join(f"array {name!r}: {why}" for name, why in bad.items())
                         + f"; run `h36m-prep verify --mark-damaged {path}` to write it anew from the store's format, "
                         "then rerun the build to re-render what is damaged")


def _contents(loc: Location) -> list[str]:
    """What a store's folder holds besides a writer's lock file (none when it does not exist)."""
    return [name for name in loc.top() if name != LOCK_NAME]


def _is_serializer(codecs: list) -> bool:
    from zarr.abc.codec import ArrayBytesCodec

    return len(codecs) == 1 and isinstance(codecs[0], ArrayBytesCodec)


def _ours(loc: Location) -> bool:
    try:
        return bool(_open(loc, "r").attrs.get("h36m_prep_store"))
    except Exception:  # not a Zarr group at all
        return False


def is_store(path: str | Path | Location) -> bool:
    """Whether `path` holds a store of this toolkit (finished or not)."""
    loc = locate(path)
    return loc.exists("zarr.json") and _ours(loc)


def is_started(path: str | Path | Location) -> bool:
    """A store whose creation finished (every array allocated): a build can resume into it."""
    loc = locate(path)
    return loc.exists("zarr.json") and _ours(loc) and "format_version" in _open(loc, "r").attrs


def open_store(path: str | Path | Location, mode: str = "r") -> zarr.Group:
    """Open a store (a folder or object-storage URL), checking that it is one and that this code
    can read its format."""
    loc = locate(path)
    loc.check()
    if not loc.exists("zarr.json"):
        raise StoreError(f"{loc}: not a Zarr store; build one with `h36m-prep build RAW {loc}`")
    g = _open(loc, mode)
    version = g.attrs.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreError(f"{loc}: store format version {version}, this code reads {FORMAT_VERSION}; "
                         "rebuild it with this version of h36m-prep")
    return g


def require_complete(g: zarr.Group, path: str | Path) -> None:
    """A finished build: `complete` set and every unit written or skipped (a `complete` flag over
    pending units is an edited or damaged store, which would train on part of its rows)."""
    if not g.attrs.get("complete"):
        raise StoreError(f"{path}: the build did not finish; rerun the same `h36m-prep build` "
                         "command to resume it")
    check_arrays(g, path)
    pending = int((g["unit_status"][:] == PENDING).sum())
    if pending:
        raise StoreError(f"{path}: says it is complete, but {pending} of {len(g.attrs['units'])} (sequence, camera) "
                         "units were never written (edited or damaged attributes); set \"complete\": false in "
                         f"{locate(path).name('zarr.json')} and rerun the build that made it to write them")


def has_poses(g: zarr.Group) -> bool:
    """Whether the store's rows have poses (every Human3.6M store; a rig store with poses3d.npy)."""
    return bool(g.attrs.get("poses", True))


def subject_order(name: str) -> tuple:
    """Sort key of subject (or session) names: S1, S5, S11 by number, other names after, by name."""
    return (0, int(name[1:]), "") if name[:1] == "S" and name[1:].isdigit() else (1, 0, name)


def done_rows(g: zarr.Group) -> np.ndarray:
    """[N] bool: rows that belong to a completely written (sequence, camera)."""
    status = g["unit_status"][:]
    keep = np.zeros(g["images"].shape[0], dtype=bool)
    for u, unit in enumerate(g.attrs["units"]):
        if status[u] == DONE:
            keep[unit["start"]:unit["start"] + unit["length"]] = True
    return keep
