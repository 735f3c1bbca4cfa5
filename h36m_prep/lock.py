"""One writer at a time: a build holds its store, a training run its `--out` folder.

The lock is the file FOLDER/.writer.lock, holding the owner's host, pid, command and start time,
and an advisory `flock` on it, which the kernel drops when the owner dies in any way (SIGKILL
included). A second writer finds the `flock` taken and is refused with the owner's details; a
lock file left by a dead owner has no `flock` and is taken over with a note.

A store in object storage has no `flock`: its lock is the object STORE/.writer.lock, created only
if absent (a conditional put, atomic on S3 and its kin) and rewritten by its owner every
HEARTBEAT_S seconds; a lock not rewritten for STALE_S seconds belongs to a dead owner and is
taken over with a note.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from .errors import ToolkitError

LOCK_NAME = ".writer.lock"
HEARTBEAT_S, STALE_S = 15.0, 90.0  # object storage: how often the owner rewrites its lock; when it is dead


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


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


@contextlib.contextmanager
def exclusive(folder, what: str):
    """Hold FOLDER's writer lock for the block; `what` names the folder in messages ("store",
    "run folder"). FOLDER: a path, or a store's Location (a folder or object storage). A folder
    made for the lock is removed again if the block left it empty. Raises LockedError when
    another process holds it."""
    from .store.location import Location

    if isinstance(folder, Location):
        if folder.remote:
            with _exclusive_object(folder, what):
                yield
            return
        folder = folder.path
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
    me = _me()
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


@contextlib.contextmanager
def _exclusive_object(loc, what: str):
    """The lock of a store in object storage: a conditional create, a heartbeat, a release."""
    me = _me()
    record = lambda: json.dumps(me | {"beat": time.time()}).encode()  # noqa: E731
    if not loc.create(LOCK_NAME, record()):
        raw = loc.read(LOCK_NAME) or b"{}"
        try:
            owner = json.loads(raw)
        except ValueError:
            owner = {}
        age = time.time() - float(owner.get("beat", 0))
        if age < STALE_S:
            raise LockedError(f"{loc}: this {what} is in use by another writer ({_describe(owner)}, alive "
                              f"{age:.0f} s ago); wait for it to finish or stop it, or use another {what}")
        print(f"note: {loc}: taking over the lock of {_describe(owner)}, silent for {age:.0f} s (stopped or "
              "killed)", file=sys.stderr, flush=True)
        loc.delete(LOCK_NAME)
        if not loc.create(LOCK_NAME, record()):
            raise LockedError(f"{loc}: another writer took this {what} at the same moment; use another {what}")
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat is retried at the next one
                loc.write(LOCK_NAME, record())

    thread = threading.Thread(target=beat, name="writer-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        loc.delete(LOCK_NAME)
