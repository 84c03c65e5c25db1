"""STOW-RS under a busy server: retried with backoff and Retry-After, bounded in time; refusals are not retried.

The server is a real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread) that answers each
STOW-RS request with the next status of a script, parses the multipart body into DICOM instances and
keeps the ones it accepted, so the tests count attempts and arrivals from the server's side.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from pydicom.uid import generate_uid

from dicom_io.stores import DicomWebStore, StoreUnavailableError, StoreWriteError
from tests.support.stow import LoopbackServers, QuietHandler, dicom_parts, small_instance, sop_uid, stow_response

Answer = tuple[int, dict[str, str]]  # HTTP status, extra headers


@dataclass
class StowServer:
    """What a scripted STOW-RS endpoint saw: one entry per request, and the instances it accepted."""

    url: str
    attempts: list[tuple[int, list[str]]] = field(default_factory=list)  # (status answered, SOP UIDs sent)
    stored: list[str] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)  # every DICOM part received, as sent


@pytest.fixture
def stow_server() -> Iterator[Callable[[Callable[[int], Answer]], StowServer]]:
    """Start a STOW-RS server whose answer to the n-th request (0-based) is ``script(n)``; 200 stores the instances."""
    servers = LoopbackServers()

    def start(script: Callable[[int], Answer]) -> StowServer:
        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                parts = dicom_parts(body, self.headers["Content-Type"])
                seen.parts.extend(parts)
                uids = [sop_uid(part) for part in parts]
                status, headers = script(len(seen.attempts))
                seen.attempts.append((status, uids))
                if status == 200:
                    seen.stored.extend(uids)
                    payload = stow_response(uids, [])
                elif status in (400, 409):  # a refusal that names the instances, as PS3.18 asks
                    payload = stow_response([], uids)
                else:
                    payload = b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if payload:
                    self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # QIDO-RS: the store asks whether a refused instance is held; it is not
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()


        seen = StowServer(url=servers.start(Handler))
        return seen

    yield start
    servers.stop()


def _store(url: str, retries: int = 3) -> DicomWebStore:
    return DicomWebStore(url, timeout=5, retries=retries, backoff_s=0.05, max_wait_s=2.0)


def test_busy_server_is_retried_with_backoff_and_retry_after(stow_server):
    script = {0: (503, {}), 1: (429, {"Retry-After": "1"})}
    server = stow_server(lambda n: script.get(n, (200, {})))
    ds = small_instance()

    started = time.monotonic()
    location = _store(server.url).put(ds)
    elapsed = time.monotonic() - started

    assert [status for status, _ in server.attempts] == [503, 429, 200]
    assert all(uids == [ds.SOPInstanceUID] for _, uids in server.attempts)  # the whole body was sent again
    assert server.stored == [ds.SOPInstanceUID]  # arrived once
    assert location == f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    assert 1.0 <= elapsed < 3.0  # the server's Retry-After: 1 was honoured, nothing more


def test_server_busy_forever_fails_after_the_retries_quickly_naming_url_and_status(stow_server):
    server = stow_server(lambda n: (503, {}))
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"{re.escape(server.url)}.*HTTP 503 after 3 retries"):
        _store(server.url, retries=3).put(small_instance())
    assert len(server.attempts) == 4 and server.stored == []
    assert time.monotonic() - started < 2.0


def test_retry_after_longer_than_the_cap_does_not_park_the_caller(stow_server):
    server = stow_server(lambda n: (429, {"Retry-After": "10"}))  # uncapped, this test would take 20 s and fail
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="HTTP 429 after 2 retries"):
        DicomWebStore(server.url, timeout=5, retries=2, backoff_s=0.05, max_wait_s=0.2).put(small_instance())
    assert len(server.attempts) == 3
    assert time.monotonic() - started < 2.0  # two waits of at most max_wait_s


@pytest.mark.parametrize("status", [400, 409])
def test_refused_stow_is_not_retried(stow_server, status):
    server = stow_server(lambda n: (status, {}))
    ds = small_instance()
    with pytest.raises(StoreWriteError, match=rf"SOP instance {re.escape(ds.SOPInstanceUID)}.*HTTP {status}.*0x0111"):
        _store(server.url).put(ds)
    assert len(server.attempts) == 1 and server.stored == []


def test_put_many_sends_batches_by_count_and_bytes_and_retries_each(stow_server):
    server = stow_server(lambda n: (503, {}) if n == 1 else (200, {}))  # the second request is retried once
    study = generate_uid()
    small = [small_instance(study) for _ in range(5)]
    big = small_instance(study, payload_bytes=300_000)
    datasets = [*small[:3], big, *small[3:]]

    locations = _store(server.url).put_many(datasets, max_instances=2, max_bytes=200_000)

    sent = [uids for _, uids in server.attempts]
    uids = [ds.SOPInstanceUID for ds in datasets]
    # by count: 2 + 1 (the big one does not fit with the third), the big one alone, then 2
    assert sent == [uids[0:2], uids[2:3], uids[2:3], uids[3:4], uids[4:6]]
    assert [status for status, _ in server.attempts] == [200, 503, 200, 200, 200]
    assert server.stored == uids  # each instance arrived once, in order
    assert locations == [f"{server.url}/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
                         for ds in datasets]


def test_put_many_stops_at_the_first_refused_batch_naming_its_instances(stow_server):
    server = stow_server(lambda n: (409, {}) if n == 1 else (200, {}))
    datasets = [small_instance() for _ in range(5)]
    with pytest.raises(StoreWriteError, match=r"2 SOP instances .*HTTP 409") as caught:
        _store(server.url).put_many(datasets, max_instances=2)
    assert all(ds.SOPInstanceUID in str(caught.value) for ds in datasets[2:4])
    assert server.stored == [ds.SOPInstanceUID for ds in datasets[:2]]
    assert len(server.attempts) == 2  # the refused batch is not retried, the last one is not sent


def test_put_many_into_orthanc_in_one_request(empty_orthanc, sample_seg):
    """Three real SEGs in one multipart request: Orthanc stores each and gives them back."""
    segs = []
    for _ in range(3):
        seg = copy.deepcopy(sample_seg)
        seg.SOPInstanceUID = seg.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        segs.append(seg)
    store = _store(empty_orthanc.dicomweb_url)
    locations = store.put_many(segs)
    assert len(set(locations)) == 3
    for seg in segs:
        back = store.get(seg.StudyInstanceUID, seg.SeriesInstanceUID, seg.SOPInstanceUID)
        assert back.SOPInstanceUID == seg.SOPInstanceUID and back.NumberOfFrames == seg.NumberOfFrames


def test_a_deflated_seg_goes_by_stow_as_the_bytes_every_store_writes(stow_server, sample_seg):
    """STOW-RS sends ``dicom_file_bytes`` (zlib-ng level 8), not pydicom's own encoding (level 6, larger)."""
    import io

    import pydicom

    from dicom_io.seg_file import dicom_file_bytes

    server = stow_server(lambda n: (200, {}))
    _store(server.url).put(sample_seg)
    pydicoms = io.BytesIO()
    pydicom.dcmwrite(pydicoms, sample_seg, enforce_file_format=True)
    assert server.parts == [dicom_file_bytes(sample_seg)]
    assert len(server.parts[0]) < len(pydicoms.getvalue())
