"""Where a store lives: a local folder, or a prefix in object storage.

    STORE                       a local folder (as before)
    file:///abs/path/store.zarr the same, as a URL
    s3://bucket/prefix          Amazon S3 or any S3-compatible server (MinIO, SeaweedFS, R2, ...)
    gs://bucket/prefix          Google Cloud Storage
    az://container/prefix       Azure Blob Storage

Object storage is reached through obstore (Rust's object_store) and, for Zarr, Zarr v3's
`ObjectStore`; credentials and endpoint come from the usual environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL; GOOGLE_APPLICATION_CREDENTIALS;
AZURE_STORAGE_ACCOUNT_NAME, ...). An endpoint given as http:// is allowed plain HTTP.

A `Location` is what every part of the store module asks for bytes by key ("images/zarr.json",
"images/c/12/0/0/0"), so the reader, verify and the build see one interface whether the chunks
are files or objects. It pickles by URL: worker processes and Dask tasks open their own clients.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ToolkitError

REMOTE_SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss")
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a server other than AWS)",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS (a service-account JSON file)",
    "az": "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
}


def read_file(path: str) -> bytes:
    """The bytes of a file, through the descriptor alone (a third cheaper than a Python file
    object for the loader's many small chunk files)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        while len(data) < size:  # a short read: only for very large files
            more = os.read(fd, size - len(data))
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)


class LocationError(ToolkitError, ValueError):
    """A store location that cannot be used; the message names the URL and the fix."""


def is_url(spec) -> bool:
    """Whether `spec` is written as a URL (scheme://...), as opposed to a local path."""
    return isinstance(spec, str) and "://" in spec


def locate(spec: "str | Path | Location") -> "Location":
    """The Location of a STORE argument: a path, a file:// URL, or an object-storage URL."""
    if isinstance(spec, Location):
        return spec
    if not is_url(spec):
        return Location(str(spec), Path(spec))
    parsed = urlparse(spec)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise LocationError(f"{spec}: a file:// URL names a path on this machine (file:///abs/path); "
                                f"got host {parsed.netloc!r}")
        return Location(spec, Path(parsed.path))
    if scheme not in REMOTE_SCHEMES:
        raise LocationError(f"{spec}: unknown store scheme {scheme!r}; a store is a local path, file:///path, "
                            "s3://bucket/prefix, gs://bucket/prefix or az://container/prefix")
    if not parsed.netloc:
        raise LocationError(f"{spec}: no bucket in the URL; write {scheme}://BUCKET/PREFIX")
    if not parsed.path.strip("/"):
        raise LocationError(f"{spec}: no prefix in the URL; a store needs its own prefix in the bucket, "
                            f"for example {scheme}://{parsed.netloc}/store.zarr")
    return Location(spec.rstrip("/"), None)


def _family(scheme: str) -> str:
    return {"s3a": "s3", "abfs": "az", "abfss": "az"}.get(scheme, scheme)


class Location:
    """A store's place. `path` is the local folder, None for object storage."""

    def __init__(self, url: str, path: Path | None):
        self.url, self.path = url, path
        self._root = None if path is None else str(path)  # keys joined as strings: a loader reads thousands a second
        self._obj = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"url": self.url, "path": self.path}

    def __setstate__(self, state):
        self.__init__(state["url"], state["path"])

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Location) and (self.url, self.path) == (other.url, other.path)

    def __hash__(self) -> int:
        return hash((self.url, self.path))

    @property
    def remote(self) -> bool:
        return self.path is None

    @property
    def scheme(self) -> str:
        return _family(urlparse(self.url).scheme.lower()) if self.remote else "file"

    def name(self, key: str = "") -> str:
        """The file or object of `key` as a user reads it in a message."""
        if not key:
            return self.url
        return os.path.join(self._root, key) if not self.remote else f"{self.url}/{key}"

    # ------------------------------------------------------------ object storage clients

    def objects(self, retries: int = 4, timeout_s: float = 60.0):
        """The obstore store of this prefix (made once per process)."""
        if self._obj is None:
            with self._lock:
                if self._obj is None:
                    self._obj = self._client(retries, timeout_s)
        return self._obj

    def _client(self, retries: int, timeout_s: float):
        from obstore.store import from_url

        options = {"connect_timeout": "5s", "timeout": f"{max(1, int(timeout_s))}s"}
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT") or ""
        if self.scheme == "s3" and endpoint.startswith("http://"):
            options["allow_http"] = True
        retry = {"max_retries": retries, "retry_timeout": timedelta(seconds=timeout_s),
                 "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5),
                             "base": 2}}
        try:
            return from_url(self.url, client_options=options, retry_config=retry)
        except Exception as e:  # obstore raises its own kinds for a malformed configuration
            raise LocationError(f"{self.url}: cannot configure a client for it ({type(e).__name__}: {e}); "
                                f"set {CREDENTIALS.get(self.scheme, 'the credentials of the store')}") from None

    def zarr_store(self, read_only: bool = False):
        """What zarr.open_group takes: the folder, or a Zarr ObjectStore on this prefix."""
        if not self.remote:
            return str(self.path)
        from zarr.storage import ObjectStore

        return ObjectStore(self.objects(), read_only=read_only)

    # ------------------------------------------------------------ bytes by key

    def read(self, key: str) -> bytes | None:
        """The bytes of `key`, None when it does not exist."""
        if not self.remote:
            try:
                return read_file(self._root + os.sep + key)
            except (FileNotFoundError, NotADirectoryError):
                return None
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            return bytes(obstore.get(self.objects(), key).bytes())
        except (NotFoundError, FileNotFoundError):
            return None
        except Exception as e:  # the network and the server raise many kinds
            raise self.explain(e) from None

    async def read_async(self, key: str) -> bytes | None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            result = await obstore.get_async(self.objects(), key)
            return bytes(await result.bytes_async())
        except (NotFoundError, FileNotFoundError):
            return None

    def write(self, key: str, data: bytes) -> None:
        """Store `data` at `key`, whole or not at all: on a disk through a temporary file renamed
        over the key (as Zarr writes a chunk), so a reader or a killed writer never leaves half."""
        if not self.remote:
            target = os.path.join(self.path, key)
            partial = f"{target}.{os.getpid()}-{threading.get_ident()}.partial"
            try:
                try:
                    f = open(partial, "wb")
                except FileNotFoundError:  # its folder is made once, by the first chunk written into it
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    f = open(partial, "wb")
                with f:
                    f.write(data)
                os.replace(partial, target)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
            return
        import obstore

        try:
            obstore.put(self.objects(), key, data)
        except Exception as e:  # the network and the server raise many kinds
            raise self.explain(e) from None

    def create(self, key: str, data: bytes) -> bool:
        """Write `key` only if it does not exist (atomically: a conditional put on object storage,
        O_EXCL on a disk) -> whether it was written."""
        if not self.remote:
            target = self.path / key
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self.objects(), key, data, mode="create")
            return True
        except (AlreadyExistsError, PreconditionError):
            return False
        except Exception as e:  # the network and the server raise many kinds
            raise self.explain(e) from None

    def delete(self, key: str) -> None:
        if not self.remote:
            with contextlib.suppress(FileNotFoundError):
                (self.path / key).unlink()
            return
        import obstore
        from obstore.exceptions import NotFoundError

        with contextlib.suppress(NotFoundError, FileNotFoundError):
            obstore.delete(self.objects(), key)

    def exists(self, key: str) -> bool:
        if not self.remote:
            return (self.path / key).exists()
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            obstore.head(self.objects(), key)
            return True
        except (NotFoundError, FileNotFoundError):
            return False
        except Exception as e:  # the network and the server raise many kinds
            raise self.explain(e) from None

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """{key: bytes} of every file or object under `prefix` ("" = the whole store)."""
        if not self.remote:
            root = self.path / prefix if prefix else self.path
            return _file_sizes(str(self.path), str(root)) if root.is_dir() else {}
        import obstore

        try:
            out = {}
            for batch in obstore.list(self.objects(), prefix=prefix.rstrip("/") + "/" if prefix else None):
                for meta in batch:
                    out[meta["path"]] = int(meta["size"])
            return out
        except Exception as e:  # the network and the server raise many kinds
            raise self.explain(e) from None

    def top(self) -> list[str]:
        """The names directly inside the store (files and folders; objects and prefixes)."""
        if not self.remote:
            return [p.name for p in self.path.iterdir()] if self.path.is_dir() else []
        import obstore

        try:
            listing = obstore.list_with_delimiter(self.objects())
        except Exception as e:  # the network and the server raise many kinds
            raise self.explain(e) from None
        return [o["path"].rstrip("/").split("/")[-1] for o in listing["objects"]] + \
            [p.rstrip("/").split("/")[-1] for p in listing["common_prefixes"]]

    def remove_all(self, keep: tuple[str, ...] = ()) -> None:
        """Delete everything in the store but the top-level names in `keep`."""
        if not self.remote:
            import shutil

            for child in self.path.iterdir() if self.path.is_dir() else []:
                if child.name not in keep:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            return
        for key in self.sizes():
            if key.split("/")[0] not in keep:
                self.delete(key)

    # ------------------------------------------------------------ reachability

    def check(self) -> None:
        """Before anything is read or written: the endpoint answers, the credentials are accepted,
        the bucket exists. Raises LocationError naming the URL and the fix. (A local folder: nothing
        to check.)"""
        if not self.remote:
            return
        import obstore

        probe = Location(self.url, None)
        probe._obj = probe._client(retries=1, timeout_s=10)
        try:
            obstore.list_with_delimiter(probe.objects())
        except Exception as e:  # the network and the server raise many kinds
            raise self.explain(e) from None

    def explain(self, e: Exception) -> LocationError:
        """An obstore error as a message naming the URL and the fix."""
        text = str(e)
        bucket = urlparse(self.url).netloc
        creds = CREDENTIALS.get(self.scheme, "the store's credentials")
        low = text.lower()
        if "nosuchbucket" in low or "bucket does not exist" in low or "containernotfound" in low:
            return LocationError(f"{self.url}: the bucket {bucket!r} does not exist; create it first (for S3: "
                                 f"`aws s3 mb {self.scheme}://{bucket}`, or in your provider's console)")
        if any(s in low for s in ("invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied", "403 forbidden",
                                  "401 unauthorized", "permission", "credential", "unauthenticated")):
            return LocationError(f"{self.url}: access denied ({_first_line(text)}); set {creds}, or check that "
                                 "they may read and write this bucket")
        if any(s in low for s in ("connect", "dns", "timed out", "timeout", "connection refused", "error sending")):
            endpoint = os.environ.get("AWS_ENDPOINT_URL") if self.scheme == "s3" else None
            return LocationError(f"{self.url}: cannot reach the store's endpoint"
                                 f"{f' {endpoint} (AWS_ENDPOINT_URL)' if endpoint else ''} ({_first_line(text)}); "
                                 "check the address, that the server runs, and the network")
        return LocationError(f"{self.url}: {type(e).__name__}: {_first_line(text)}")


def _first_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "..."


class ReadAhead:
    """Concurrent GETs of keys a reader will ask for soon, on one event loop thread; what came
    back waits in a bounded cache (oldest dropped first) until asked for. For object storage,
    where every chunk costs a round trip: a batch's chunks are requested together, and the
    batches the sampler has already planned are requested before they are rendered."""

    def __init__(self, location: Location, capacity: int = 4096, concurrency: int = 64):
        self.location, self.capacity = location, capacity
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="read-ahead", daemon=True)
        self._thread.start()
        self._limit = asyncio.Semaphore(concurrency)
        self._cache: dict[str, object] = {}  # key -> concurrent.futures.Future of bytes | None
        self._guard = threading.Lock()

    async def _get(self, key: str):
        async with self._limit:
            return await self.location.read_async(key)

    def request(self, keys) -> None:
        """Start fetching `keys` (those not already fetched or under way)."""
        with self._guard:
            for key in keys:
                if key not in self._cache:
                    self._cache[key] = asyncio.run_coroutine_threadsafe(self._get(key), self._loop)
            while len(self._cache) > self.capacity:
                self._cache.pop(next(iter(self._cache))).cancel()

    def read(self, key: str) -> bytes | None:
        """The bytes of `key`: from a fetch under way or done, else fetched now."""
        with self._guard:
            fut = self._cache.get(key)
        if fut is None:
            self.request([key])
            with self._guard:
                fut = self._cache.get(key)
        try:
            return fut.result()
        except Exception as e:  # the network and the server raise many kinds
            with self._guard:
                self._cache.pop(key, None)  # a failed fetch is not kept: the next ask retries
            raise self.location.explain(e) from None

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def _file_sizes(base: str, root: str) -> dict[str, int]:
    """{path relative to base: bytes} of every file under root (a store holds a folder per chunk
    row, tens of thousands of them: os.scandir reads each folder's entries once, where
    Path.rglob and a stat a file took seconds)."""
    out, folders = {}, [root]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    folders.append(e.path)
                elif e.is_file():
                    out[os.path.relpath(e.path, base)] = e.stat().st_size
    return out
