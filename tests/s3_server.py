"""An S3-compatible HTTP server on loopback for the s3 destination's tests.

Real S3-compatible servers were tried first: SeaweedFS is not packaged for this Debian
release (no `seaweedfs`/`seaweedfs-bin` in apt) nor on PyPI, MinIO ships only as a
binary download (not from Debian or PyPI), and Ceph's radosgw needs a RADOS cluster. So
this starts **moto's standalone server** (`moto[server]` from PyPI): a separate process
speaking the S3 REST API over HTTP on a free loopback port, with SigV4 requests,
multipart uploads and server-side-encryption headers, which our obstore client talks to
exactly as to AWS. It is a faithful emulator, not a storage product: durability and
consistency are not what is tested here, the protocol is.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "wk-test-access"
SECRET_KEY = "wk-test-secret-key-0123456789"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def new_bucket(self) -> str:
        name = f"wk-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return sorted(found)

    def destination_yaml(self, bucket: str, prefix: str = "", **extra: str) -> str:
        """Return a flow-style `s3` destination for monitor.yaml."""
        items = {
            "type": "s3",
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": self.endpoint,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "allow_http": "true",
            **extra,
        }
        return "{" + ", ".join(f'{k}: "{v}"' if k != "allow_http" else f"{k}: {v}"
                               for k, v in items.items()) + "}"  # fmt: skip


def _server_command(port: int) -> list[str]:
    script = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if script:
        return [script, "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A moto S3 server process on a free loopback port for the test session."""
    pytest.importorskip("obstore", reason="the s3 destination needs obstore (watchkeeper[s3])")
    pytest.importorskip("moto.server", reason="no S3-compatible server: pip install 'moto[server]'")
    port = _free_port()
    log = tmp_path_factory.mktemp("s3") / "server.log"
    env = {**os.environ, "MOTO_PORT": str(port)}
    with open(log, "w") as out:
        process = subprocess.Popen(
            _server_command(port), stdout=out, stderr=subprocess.STDOUT, env=env
        )
    server = S3Server(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"the S3 server did not start: {log.read_text()[-500:]}")
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
