"""Real servers for the store tests, started once per session on 127.0.0.1 and stopped by PID at the end.

- Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) with its DICOMweb plugin, own storage and index folders.
- gcp-storage-emulator (PyPI, the ``test`` extra), in memory.

A missing server program fails the tests (it never skips them): CI installs both.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicom_io.stores import open_store

DICOMWEB_PLUGIN_GLOBS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/lib/*/orthanc/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so",
)
FULL = "seg_totalsegmentator_v2_full.nii.gz"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _wait_until_answering(url: str, proc: subprocess.Popen, log: Path, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with code {proc.returncode} before answering {url}:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers, even if not with 200
        except OSError:
            time.sleep(0.1)
    _stop(proc)
    pytest.fail(f"{what} did not answer {url} within {timeout_s:.0f} s:\n{_log_tail(log)}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _orthanc_binary() -> str:
    found = shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.access(p, os.X_OK)), None)
    if not found:
        pytest.fail("the Orthanc binary is missing: run `make system-deps` (installs the Debian packages orthanc and orthanc-dicomweb)")
    return found


def _dicomweb_plugin() -> str:
    for pattern in DICOMWEB_PLUGIN_GLOBS:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    pytest.fail("Orthanc's DICOMweb plugin (libOrthancDicomWeb.so) is missing: run `make system-deps` "
                "(installs the Debian package orthanc-dicomweb)")


@dataclass(frozen=True)
class OrthancServer:
    rest_url: str  # Orthanc's own REST API (used here only to empty it between tests)
    dicomweb_url: str


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> OrthancServer:
    binary, plugin = _orthanc_binary(), _dicomweb_plugin()
    home = tmp_path_factory.mktemp("orthanc")
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "bonehub-test",
        "StorageDirectory": str(home / "storage"),
        "IndexDirectory": str(home / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomServerEnabled": False,  # DICOMweb only: no DIMSE listener (Orthanc has no bind address option)
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "OverwriteInstances": True,  # a rerun replaces an object with the same UIDs, as the file stores do
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (home / "config.json").write_text(json.dumps(config, indent=2))
    log = home / "orthanc.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, str(home / "config.json")], cwd=home, stdout=out, stderr=subprocess.STDOUT)
    rest = f"http://127.0.0.1:{http_port}"
    try:
        _wait_until_answering(f"{rest}/system", proc, log, "Orthanc")
        _wait_until_answering(f"{rest}/dicom-web/studies", proc, log, "Orthanc's DICOMweb plugin")
        yield OrthancServer(rest_url=rest, dicomweb_url=f"{rest}/dicom-web")
    finally:
        _stop(proc)


def _rest(method: str, url: str):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


@pytest.fixture
def empty_orthanc(orthanc) -> OrthancServer:
    """The session's Orthanc with nothing stored in it."""
    for patient in _rest("GET", f"{orthanc.rest_url}/patients"):
        _rest("DELETE", f"{orthanc.rest_url}/patients/{patient}")
    return orthanc


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> str:
    """Base URL of an in-memory GCS emulator (the value for STORAGE_EMULATOR_HOST)."""
    binary = shutil.which("gcp-storage-emulator", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not binary:
        pytest.fail("gcp-storage-emulator is missing: run `make setup` (installs the `test` extra)")
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(f"{url}/storage/v1/b", proc, log, "gcp-storage-emulator")
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def gcs_bucket(gcs_emulator, monkeypatch) -> str:
    """A new, empty bucket in the emulator; STORAGE_EMULATOR_HOST points at it for this test."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    name = f"bonehub-test-{uuid.uuid4().hex[:12]}"
    storage.Client(project="bonehub-test", credentials=AnonymousCredentials()).create_bucket(name)
    return name


@pytest.fixture(params=["local", "gcs", "dicomweb"])
def store(request, tmp_path):
    """An empty store of each kind."""
    if request.param == "local":
        return open_store(tmp_path / "outputs")
    if request.param == "gcs":
        return open_store(f"gs://{request.getfixturevalue('gcs_bucket')}/outputs/run1")
    return open_store(request.getfixturevalue("empty_orthanc").dicomweb_url, timeout=30)


@pytest.fixture(scope="session")
def sample_seg(sample_ct, sample_schema_maps):
    """A real LABELMAP SEG of the bundled sample (TotalSegmentator result harmonized to the schema)."""
    from dicom_io.provenance import SegmentationSource
    from dicom_io.seg_writer import write_seg

    return write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("TotalSegmentator total", "2.18.0"))
