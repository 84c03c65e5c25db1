"""Offline selection from the IDC index bundled with idc-index-data (no download, no network)."""

from __future__ import annotations

import re
import socket
import time

import duckdb
import pytest

from dicom_io.errors import InvalidUIDError
from dicom_io.idc import (
    IdcSelectionError,
    IdcSeries,
    default_endpoint_url,
    index_parquet_path,
    read_uid_csv,
    resolve,
)

UNKNOWN_UID = "2.25.311111111111111111111111111111111111"  # valid, never issued by IDC
IDC_URL = re.compile(r"s3://idc-open-data[a-z-]*/[0-9a-f-]{36}/\*")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any Python-level connection attempt fails the test: selection must be offline."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def nlst_uids(test_data) -> list[str]:
    return read_uid_csv(test_data / "idc" / "nlst_review_series.csv")


def test_nlst_review_series_resolve_offline_and_fast(test_data, no_network) -> None:
    start = time.perf_counter()
    uids = read_uid_csv(test_data / "idc" / "nlst_review_series.csv")
    series = resolve(series_uids=uids)
    elapsed = time.perf_counter() - start

    assert len(uids) == 18
    assert [s.series_uid for s in series] == uids  # all found, in CSV order
    for s in series:
        assert s.modality == "CT"
        assert s.collection_id == "nlst"
        assert s.instance_count > 0
        assert s.series_size_mb > 0
        assert IDC_URL.fullmatch(s.series_aws_url), s.series_aws_url
    assert len({s.series_aws_url for s in series}) == 18
    assert elapsed < 10, f"offline resolution took {elapsed:.1f} s"


def test_select_by_study_and_collection(nlst_uids, no_network) -> None:
    first = resolve(series_uids=nlst_uids[:1])[0]
    by_study = resolve(study_uids=[first.study_uid])
    assert first in by_study
    assert all(s.study_uid == first.study_uid and s.modality == "CT" for s in by_study)
    # criteria are ANDed
    assert resolve(collection_id="nlst", series_uids=nlst_uids[:2]) == resolve(series_uids=nlst_uids[:2])
    with pytest.raises(IdcSelectionError, match="not in the index or not matching"):
        resolve(collection_id="lidc_idri", series_uids=nlst_uids[:1])


def test_unknown_uids_are_listed(nlst_uids) -> None:
    with pytest.raises(IdcSelectionError) as caught:
        resolve(series_uids=[nlst_uids[0], UNKNOWN_UID, UNKNOWN_UID + "1"])
    message = str(caught.value)
    assert UNKNOWN_UID in message and UNKNOWN_UID + "1" in message
    assert "2 series UID(s)" in message
    assert nlst_uids[0] not in message
    with pytest.raises(IdcSelectionError, match=re.escape(UNKNOWN_UID)):
        resolve(study_uids=[UNKNOWN_UID])
    with pytest.raises(IdcSelectionError, match="collection 'no_such_collection'"):
        resolve(collection_id="no_such_collection")


def test_requested_series_of_other_modality_is_named() -> None:
    with duckdb.connect() as con:
        (seg_uid,) = con.execute(
            "SELECT SeriesInstanceUID FROM read_parquet(?) WHERE Modality = 'SEG' LIMIT 1",
            [str(index_parquet_path())],
        ).fetchone()
    with pytest.raises(IdcSelectionError, match=re.escape(f"{seg_uid} (SEG)")):
        resolve(series_uids=[seg_uid])
    (seg,) = resolve(series_uids=[seg_uid], modality=None)
    assert seg.modality == "SEG"


def test_bad_input_fails_before_any_query() -> None:
    with pytest.raises(InvalidUIDError):
        resolve(series_uids=["1.2.3' OR '1'='1"])
    with pytest.raises(TypeError):
        resolve(series_uids="1.2.3")
    with pytest.raises(ValueError, match="needs collection_id"):
        resolve()
    with pytest.raises(ValueError, match="empty"):
        resolve(series_uids=[])


def test_read_uid_csv(tmp_path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("PatientNote,SeriesInstanceUID\r\nx,1.2.3\r\n,\r\ny,1.2.4\r\nz,1.2.3\r\n")
    assert read_uid_csv(good) == ["1.2.3", "1.2.4"]

    bad = tmp_path / "bad.csv"
    bad.write_text("SeriesInstanceUID\n1.2.3\n1.2.03\n")
    with pytest.raises(InvalidUIDError, match="line 3"):
        read_uid_csv(bad)

    other = tmp_path / "other.csv"
    other.write_text("uid\n1.2.3\n")
    with pytest.raises(ValueError, match="no SeriesInstanceUID column"):
        read_uid_csv(other)


def test_series_record_checks_its_values() -> None:
    fields = dict(
        series_uid="1.2.3", study_uid="1.2.4", collection_id="c", modality="CT",
        instance_count=2, series_aws_url="s3://idc-open-data/abc/*", series_size_mb=1.0,
    )
    IdcSeries(**fields)
    with pytest.raises(ValueError, match="bucket URL"):
        IdcSeries(**fields | {"series_aws_url": "s3://idc-open-data/abc/x.dcm"})
    with pytest.raises(InvalidUIDError):
        IdcSeries(**fields | {"series_uid": "../etc"})


def test_default_endpoint_is_idc_index_global() -> None:
    from idc_index import index

    assert default_endpoint_url() == index.aws_endpoint_url
