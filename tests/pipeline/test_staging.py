"""Stage 1's hand-over between its CPU and GPU steps (``pipeline.staging``), and the rerun it makes cheap.

The staged CT must be the ``CTSeries`` the reader gave, bit for bit; a label map inferred before a
failure must be used by the rerun instead of running the source again; and nothing stays staged once
every output of a series is stored.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from dicom_io.ct_archive import ct_from_bytes, ct_to_bytes
from dicom_io.errors import DicomInputError
from dicom_io.stores import open_store
from models.segment import SchemaLabels
from pipeline import staging
from pipeline.cli import main
from pipeline.inputs import local_series, store_series
from pipeline.segment_steps import EncodeAndStore, PredictedSeries, SegmentSettings, StagedOutput, StageSeries
from pipeline.stage1 import OutputTask, SourceInfo
from pipeline.staging import Staging, StagingMissingError

SOURCE = "plugin:tests.support.counting_source:CountingSource?calls={calls}"


def _same_ct(a, b) -> None:
    assert b.volume.array.dtype == a.volume.array.dtype == np.float32
    assert np.array_equal(a.volume.array, b.volume.array)
    assert a.volume.geometry_equal(b.volume) and np.array_equal(a.volume.affine, b.volume.affine)
    assert (b.series_instance_uid, b.study_instance_uid, b.frame_of_reference_uid) == (
        a.series_instance_uid, a.study_instance_uid, a.frame_of_reference_uid)
    assert list(b.datasets) == list(a.datasets)  # every header element, private tags included
    assert [d.file_meta for d in b.datasets] == [d.file_meta for d in a.datasets]


def test_staged_ct_is_the_series_as_read(sample_ct, tmp_path):
    data = ct_to_bytes(sample_ct)
    assert len(data) < sample_ct.volume.array.nbytes  # whole HU values travel as int16
    _same_ct(sample_ct, ct_from_bytes(data))

    # HU that are not whole numbers (a rescale slope of 0.5, an intensity augmentation) travel as float32
    fractional = dataclasses.replace(sample_ct, volume=sample_ct.volume.with_array(sample_ct.volume.array + 0.25))
    _same_ct(fractional, ct_from_bytes(ct_to_bytes(fractional)))

    area = Staging(str(tmp_path / "staging"))
    fingerprint = staging.ct_fingerprint(sample_ct)
    uri = area.ct_uri(sample_ct.series_instance_uid, fingerprint)
    assert uri == str(tmp_path / "staging" / sample_ct.series_instance_uid / fingerprint / "ct.npz")
    staging.put_ct(uri, sample_ct)
    _same_ct(sample_ct, staging.get_ct(uri))
    staging.discard(uri)
    staging.discard(uri)  # a retried step discards twice
    with pytest.raises(StagingMissingError, match="not staged"):
        staging.get_ct(uri)

    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    Path(uri).write_bytes(b"PK\x03\x04 not an archive")
    with pytest.raises(DicomInputError, match=f"{uri} is not a staged CT"):
        staging.get_ct(uri)
    with pytest.raises(ValueError, match="SeriesInstanceUID"):
        area.ct_uri("../../etc", fingerprint)


def test_labels_round_trip_compressed(sample_ct, tmp_path):
    labels = np.zeros(sample_ct.volume.spatial_shape, dtype=np.uint16)
    labels[5:9, 20:40, 30:60] = 301
    ct_uri = Staging(str(tmp_path)).ct_uri(sample_ct.series_instance_uid, staging.ct_fingerprint(sample_ct))
    uri = staging.labels_uri(ct_uri, "1.2.826.0.1.3680043.8.498.5")
    staging.put_labels(uri, SchemaLabels(labels, {"femur_left": (33, 10)}))
    back = staging.get_labels(uri)
    assert back.labels.dtype == labels.dtype and np.array_equal(back.labels, labels)
    assert back.statuses == {"femur_left": (33, 10)}
    assert Path(uri).stat().st_size < labels.nbytes / 20


def test_rerun_after_a_failed_store_uses_the_staged_label_maps(sample_dir, sample_ct, tmp_path, caplog):
    calls, store, staged = tmp_path / "calls.txt", tmp_path / "seg", tmp_path / "staging"
    args = ["segment", "--dicom-folder", str(sample_dir / "ct"), "--source", SOURCE.format(calls=calls),
            "--augment", "noise(20)", "--out", str(store), "--staging", str(staged), "--cache-dir", str(tmp_path / "cache")]
    store.mkdir()
    (store / sample_ct.study_instance_uid).write_text("in the way")  # the store cannot make the study's folder

    assert main(args) == 3
    manifest = pd.read_parquet(store / "manifest.parquet")
    assert len(manifest) == 2 and set(manifest.status) == {"failed"}
    assert all(error.startswith("store: NotADirectoryError") for error in manifest.error)
    assert calls.read_text().splitlines() == [sample_ct.series_instance_uid] * 2
    series_dir = staged / sample_ct.series_instance_uid / staging.ct_fingerprint(sample_ct)
    assert sorted(p.name for p in series_dir.iterdir()) == sorted(
        ["ct.npz", *(f"{uid}.labels.npz" for uid in manifest.seg_sop_instance_uid)])

    (store / sample_ct.study_instance_uid).unlink()
    caplog.set_level(logging.INFO, logger="bonehub.segment")
    assert main(args) == 0
    manifest = pd.read_parquet(store / "manifest.parquet")
    assert len(manifest) == 2 and set(manifest.status) == {"written"}
    assert calls.read_text().splitlines() == [sample_ct.series_instance_uid] * 2  # the source did not run again
    assert sum("label map staged before" in r.getMessage() for r in caplog.records) == 2
    assert sum(f"series {sample_ct.series_instance_uid}: staged before" in r.getMessage() for r in caplog.records) == 1
    assert all(Path(location.removeprefix("file://")).is_file() for location in manifest.location)
    assert not series_dir.exists() or not any(series_dir.iterdir())  # all stored: nothing left staged


@pytest.mark.parametrize("keep_downloads", [True, False])
def test_a_staged_download_is_dropped_when_asked(sample_dir, sample_ct, tmp_path, keep_downloads):
    """On Dataflow a CPU worker stages thousands of series: it must not keep each download on its disk."""
    store = open_store(tmp_path / "pacs")
    store.put_many([pydicom.dcmread(path) for path in sorted((sample_dir / "ct").iterdir())])
    (ref,) = store_series(store.uri)
    task = OutputTask(ref, SourceInfo("baseline", "Baseline", "1", True), "none", "labelmap")
    settings = SegmentSettings(sources=(), augmentations=("none",), store_uri=str(tmp_path / "seg"),
                               manifest_uri=str(tmp_path / "manifest.parquet"), cache_dir=str(tmp_path / "cache"),
                               staging_uri=str(tmp_path / "staging"), keep_downloads=keep_downloads)
    (staged,) = StageSeries(settings).process((ref.series_uid, [task]))
    assert staged.tasks == (task,)
    _same_ct(sample_ct, staging.get_ct(staged.ct_uri))
    assert (tmp_path / "cache" / ref.series_uid).is_dir() == keep_downloads


def test_a_retried_encode_step_reports_what_its_first_attempt_stored(sample_dir, sample_ct, tmp_path):
    """Dataflow reruns a bundle whose worker died after storing: the label maps are gone, the SEGs are there."""
    (ref,) = local_series(sample_dir / "ct")
    settings = SegmentSettings(sources=(), augmentations=("none",), store_uri=str(tmp_path / "seg"),
                               manifest_uri=str(tmp_path / "manifest.parquet"), cache_dir=str(tmp_path / "cache"),
                               staging_uri=str(tmp_path / "staging"))
    task = OutputTask(ref, SourceInfo("baseline", "Baseline", "1", True), "none", "labelmap")
    (staged,) = StageSeries(settings).process((ref.series_uid, [task]))
    labels_uri = staging.labels_uri(staged.ct_uri, task.seg_uids[1])
    labels = np.zeros(sample_ct.volume.spatial_shape, dtype=np.uint16)
    labels[10:20, 30:60, 40:80] = 1  # schema id 1: any structure will do
    staging.put_labels(labels_uri, SchemaLabels(labels))
    predicted = PredictedSeries(staged.ct_uri, (StagedOutput(task, labels_uri, 1.0),), complete=True)

    encode = EncodeAndStore(settings)
    encode.setup()
    (first,) = encode.process(predicted)
    assert first.status == "written" and not staging.is_staged(labels_uri) and not staging.is_staged(staged.ct_uri)
    (again,) = encode.process(predicted)  # CT and label map both cleared
    assert again.status == "exists" and again.location == first.location
    staging.put_ct(staged.ct_uri, sample_ct)  # only the label map is gone
    (again,) = encode.process(predicted)
    assert again.status == "exists" and again.location == first.location
    assert not staging.is_staged(staged.ct_uri)  # everything of the series is in the store: the CT goes too

    staging.put_ct(staged.ct_uri, sample_ct)
    Path(first.location.removeprefix("file://")).unlink()  # not stored after all: a real failure, named
    (lost,) = encode.process(predicted)
    assert lost.status == "failed" and lost.error.startswith("read staged labels: StagingMissingError")


def test_new_pixels_under_the_same_uids_are_never_segmented_from_the_old_staged_ct(sample_dir, sample_ct, tmp_path, caplog):
    """A failed store leaves the CT and label maps staged; the series is then re-exported as all air, same UIDs."""
    ct, store, staged = tmp_path / "ct", tmp_path / "seg", tmp_path / "staging"
    ct.mkdir()
    for path in sorted((sample_dir / "ct").iterdir()):
        (ct / path.name).write_bytes(path.read_bytes())
    args = ["segment", "--dicom-folder", str(ct), "--source", "baseline", "--out", str(store), "--staging", str(staged),
            "--cache-dir", str(tmp_path / "cache")]
    store.mkdir()
    (store / sample_ct.study_instance_uid).write_text("in the way")  # the first run cannot store its SEG
    main(args)
    bone_staged = sorted(staged.rglob("*.labels.npz"))
    assert len(bone_staged) == 1 and staging.get_labels(str(bone_staged[0])).labels.any()

    for path in ct.iterdir():  # the same UIDs, now nothing but air
        ds = pydicom.dcmread(path)
        air = (-1000 - float(ds.RescaleIntercept)) / float(ds.RescaleSlope)
        ds.PixelData = np.full((ds.Rows, ds.Columns), air, dtype=ds.pixel_array.dtype).tobytes()
        ds.save_as(path)
    (store / sample_ct.study_instance_uid).unlink()
    caplog.set_level(logging.WARNING, logger="bonehub.segment")
    main(args)
    manifest = pd.read_parquet(store / "manifest.parquet")
    (error,) = manifest.error  # the air CT has no bone: no SEG, instead of the old pixels' SEG full of bone
    assert "EmptySegmentationError" in error and not any(store.rglob("*.dcm"))
    assert any("staged from other pixels" in r.getMessage() for r in caplog.records)
    assert not bone_staged[0].exists()
