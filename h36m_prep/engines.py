"""Where the build's jobs run: in this process, in a local process pool, or on a Dask cluster.

The build's unit of work (one sequence in one camera, each view's median background, or a whole
view decoded once) is a function of picklable arguments that writes only its own pixel chunks and
returns its per-frame metadata; the driver writes what spans units. So the same jobs run wherever an engine puts them:

    Inline     workers 1: in the build's own process
    LocalPool  a spawn-context process pool on this machine (the default)
    DaskPool   an existing Dask cluster (`--scheduler tcp://HOST:PORT`): the jobs are tasks; a task
               whose worker dies is rerun by the scheduler on another worker

Every engine: submit(fn, *args) -> a future; finished(futures, timeout) -> those done;
frames() -> frames written so far by running jobs (for progress), or None where only finished
jobs count; stop(futures) at once (Ctrl-C, an error); close(). `window`: how many jobs to keep
submitted at once (inline: one, so that each unit's metadata is written before the next runs).
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from .errors import ToolkitError

_counter = None


class EngineError(ToolkitError, RuntimeError):
    """A cluster that cannot run the build; the message names the address and the fix."""


def _init_worker(counter, in_pool: bool = False) -> None:
    global _counter
    _counter = counter
    if in_pool:
        import cv2

        cv2.setNumThreads(1)  # one process a core: OpenCV's own threads would only contend with the others
        # Ctrl-C reaches the whole process group: the main process stops the workers
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def tick(n: int) -> None:
    """Count n frames written (shown by the build's progress bar; a no-op on a cluster)."""
    if _counter is not None:
        with _counter.get_lock():
            _counter.value += n


class Inline:
    """Jobs run in the calling process when submitted (a stop between jobs leaves the rest unrun)."""

    window = 1

    def __init__(self):
        self.counter = mp.get_context("spawn").Value("q", 0)
        _init_worker(self.counter)

    def submit(self, fn, *args) -> Future:
        fut = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as e:  # the driver decides what a failed job means
            fut.set_exception(e)
        return fut

    def finished(self, futures, timeout: float) -> set:
        return set(futures)

    def frames(self) -> int:
        return self.counter.value

    def stop(self, futures=()) -> None:
        pass

    def close(self) -> None:
        _init_worker(None)


class LocalPool:
    """A process pool of `workers` spawned processes on this machine."""

    window = 1 << 30

    def __init__(self, workers: int):
        ctx = mp.get_context("spawn")
        self.counter = ctx.Value("q", 0)
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                        initargs=(self.counter, True))

    def submit(self, fn, *args) -> Future:
        return self.pool.submit(fn, *args)

    def finished(self, futures, timeout: float) -> set:
        done, _ = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
        return done

    def frames(self) -> int:
        return self.counter.value

    def stop(self, futures=()) -> None:
        """Kill the pool's worker processes (a unit they were writing stays pending: the rerun redoes it)."""
        for proc in list((self.pool._processes or {}).values()):  # no public way before Python 3.14
            proc.terminate()
        for proc in list((self.pool._processes or {}).values()):
            proc.join(10)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class DaskPool:
    """An existing Dask cluster, reached at `address` (tcp://HOST:PORT). Its workers must run this
    version of the toolkit and see the raw folder at the same path (a shared filesystem) and the
    store (the same shared folder, or object storage with the same credentials)."""

    window = 1 << 30

    def __init__(self, address: str, connect_s: float = 20, workers_s: float = 60):
        try:
            from distributed import Client
        except ImportError:
            raise EngineError("--scheduler needs Dask's `distributed`: pip install 'multiview-sync[cluster]'") from None
        try:
            self.client = Client(address, timeout=f"{connect_s}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise EngineError(f"{address}: cannot reach a Dask scheduler there ({e}); start one (`dask scheduler`, "
                              "then `dask worker ADDRESS` on each machine) or check the address and port") from None
        self.address = address
        try:
            self.client.wait_for_workers(1, timeout=workers_s)
        except (TimeoutError, OSError):
            self.client.close()
            raise EngineError(f"{address}: the scheduler has no workers after {workers_s:.0f} s; start some "
                              f"(`dask worker {address}`)") from None

    def check(self, raw: str, store) -> None:
        """Every worker runs this toolkit's version and sees RAW and the store: else an error
        naming the workers and the fix, before any job is sent."""
        from .build import code_version

        def _sees(raw: str, store) -> dict:
            import os

            from .build import code_version as version
            from .store.location import locate

            loc = locate(store)
            return {"version": version(), "raw": os.path.isdir(raw), "store": loc.remote or loc.path.is_dir()}

        try:
            seen = self.client.run(_sees, raw, store)
        except Exception as e:  # a worker without this package cannot unpickle the function
            raise EngineError(f"{self.address}: the workers cannot run the build ({type(e).__name__}: {e}); install "
                              "this toolkit in the workers' environment (`pip install multiview-sync`)") from None
        mine = code_version()
        problems = {  # what a worker reports -> (is it wrong, what is wrong, the fix)
            "version": (lambda v: v != mine, "run another version of multiview-sync",
                        f"install multiview-sync {mine} on them"),
            "raw": (lambda v: not v, f"cannot see {raw}",
                    f"put {raw} on a filesystem every worker mounts at the same path"),
            "store": (lambda v: not v, f"cannot see {store}",
                      f"put {store} on a shared filesystem, or use object storage (s3://...)")}
        for what, (wrong, problem, fix) in problems.items():
            bad = sorted(w for w, s in seen.items() if wrong(s[what]))
            if bad:
                detail = f" (they run {sorted({seen[w]['version'] for w in bad})})" if what == "version" else ""
                raise EngineError(f"{self.address}: worker(s) {', '.join(bad)} {problem}{detail}; {fix}")

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def finished(self, futures, timeout: float) -> set:
        deadline = time.monotonic() + timeout
        while True:  # a Dask future's done() asks this client's state, no round trip
            done = {f for f in futures if f.done()}
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.02)

    def frames(self) -> None:
        return None

    def stop(self, futures=()) -> None:
        """Cancel the build's tasks (a unit being written stays pending: the rerun redoes it)."""
        self.client.cancel(list(futures), force=True)

    def close(self) -> None:
        self.client.close()


def engine(workers: int, scheduler: str | None):
    """The engine of a build: Dask at `scheduler`, else a local pool of `workers` processes
    (0: one per core; 1: inline)."""
    if scheduler:
        return DaskPool(scheduler)
    workers = max(1, workers or mp.cpu_count())
    return LocalPool(workers) if workers > 1 else Inline()
