"""One writer at a time: a build holds its store, a training run its `--out` folder.

The lock is the file FOLDER/.writer.lock, holding the owner's host, pid, command and start time,
and an advisory `flock` on it, which the kernel drops when the owner dies in any way (SIGKILL
included). A second writer finds the `flock` taken and is refused with the owner's details; a
lock file left by a dead owner has no `flock` and is taken over with a note.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import ToolkitError

LOCK_NAME = ".writer.lock"


class LockedError(ToolkitError, RuntimeError):
    """Another process writes to the folder; the message names it."""


def _owner(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(owner: dict) -> str:
    if not owner:
        return "a process that has not written its details yet"
    return (f"pid {owner.get('pid')} on {owner.get('host')}, `{owner.get('command')}`, "
            f"started {owner.get('started')}")


@contextlib.contextmanager
def exclusive(folder: str | Path, what: str):
    """Hold FOLDER's writer lock for the block; `what` names the folder in messages ("store",
    "run folder"). A folder made for the lock is removed again if the block left it empty.
    Raises LockedError when another process holds it."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(f"{folder}: this {what} is in use by another writer ({_describe(_owner(path))}); "
                              f"wait for it to finish or stop it, or use another {what}") from None
        try:  # the owner may have removed the file between our open and our flock: lock the file that is there
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _owner(path)
    if stale:
        print(f"note: {folder}: taking over the lock of {_describe(stale)}, which is no longer running "
              "(it was stopped or killed)", file=sys.stderr, flush=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
          "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
        if created:  # nothing written: leave no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
