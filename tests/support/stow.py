"""Pieces of STOW-RS servers for tests: loopback HTTP servers, the multipart body's parts, the PS3.18 response,
small instances."""

from __future__ import annotations

import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def dicom_parts(body: bytes, content_type: str) -> list[bytes]:
    """The DICOM parts of a multipart/related STOW-RS body, as sent."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type).group(1).encode()
    parts = []
    for part in body.split(b"\r\n--" + boundary)[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        parts.append(part.split(b"\r\n\r\n", 1)[1])
    return parts


def sop_uid(part: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(part), force=True).SOPInstanceUID)


def stow_response(stored: list[str], failed: list[str], failure_reason: int = 0x0111) -> bytes:
    """A PS3.18 STOW-RS response body in DICOM JSON: referenced (stored) and failed SOP instances."""
    def item(uid: str, **extra) -> dict:
        return {"00081150": {"vr": "UI", "Value": [SecondaryCaptureImageStorage]},
                "00081155": {"vr": "UI", "Value": [uid]}, **extra}

    body = {}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [item(uid) for uid in stored]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [item(uid, **{"00081197": {"vr": "US", "Value": [failure_reason]}})
                                                  for uid in failed]}
    return json.dumps(body).encode()


def small_instance(study_uid: str | None = None, payload_bytes: int = 0) -> Dataset:
    """A small Secondary Capture instance, with ``payload_bytes`` of private data to give it a size."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.PatientID = "BONEHUB-TEST"
    if payload_bytes:
        ds.add_new(0x00091010, "OB", bytes(payload_bytes))  # private data: only here to make the instance big
        ds.add_new(0x00090010, "LO", "BONEHUB TEST")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the test output clean."""

    def log_message(self, *args) -> None:
        pass


class LoopbackServers:
    """HTTP servers on 127.0.0.1, each in its own thread, all stopped by ``stop``."""

    def __init__(self) -> None:
        self._servers: list[ThreadingHTTPServer] = []

    def start(self, handler: type[BaseHTTPRequestHandler]) -> str:
        """Serve ``handler`` on a free port; the base URL of its DICOMweb root."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/dicom-web"

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
