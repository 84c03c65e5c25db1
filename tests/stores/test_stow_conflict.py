"""A store that refuses to overwrite: STOW-RS of a changed instance under the same UIDs (HTTP 409).

The Google Cloud Healthcare API stores an identical copy of an instance it holds but answers 409
Conflict, FailureReason 272 (0x0110), to a changed one (reported in dcmjs-org/dcmjs#249 and
GoogleCloudPlatform/nodejs-docs-samples#3502); it offers the non-standard Delete Instance. Our reruns
write changed copies under the same UIDs on purpose (a new consensus SEG and QC SR; a Beam retry
re-encodes a SEG with a new content time), and every store's ``put`` replaces. No Healthcare API
here: the server below is a real HTTP server on 127.0.0.1 that behaves as those reports describe.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid

from dicom_io.stores import DicomWebStore, StoreConflictError
from pipeline.cli import main
from tests.support.stow import LoopbackServers, QuietHandler, dicom_parts, small_instance, sop_uid, stow_response

PROCESSING_FAILURE = 0x0110  # 272, the FailureReason the Healthcare API gives with its 409


@dataclass
class NoOverwriteServer:
    """What the server holds (SOP UID -> (study, series, bytes)) and every request it answered."""

    url: str
    held: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)
    requests: list[tuple[str, int]] = field(default_factory=list)  # (method, status answered)


@pytest.fixture
def no_overwrite_server() -> Iterator[Callable[..., NoOverwriteServer]]:
    servers = LoopbackServers()

    def start(allow_delete: bool = True) -> NoOverwriteServer:
        class Handler(QuietHandler):
            def _answer(self, status: int, payload: bytes = b"", content_type: str = "application/dicom+json") -> None:
                seen.requests.append((self.command, status))
                self.send_response(status)
                if payload:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:  # STOW-RS: identical copies are fine, changed ones are refused
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stored, refused = [], []
                for part in dicom_parts(body, self.headers["Content-Type"]):
                    ds_uid = sop_uid(part)
                    if ds_uid in seen.held and seen.held[ds_uid][2] != part:
                        refused.append(ds_uid)
                        continue
                    ds = pydicom.dcmread(io.BytesIO(part), force=True)
                    seen.held[ds_uid] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), part)
                    stored.append(ds_uid)
                self._answer(409 if refused else 200, stow_response(stored, refused, PROCESSING_FAILURE))

            def do_GET(self) -> None:  # QIDO-RS for instances of a series, filtered by SOPInstanceUID
                url = urlsplit(self.path)
                wanted = parse_qs(url.query).get("SOPInstanceUID", [None])[0]
                rows = [{"0020000D": {"vr": "UI", "Value": [study]}, "0020000E": {"vr": "UI", "Value": [series]},
                         "00080018": {"vr": "UI", "Value": [uid]}}
                        for uid, (study, series, _) in seen.held.items() if uid == wanted and series in url.path]
                self._answer(200, json.dumps(rows).encode()) if rows else self._answer(204)

            def do_DELETE(self) -> None:  # the Healthcare API's Delete Instance
                uid = self.path.rstrip("/").rsplit("/", 1)[-1]
                if not allow_delete:
                    self._answer(405)
                elif seen.held.pop(uid, None) is None:
                    self._answer(404)
                else:
                    self._answer(200)


        seen = NoOverwriteServer(url=servers.start(Handler))
        return seen

    yield start
    servers.stop()


def _store(url: str) -> DicomWebStore:
    return DicomWebStore(url, timeout=5, retries=1, backoff_s=0.05, max_wait_s=1.0)


def _held(server: NoOverwriteServer, ds) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(server.held[ds.SOPInstanceUID][2]), force=True)


def _changed(ds):
    changed = copy.deepcopy(ds)
    changed.SeriesDescription = "rerun"
    return changed


def test_identical_copy_is_stored_without_deleting(no_overwrite_server):
    server = no_overwrite_server()
    ds = small_instance()
    store = _store(server.url)
    store.put(ds)
    store.put(ds)
    assert server.requests == [("POST", 200), ("POST", 200)]


def test_changed_copy_replaces_the_held_instance(no_overwrite_server):
    server = no_overwrite_server()
    ds = small_instance()
    store = _store(server.url)
    store.put(ds)
    location = store.put(_changed(ds))
    assert server.requests[1:] == [("POST", 409), ("GET", 200), ("DELETE", 200), ("POST", 200)]
    assert _held(server, ds).SeriesDescription == "rerun"
    assert location.endswith(f"/instances/{ds.SOPInstanceUID}")


def test_batch_replaces_only_the_changed_instances(no_overwrite_server):
    server = no_overwrite_server()
    study = generate_uid()
    first = [small_instance(study) for _ in range(3)]
    store = _store(server.url)
    store.put_many(first)
    second = [first[0], _changed(first[1]), small_instance(study)]
    store.put_many(second)
    assert [method for method, _ in server.requests].count("DELETE") == 1  # only the changed one
    assert set(server.held) == {ds.SOPInstanceUID for ds in [*first, second[2]]}
    assert _held(server, first[1]).SeriesDescription == "rerun"
    assert "SeriesDescription" not in _held(server, first[0])


def test_server_without_delete_says_what_it_refused_and_keeps_the_original(no_overwrite_server):
    server = no_overwrite_server(allow_delete=False)
    ds = small_instance()
    store = _store(server.url)
    store.put(ds)
    with pytest.raises(StoreConflictError, match=rf"{ds.SOPInstanceUID}.*HTTP 409.*0x0110.*Delete Instance.*HTTP 405"):
        store.put(_changed(ds))
    assert "SeriesDescription" not in _held(server, ds)


def test_stage1_stores_the_segs_of_a_series_in_one_request(no_overwrite_server, sample_dir, tmp_path):
    server = no_overwrite_server()
    manifest = tmp_path / "manifest.parquet"
    assert main(["segment", "--dicom-folder", str(sample_dir / "ct"), "--source", "baseline",
                 "--augment", "noise(20)", "--augment", "intensity(scale=1.05)", "--out", server.url,
                 "--manifest", str(manifest), "--cache-dir", str(tmp_path / "cache")]) == 0
    rows = pd.read_parquet(manifest)
    assert sorted(rows.status) == ["written"] * 3
    assert [method for method, _ in server.requests if method == "POST"] == ["POST"]  # one STOW-RS for the series
    assert set(server.held) == set(rows.seg_sop_instance_uid)
