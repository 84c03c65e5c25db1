"""Stores fail clearly: unreachable servers, refused writes, bad UIDs, unknown schemes, crashes mid-write."""

from __future__ import annotations

import io
import re
import time
import warnings

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_io.errors import InvalidUIDError
from dicom_io.stores import StoreUnavailableError, StoreWriteError, open_store
from dicom_io.stores.stow import stow_failures as _stow_failures

from .conftest import free_port


def _copy(ds) -> pydicom.Dataset:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _uids(ds) -> tuple[str, str, str]:
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_unreachable_dicomweb_store_fails_fast_and_names_the_uri(sample_seg):
    uri = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    store = open_store(uri, timeout=2)
    calls = {
        "put": lambda: store.put(sample_seg),
        "exists": lambda: store.exists(*_uids(sample_seg)),
        "get": lambda: store.get(*_uids(sample_seg)),
        "list_instances": lambda: store.list_instances(modality="SEG"),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=re.escape(uri)) as caught:
            call()
        assert time.monotonic() - started < 5, name
        assert caught.value.__cause__ is None and caught.value.__suppress_context__, "no raw requests traceback chained"


def test_refused_stow_names_the_http_status_and_the_instance(orthanc, sample_seg):
    store = open_store(f"{orthanc.rest_url}/not-dicom-web", timeout=10)  # a real server, but no STOW-RS there
    with pytest.raises(StoreWriteError, match=rf"SOP instance {re.escape(sample_seg.SOPInstanceUID)}.*HTTP 404"):
        store.put(sample_seg)


def test_stow_failure_reasons_are_reported_per_instance():
    response = Dataset()
    failed = Dataset()
    failed.ReferencedSOPInstanceUID = "1.2.3.4"
    failed.FailureReason = 0xA700
    response.FailedSOPSequence = [failed]
    assert _stow_failures(response, "1.2.3.4") == ["server reports failure reason 0xA700 (out of resources) for SOP instance 1.2.3.4"]
    assert _stow_failures(response, "1.2.3.5") == []
    assert _stow_failures(Dataset(), "1.2.3.4") == []


def test_bearer_token_comes_from_the_environment_and_never_shows(empty_orthanc, sample_seg, monkeypatch):
    secret = "not-a-real-token-0123456789"
    monkeypatch.setenv("BONEHUB_TEST_DICOMWEB_TOKEN", secret)
    store = open_store(empty_orthanc.dicomweb_url, token_env="BONEHUB_TEST_DICOMWEB_TOKEN")
    store.put(sample_seg)  # Orthanc here ignores the header; the request goes through with it
    assert store.exists(*_uids(sample_seg))
    assert secret not in store.uri and secret not in repr(store)

    monkeypatch.delenv("BONEHUB_TEST_DICOMWEB_TOKEN")
    unset = open_store(f"{empty_orthanc.dicomweb_url}?token_env=BONEHUB_TEST_DICOMWEB_TOKEN")
    with pytest.raises(StoreUnavailableError, match="BONEHUB_TEST_DICOMWEB_TOKEN"):
        unset.list_instances()


def test_local_store_refuses_uids_that_would_escape_its_folder(tmp_path, sample_seg):
    root = tmp_path / "outputs"
    store = open_store(root)
    for bad in ("../../x", "1.2/../../3", "", " 1.2", "1.2.a"):
        with pytest.raises(InvalidUIDError):
            store.exists(bad, "1.2", "1.3")
        with pytest.raises(InvalidUIDError):
            store.get("1.2", "1.3", bad)
    with pytest.raises(InvalidUIDError):
        store.list_instances(series_uid="../x")

    evil = _copy(sample_seg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UI value itself
        evil.SOPInstanceUID = "../../../evil"
    with pytest.raises(InvalidUIDError, match="SOPInstanceUID"):
        store.put(evil)
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_unknown_uri_scheme_is_named():
    with pytest.raises(ValueError, match="'s3'"):
        open_store("s3://bucket/outputs")
    with pytest.raises(ValueError, match="token_env"):
        open_store("gs://bucket/outputs", token_env="X")


def test_a_crash_mid_write_leaves_no_object_behind(tmp_path, sample_seg):
    store = open_store(tmp_path / "outputs")
    uids = _uids(sample_seg)
    broken = _copy(sample_seg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # after Pixel Data, so most of the file is written when encoding fails
        broken[0xFFFAFFFA] = DataElement(0xFFFAFFFA, "US", "not a number")
    with pytest.raises(Exception):
        store.put(broken)
    assert not store.exists(*uids)
    assert store.list_instances() == []
    assert [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()] == []  # no temporary file left either

    store.put(sample_seg)
    with pytest.raises(Exception):
        store.put(broken)  # a failed overwrite keeps the object that was there
    assert store.get(*uids).PixelData == sample_seg.PixelData
    assert store.list_instances() == [(*uids, "SEG")]


def test_unreachable_gcs_fails_fast_and_names_the_uri(sample_seg, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    store = open_store("gs://bonehub-outputs/run1", timeout=1)
    for call in (lambda: store.put(sample_seg), lambda: store.exists(*_uids(sample_seg)), lambda: store.list_instances()):
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=re.escape("gs://bonehub-outputs/run1")):
            call()
        assert time.monotonic() - started < 5


def test_missing_gcs_bucket_is_named(gcs_emulator, sample_seg, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    store = open_store("gs://no-such-bucket-bonehub/run1", timeout=10)
    with pytest.raises(StoreUnavailableError, match="'no-such-bucket-bonehub' does not exist"):
        store.put(sample_seg)
    with pytest.raises(StoreUnavailableError, match="'no-such-bucket-bonehub' does not exist"):
        store.list_instances()
