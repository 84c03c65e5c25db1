"""A real S3 server on loopback (moto) holding an IDC-style public bucket.

The server runs as a subprocess (``moto_server``) so s5cmd, a separate Go
binary, talks to it over HTTP exactly as it talks to IDC's bucket. The bucket
gets a public-read policy because IDC downloads are anonymous
(``--no-sign-request``), which moto refuses (403) without one.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "idc-open-data"  # IDC's public bucket name, so URLs look like the index's
_DUMMY = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def free_port() -> int:
    """A loopback port nothing listens on (bound once by us, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_server_command() -> list[str]:
    beside_python = Path(sys.executable).with_name("moto_server")
    found = str(beside_python) if beside_python.is_file() else shutil.which("moto_server")
    if found is None:
        pytest.fail(
            "moto_server not found: the IDC download tests need moto's S3 server; install the test extra "
            "(.venv/bin/pip install -c constraints.txt 'moto[server]')",
            pytrace=False,
        )
    return [found]


@dataclass(frozen=True)
class MotoS3:
    """The running server: its endpoint and a way to put objects under IDC-style keys."""

    endpoint_url: str
    client: object  # boto3 S3 client

    def seed_series(self, files: Sequence[Path], folder: str | None = None) -> str:
        """Upload ``files`` as ``<folder>/<uuid>.dcm`` (IDC's layout); return the series URL ``s3://bucket/folder/*``."""
        folder = folder or str(uuid.uuid4())
        for path in files:
            self.client.upload_file(str(path), BUCKET, f"{folder}/{uuid.uuid4()}.dcm")
        return f"s3://{BUCKET}/{folder}/*"


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """Start moto's S3 server on 127.0.0.1, create the public bucket, stop the server afterwards."""
    command = _moto_server_command()
    try:
        import boto3
    except ImportError:
        pytest.fail("boto3 missing: it comes with 'moto[server]', reinstall the test extra", pytrace=False)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # The request log goes to a file: a pipe nobody reads would fill and block the server.
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [*command, "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_up(endpoint, process, log_path)
        client = boto3.client("s3", endpoint_url=endpoint, **_DUMMY)
        client.create_bucket(Bucket=BUCKET)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
                }
            ],
        }
        client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
        yield MotoS3(endpoint_url=endpoint, client=client)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _wait_until_up(endpoint: str, process: subprocess.Popen, log_path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = log_path.read_text(errors="replace")[-2000:]
            pytest.fail(f"moto_server exited with status {process.returncode}: {err}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    pytest.fail(f"moto_server did not answer on {endpoint} within {timeout_s} s", pytrace=False)
