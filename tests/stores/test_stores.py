"""Every store (local folder, GCS emulator, Orthanc DICOMweb) keeps a real SEG and gives it back unchanged."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pydicom
import pytest
from pydicom.uid import generate_uid

from dicom_io.stores import DicomWebStore, GcsStore, InstanceNotFoundError, InstanceRef, LocalStore, Store, open_store


def _uids(ds) -> tuple[str, str, str]:
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def _copy(ds) -> pydicom.Dataset:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_put_then_exists_get_and_list(store, sample_seg):
    uids = _uids(sample_seg)
    assert isinstance(store, Store)
    assert not store.exists(*uids)

    location = store.put(sample_seg)

    assert store.exists(*uids)
    back = store.get(*uids)
    assert back.SOPInstanceUID == sample_seg.SOPInstanceUID
    assert back.SOPClassUID == sample_seg.SOPClassUID
    assert back.file_meta.TransferSyntaxUID == sample_seg.file_meta.TransferSyntaxUID
    assert back.PixelData == sample_seg.PixelData
    ref = InstanceRef(*uids, "SEG")
    assert store.list_instances() == [ref]
    assert store.list_instances(series_uid=sample_seg.SeriesInstanceUID) == [ref]
    assert store.list_instances(modality="SEG") == [ref]
    assert store.list_instances(series_uid=sample_seg.SeriesInstanceUID, modality="SEG") == [ref]
    assert store.list_instances(study_uid=sample_seg.StudyInstanceUID, modality="SEG") == [ref]
    assert store.list_instances(modality="CT") == []
    assert store.list_instances(series_uid=generate_uid()) == []

    tail = "/".join(uids)
    if isinstance(store, LocalStore):
        assert location == (store.root / uids[0] / uids[1] / f"{uids[2]}.dcm").as_uri()
        assert Path(url2pathname(urlsplit(location).path)).is_file()
    elif isinstance(store, GcsStore):
        assert location == f"{store.uri}/{tail}.dcm"
    else:
        assert location == f"{store.url}/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}"
    # a store travels to Beam workers by pickling: the client is dropped and recreated on first use
    clone = pickle.loads(pickle.dumps(store))
    assert clone.uri == store.uri and clone.exists(*uids)


def test_putting_again_replaces_instead_of_duplicating(store, sample_seg):
    uids = _uids(sample_seg)
    first = store.put(sample_seg)
    rerun = _copy(sample_seg)
    rerun.SeriesDescription = "rerun of the same source"
    second = store.put(rerun)

    assert first == second
    assert store.list_instances(series_uid=sample_seg.SeriesInstanceUID) == [InstanceRef(*uids, "SEG")]
    assert store.get(*uids).SeriesDescription == "rerun of the same source"


def test_missing_instance(store, sample_seg):
    store.put(sample_seg)
    missing = (sample_seg.StudyInstanceUID, sample_seg.SeriesInstanceUID, generate_uid())
    assert not store.exists(*missing)
    with pytest.raises(InstanceNotFoundError, match=missing[2]):
        store.get(*missing)
    assert not store.exists(generate_uid(), generate_uid(), generate_uid())
    assert store.list_instances(study_uid=generate_uid()) == []


def test_ct_series_through_dicomweb(empty_orthanc, sample_dir):
    from dicomweb_client import DICOMwebClient

    store = open_store(empty_orthanc.dicomweb_url)
    slices = [pydicom.dcmread(path) for path in sorted((sample_dir / "ct").glob("*.dcm"))]
    assert len(slices) == 30
    for ds in slices:
        store.put(ds)

    series_uid = slices[0].SeriesInstanceUID
    found = DICOMwebClient(empty_orthanc.dicomweb_url).search_for_series(search_filters={"SeriesInstanceUID": series_uid})
    assert len(found) == 1
    assert found[0]["00080060"]["Value"] == ["CT"]
    assert found[0]["00201209"]["Value"] == [30]  # NumberOfSeriesRelatedInstances
    refs = store.list_instances(series_uid=series_uid)
    assert sorted(ref.sop_uid for ref in refs) == sorted(ds.SOPInstanceUID for ds in slices)
    assert {ref.modality for ref in refs} == {"CT"}
    back = store.get(*_uids(slices[7]))
    assert back.PixelData == slices[7].PixelData


def test_gcs_lists_objects_written_by_other_tools(gcs_bucket, sample_seg):
    """Objects without our metadata get their modality from their header; other keys are ignored."""
    from google.cloud import storage

    store = open_store(f"gs://{gcs_bucket}/outputs")
    uids = _uids(sample_seg)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, sample_seg, enforce_file_format=True)
    bucket = storage.Client().bucket(gcs_bucket)
    bucket.blob(f"outputs/{'/'.join(uids)}.dcm").upload_from_string(buffer.getvalue())
    bucket.blob("outputs/manifest.parquet").upload_from_string(b"not dicom")
    bucket.blob(f"outputs/{uids[0]}/notes.txt").upload_from_string(b"not dicom")

    assert store.list_instances(modality="SEG") == [InstanceRef(*uids, "SEG")]
    assert store.exists(*uids)


def test_open_store_picks_the_store_from_the_uri(tmp_path):
    assert isinstance(open_store(tmp_path), LocalStore)
    assert open_store(tmp_path.as_uri()).root == tmp_path.resolve()
    assert open_store(str(tmp_path)).uri == tmp_path.resolve().as_uri()
    gcs = open_store("gs://bucket/some/prefix/")
    assert isinstance(gcs, GcsStore) and (gcs.bucket_name, gcs.prefix, gcs.uri) == ("bucket", "some/prefix", "gs://bucket/some/prefix")
    web = open_store("dicomweb+https://pacs.example.org/dicom-web/")
    assert isinstance(web, DicomWebStore) and web.url == "https://pacs.example.org/dicom-web"
    assert isinstance(open_store("http://127.0.0.1:8042/dicom-web"), DicomWebStore)
    with_token = open_store("https://pacs.example.org/dicom-web?token_env=PACS_TOKEN")
    assert with_token.token_env == "PACS_TOKEN" and with_token.url == "https://pacs.example.org/dicom-web"
    assert open_store(with_token.uri).token_env == "PACS_TOKEN"
