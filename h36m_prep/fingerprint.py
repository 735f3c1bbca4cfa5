"""A fingerprint of the raw files a build reads, so that a store knows its raw data.

Per file: its size and a SHA-256 of its content (pose and calibration files, which are small)
or of its first and last megabyte (videos: the container header and index live there, and a
re-encoded, truncated or replaced video changes them). A build resumed from other raw data
is refused, naming the first file that differs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

EDGE = 1 << 20  # bytes hashed at each end of a video


def file_fingerprint(path: Path, whole: bool) -> str:
    """'size:sha256' of the file (whole) or of its first and last EDGE bytes."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if whole or size <= 2 * EDGE:
            h.update(f.read())
        else:
            h.update(f.read(EDGE))
            f.seek(size - EDGE)
            h.update(f.read(EDGE))
    return f"{size}:{h.hexdigest()}"


def raw_fingerprint(raw: Path, videos: list[Path], whole_files: list[Path]) -> dict:
    """{files: {path relative to raw: 'size:sha256'}, digest: one SHA-256 over them all}."""
    files = {str(Path(p).relative_to(raw)): file_fingerprint(Path(p), whole)
             for whole, group in ((False, videos), (True, whole_files)) for p in group}
    files = dict(sorted(files.items()))
    digest = hashlib.sha256("".join(f"{k}={v}\n" for k, v in files.items()).encode()).hexdigest()
    return {"files": files, "digest": digest}


def first_difference(old: dict, new: dict) -> str | None:
    """The first file (in sorted order) whose fingerprint differs, or that only one side has."""
    a, b = old.get("files", {}), new.get("files", {})
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            why = "missing now" if name not in b else "not in the store's build" if name not in a else "changed"
            return f"{name} ({why})"
    return None
