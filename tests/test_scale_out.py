"""Beyond one machine: a build on a Dask cluster of worker processes, a store in an S3 server,
loaders reading it, two ranks reading it. Real servers on 127.0.0.1 (tests/servers.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from h36m_prep import store as S
from h36m_prep.build import build
from h36m_prep.engines import EngineError
from h36m_prep.inspect_store import info, verify
from h36m_prep.lock import LOCK_NAME, LockedError
from h36m_prep.store.location import LocationError, locate
from servers import S3Server

distributed = pytest.importorskip("distributed", reason="Dask's distributed is not installed: cluster tests skipped")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """An S3 server with the bucket `stores`; its credentials in the environment while in use."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        try:
            server.make_bucket("stores")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"SeaweedFS started but would not make a bucket ({e}): S3 tests skipped")
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(scope="module")
def cluster():
    """Two Dask worker processes (one thread each) and a scheduler, talking TCP on 127.0.0.1."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as c:
        yield c


def same_store(a, b) -> None:
    """Every array of two stores equal (pixels, metadata, medians, status), and their attributes
    but the raw path."""
    ga, gb = S.open_store(a), S.open_store(b)
    names = sorted(_arrays(ga))
    assert names == sorted(_arrays(gb))
    for name in names:
        x, y = ga[name][...], gb[name][...]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{name} differs"
    drop = lambda attrs: {k: v for k, v in attrs.items() if k not in ("notes",)}  # noqa: E731
    assert drop(dict(ga.attrs)) == drop(dict(gb.attrs))


def _arrays(g) -> list[str]:
    medians = [f"medians/{s}/{c}" for s in g["medians"].group_keys() for c in g[f"medians/{s}"].array_keys()]
    return list(S.store_arrays(g)) + medians


# ---------------------------------------------------------------- Dask


def test_a_store_built_on_a_dask_cluster_equals_the_local_build(small_raw, small_store, small_build_cfg, cluster,
                                                                 tmp_path):
    out = tmp_path / "dask.zarr"
    r = build(small_raw, out, small_build_cfg, progress=False, scheduler=cluster.scheduler_address)
    assert r["units_done"] == 16 and r["frames_written"] == 16 * 48
    same_store(out, small_store)


def test_a_worker_killed_mid_build_has_its_unit_rerun_and_the_store_still_equals(small_raw, small_store,
                                                                                 small_build_cfg, cluster, tmp_path):
    from distributed import Client

    out = tmp_path / "killed.zarr"
    result, errors = {}, []

    def run():
        try:
            result.update(build(small_raw, out, small_build_cfg, progress=False, scheduler=cluster.scheduler_address))
        except BaseException as e:  # reported by the test below
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        deadline = time.time() + 600
        while killed is None and time.time() < deadline and thread.is_alive():
            busy = [w for w, tasks in client.processing().items()
                    if any(job in str(t) for t in tasks for job in ("_unit_job", "_view_job"))]
            if busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)  # the nanny starts a new worker; the scheduler reruns its task
                killed = busy[0]
            time.sleep(0.05)
    thread.join(900)
    assert killed is not None, "no worker was ever seen writing a unit"
    assert not errors, errors
    assert result["units_done"] == 16
    same_store(out, small_store)


def test_an_unreachable_scheduler_is_named_before_anything_is_written(small_raw, small_build_cfg, tmp_path):
    from servers import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(EngineError, match=f"{address}: cannot reach a Dask scheduler"):
        build(small_raw, tmp_path / "x.zarr", small_build_cfg, progress=False, scheduler=address)
    assert not (tmp_path / "x.zarr").exists()


def test_workers_that_cannot_see_the_raw_folder_are_named(small_raw, small_build_cfg, cluster, tmp_path):
    """A raw folder the workers do not see (not on their filesystem) is named before any job is sent."""
    from h36m_prep.engines import DaskPool

    with pytest.raises(EngineError, match="worker\\(s\\) .* cannot see .*no-such-raw; put .*no-such-raw on a filesystem every worker mounts"):
        pool = DaskPool(cluster.scheduler_address)
        try:
            pool.check(str(tmp_path / "no-such-raw"), locate(tmp_path / "store.zarr"))
        finally:
            pool.close()


# ---------------------------------------------------------------- object storage


@pytest.fixture(scope="module")
def s3_store(s3, small_raw, small_build_cfg):
    url = "s3://stores/small.zarr"
    build(small_raw, url, small_build_cfg, workers=2, progress=False)
    return url


def test_a_store_built_into_s3_verifies_and_equals_the_local_build(s3_store, small_store):
    assert verify(s3_store) == []
    same_store(s3_store, small_store)
    i = info(s3_store)
    assert i["complete"] and i["bytes"] > 0 and i["units"]["done"] == 16
    assert LOCK_NAME not in locate(s3_store).top()  # the writer's lock is released


def test_a_dask_cluster_builds_into_s3_a_store_equal_to_the_local_build(s3, small_raw, small_store,
                                                                         small_build_cfg):
    from distributed import LocalCluster

    url = "s3://stores/dask.zarr"
    # a cluster started with the credentials in its environment, as a real cluster's workers hold them
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=40) as with_credentials:
        r = build(small_raw, url, small_build_cfg, progress=False, scheduler=with_credentials.scheduler_address)
    assert r["units_done"] == 16
    same_store(url, small_store)
    assert verify(url) == []


@pytest.mark.parametrize("ahead", [0, 4])
def test_the_pair_loader_reads_s3_batches_equal_to_the_local_stores(s3_store, small_store, ahead):
    from pairloader import PairLoader

    kw = dict(batch_size=4, seed=7, backend="opencv", workers=2, steps=3)
    remote = list(PairLoader(s3_store, ahead=ahead, **kw))
    local = list(PairLoader(small_store, **kw))
    for a, b in zip(remote, local, strict=True):
        assert a["step"] == b["step"]
        for k in ("x1", "x2", "sync_label", "flip_label", "row1", "row2"):
            assert torch_equal(a[k], b[k]), k


def test_the_pose_loader_reads_s3_batches_equal_to_the_local_stores(s3_store, small_store):
    from pairloader import PoseLoader

    kw = dict(batch_size=4, seed=3, backend="opencv", workers=1, steps=2, out_size=64)
    for a, b in zip(PoseLoader(s3_store, **kw), PoseLoader(small_store, **kw), strict=True):
        assert torch_equal(a["image"], b["image"]) and torch_equal(a["target"], b["target"])


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_damaged_object_is_found_by_verify_and_the_rebuild_repairs_it(s3, small_raw, small_build_cfg):
    url = "s3://stores/damaged.zarr"
    build(small_raw, url, small_build_cfg, workers=1, progress=False)
    loc = locate(url)
    loc.delete("images/c/5/0/0/0")
    loc.write("masks/c/7/0/0", b"garbage")
    problems = verify(url)
    assert any("images row 5" in p and "s3://stores/damaged.zarr/images/c/5/0/0/0" in p for p in problems), problems
    assert any("masks row 7" in p for p in problems), problems
    from h36m_prep.inspect_store import damaged_chunks, mark_damaged

    marked = mark_damaged(url, damaged_chunks(url))
    assert len(marked["units"]) == 1  # rows 5 and 7 are one (sequence, camera)
    build(small_raw, url, small_build_cfg, workers=1, progress=False)
    assert verify(url) == []


def test_a_second_writer_is_refused_and_a_dead_writers_lock_taken_over(s3, small_raw, small_build_cfg, capfd):
    url = "s3://stores/locked.zarr"
    loc = locate(url)
    owner = {"host": "elsewhere", "pid": 1234, "command": "h36m-prep build", "started": "then"}
    loc.write(LOCK_NAME, json.dumps(owner | {"beat": time.time()}).encode())
    with pytest.raises(LockedError, match="in use by another writer .*pid 1234 on elsewhere"):
        build(small_raw, url, small_build_cfg, workers=1, progress=False)
    assert loc.top() == [LOCK_NAME]  # nothing written
    loc.write(LOCK_NAME, json.dumps(owner | {"beat": time.time() - 3600}).encode())
    build(small_raw, url, small_build_cfg, workers=1, progress=False)
    assert "taking over the lock of pid 1234 on elsewhere" in capfd.readouterr().err
    assert verify(url) == [] and LOCK_NAME not in loc.top()


# ---------------------------------------------------------------- bad input


def test_a_missing_bucket_is_named_before_anything_is_written(s3, small_raw, small_build_cfg):
    with pytest.raises(LocationError, match="the bucket 'nobucket' does not exist; create it first"):
        build(small_raw, "s3://nobucket/x.zarr", small_build_cfg, workers=1, progress=False)


def test_wrong_or_missing_credentials_and_an_unreachable_endpoint_are_named(s3, small_raw, small_build_cfg, monkeypatch):
    from servers import free_port

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(LocationError, match="access denied .* set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        build(small_raw, "s3://stores/denied.zarr", small_build_cfg, workers=1, progress=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    t = time.time()
    with pytest.raises(LocationError, match="s3://stores/denied.zarr: .*set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        build(small_raw, "s3://stores/denied.zarr", small_build_cfg, workers=1, progress=False)
    assert time.time() - t < 60
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env()["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env()["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LocationError, match="cannot reach the store's endpoint http://127.0.0.1:"):
        S.open_store("s3://stores/small.zarr")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    assert locate("s3://stores/denied.zarr").top() == []  # nothing was written under the bad credentials


def test_a_prefix_that_is_not_a_store_is_refused(s3, small_raw, small_build_cfg):
    loc = locate("s3://stores/other")
    loc.write("notes.txt", b"somebody's files")
    with pytest.raises(S.StoreError, match="s3://stores/other: not a Zarr store"):
        S.open_store("s3://stores/other")
    with pytest.raises(S.StoreError, match="s3://stores/other: exists and is not an h36m-prep store"):
        build(small_raw, "s3://stores/other", small_build_cfg, workers=1, progress=False)
    assert loc.sizes() == {"notes.txt": len(b"somebody's files")}  # left as it was


def test_store_urls_are_parsed_or_refused_with_the_fix(tmp_path):
    assert locate(f"file://{tmp_path}/a.zarr").path == tmp_path / "a.zarr"
    assert not locate(str(tmp_path / "a.zarr")).remote and locate("s3://b/p.zarr").remote
    for url, why in (("ftp://host/x", "unknown store scheme 'ftp'"), ("s3://bucket", "no prefix in the URL"),
                     ("s3:///x", "no bucket in the URL"), ("file://host/x", "names a path on this machine")):
        with pytest.raises(LocationError, match=why):
            locate(url)


def test_the_cli_never_writes_a_local_folder_named_after_a_url(small_raw, tmp_path):
    """`h36m-prep build RAW s3://...` once wrote a folder `s3:` in the current directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    r = subprocess.run([sys.executable, "-m", "h36m_prep.cli", "build", str(small_raw), "s3://bucket/store.zarr"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "s3://bucket/store.zarr: cannot reach the store's endpoint" in r.stderr
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []
    r = subprocess.run([sys.executable, "-m", "h36m_prep.cli", "info", "gopher://x/y"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unknown store scheme 'gopher'" in r.stderr


# ---------------------------------------------------------------- many nodes


RANK_SCRIPT = """
import json, os, sys
import torch.distributed as dist
from pairloader import PairLoader
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
loader = PairLoader(sys.argv[1], batch_size=4, seed=11, backend="opencv", workers=1, steps=2, rank=rank,
                    world_size=world)
anchors, sums = [], []
for batch in loader:
    anchors += batch["row1"][batch["sync_label"] == 1].tolist()
    sums.append(float(batch["x1"].double().sum()))
out = [None] * world
dist.all_gather_object(out, {"rank": rank, "anchors": anchors, "sums": sums})
if rank == 0:
    json.dump(out, open(sys.argv[2], "w"))
dist.destroy_process_group()
"""


def test_two_ranks_read_the_s3_store_and_draw_disjoint_anchors(s3_store, small_store, tmp_path):
    """torchrun with two processes (gloo), as two nodes would run it; each rank's batches equal the
    same rank's from the local store."""
    from pairloader import PairLoader

    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "ranks.json"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                        "--master-addr", "127.0.0.1", "--master-port", str(_port()), str(script), s3_store, str(out)],
                       capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = json.loads(out.read_text())
    assert [x["rank"] for x in ranks] == [0, 1]
    assert not set(ranks[0]["anchors"]) & set(ranks[1]["anchors"])
    for x in ranks:
        local = PairLoader(small_store, batch_size=4, seed=11, backend="opencv", workers=1, steps=2, rank=x["rank"],
                           world_size=2)
        assert [float(b["x1"].double().sum()) for b in local] == x["sums"]


def _port() -> int:
    from servers import free_port

    return free_port()
