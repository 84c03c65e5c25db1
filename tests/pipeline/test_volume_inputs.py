"""``bonehub segment`` on CT volume files and on a BoneHub-Dataset folder: bad volumes fail alone, reruns find
everything, and the manifest carries the source path and the subject columns from the CT headers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from pipeline.cli import main
from pipeline.inputs import volume_inputs
from results.manifest import ManifestRow, merge_into_manifest, read_manifest, subject_from_headers

BASELINE = "BoneHub bone threshold baseline"


def write_nifti_like(volume: hd.Volume, path: Path) -> Path:
    """A (slices, rows, columns) volume as a file with x = columns, y = rows, z = slices, as NIfTI CTs are."""
    image = sitk.GetImageFromArray(np.asarray(volume.array, dtype=np.int16))
    directions = volume.affine[:3, :3] / np.asarray(volume.spacing)
    image.SetSpacing([float(s) for s in volume.spacing[::-1]])
    image.SetDirection(directions[:, ::-1].flatten().tolist())
    image.SetOrigin([float(v) for v in volume.affine[:3, 3]])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def small_ct(sample_ct) -> hd.Volume:
    """The sample CT's lower 12 slices: enough bone for the baseline, fast."""
    return sample_ct.volume[12:24]


@pytest.fixture(scope="module")
def volume_folder(tmp_path_factory, small_ct) -> Path:
    """Two good volumes (NIfTI, NRRD) and one with NaN voxels, beside a README that is not a volume."""
    folder = tmp_path_factory.mktemp("volumes")
    write_nifti_like(small_ct, folder / "a_ct.nii.gz")
    shifted = hd.Volume(small_ct.array[:, ::-1].copy(), small_ct.affine, "PATIENT")
    write_nifti_like(shifted, folder / "b_ct.nrrd")
    image = sitk.GetImageFromArray(np.full((4, 5, 6), np.nan, dtype=np.float32))
    sitk.WriteImage(image, str(folder / "c_bad.nrrd"))
    (folder / "README.txt").write_text("not a volume")
    return folder


def _segment(*args) -> int:
    return main(["segment", "--source", "baseline", *map(str, args)])


def test_folder_of_volumes_bad_one_fails_alone_and_rerun_writes_nothing(volume_folder, tmp_path, capsys):
    store, cache = tmp_path / "seg", tmp_path / "cache"
    assert _segment("--volumes", volume_folder, "--out", store, "--cache-dir", cache) == 3  # ran; one item failed
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("bonehub: error:")]
    assert errors == [f"bonehub: error: {volume_folder / 'c_bad.nrrd'}: 120 voxels are NaN or infinite"]
    assert "bonehub: 1 item(s) failed (listed above)" in captured.err
    assert "2 series x 1 sources" in captured.out

    manifest = read_manifest(store / "manifest.parquet")
    assert sorted(manifest.status) == ["written", "written"] and set(manifest.source) == {BASELINE}
    assert sorted(manifest.source_path) == ["a_ct.nii.gz", "b_ct.nrrd"]
    assert set(manifest.ct_kind) == {"local"} and all("derived_ct" in location for location in manifest.ct_location)
    assert set(manifest.bonehub_subject) == {""} and manifest.patient_weight.isna().all()
    assert len(list((cache / "derived_ct").iterdir())) == 2  # nothing of the bad volume
    segs = {p: p.stat().st_mtime_ns for p in store.rglob("*.dcm")}
    assert len(segs) == 2

    assert _segment("--volumes", volume_folder, "--out", store, "--cache-dir", cache) == 3
    rerun = read_manifest(store / "manifest.parquet")
    assert sorted(rerun.status) == ["exists", "exists"]
    assert sorted(rerun.source_path) == ["a_ct.nii.gz", "b_ct.nrrd"]
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*.dcm")} == segs


def test_csv_of_volumes_and_one_file(volume_folder, tmp_path):
    table = tmp_path / "list" / "volumes.csv"
    table.parent.mkdir()
    table.write_text(f"path,note\n../../{volume_folder.name}/a_ct.nii.gz,x\n\n{volume_folder / 'b_ct.nrrd'},y\nmissing.nii.gz,z\n")
    listed = volume_inputs(table)
    assert [item.source_path for item in listed][0] == f"../../{volume_folder.name}/a_ct.nii.gz"
    assert [item.path.name for item in listed] == ["a_ct.nii.gz", "b_ct.nrrd", "missing.nii.gz"]
    assert [item.source_path for item in volume_inputs(volume_folder / "b_ct.nrrd")] == ["b_ct.nrrd"]


@pytest.mark.parametrize("args, message", [
    (["--volumes", "{folder}", "--dicom-folder", "{folder}"], "give exactly one kind of input"),
    (["--volumes", "{folder}", "--bonehub-dataset", "{folder}"], "got --volumes, --bonehub-dataset"),
    (["--volumes", "{folder}/c_bad.nrrd"], "none of the 1 input volume(s) could be used"),
    (["--volumes", "{folder}/nothing_here.nii.gz"], "does not exist"),
    (["--bonehub-dataset", "{folder}"], "no Dataset_NNN folder"),
])
def test_input_errors_exit_2(volume_folder, tmp_path, capsys, args, message):
    filled = [arg.format(folder=volume_folder) for arg in args]
    assert _segment(*filled, "--out", tmp_path / "seg", "--cache-dir", tmp_path / "cache") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "seg").exists() or not list((tmp_path / "seg").rglob("*.dcm"))


def test_bonehub_dataset_subjects_carry_their_metadata_into_the_manifest(small_ct, tmp_path):
    dataset = tmp_path / "BoneHub" / "Dataset_004"
    write_nifti_like(small_ct, dataset / "Image" / "004_000002.nii.gz")
    (dataset / "Subject_info_004.json").write_text(json.dumps([
        {"dataset_id": 4, "subject_id": 2, "age": 58, "gender": "M", "weight": 81.5, "height": 178, "image": True}]))
    (dataset / "Dataset_info_004.json").write_text(json.dumps({"dataset_id": 4, "name": "Phantoms"}))
    store, cache = tmp_path / "seg", tmp_path / "cache"
    assert _segment("--bonehub-dataset", tmp_path / "BoneHub", "--out", store, "--cache-dir", cache) == 0
    (row,) = read_manifest(store / "manifest.parquet").itertuples()
    assert (row.status, row.source_path, row.bonehub_dataset, row.bonehub_subject) == (
        "written", "Dataset_004/Image/004_000002.nii.gz", "004", "004_000002")
    assert (row.patient_age, row.patient_sex, row.patient_weight, row.patient_height) == ("058Y", "M", 81.5, 1.78)

    assert _segment("--bonehub-dataset", tmp_path / "BoneHub", "--out", store, "--cache-dir", cache) == 0
    (again,) = read_manifest(store / "manifest.parquet").itertuples()
    assert again.status == "exists" and again.bonehub_subject == "004_000002" and again.patient_age == "058Y"


def test_manifest_subject_columns_from_any_ct_headers_and_old_manifests(sample_ct, tmp_path):
    columns = subject_from_headers(sample_ct.datasets[0])
    assert columns["bonehub_subject"] == "" and set(columns) == {
        "bonehub_dataset", "bonehub_subject", "patient_age", "patient_sex", "patient_weight", "patient_height"}
    old = tmp_path / "old.parquet"
    pd.DataFrame([{"series_instance_uid": "1.2.3", "study_instance_uid": "1.2", "source": "s", "source_version": "1",
                   "augmentation": "none", "seg_type": "labelmap", "seg_series_instance_uid": "1.2.4",
                   "seg_sop_instance_uid": "1.2.5", "location": "", "status": "written"}]).to_parquet(old)
    (row,) = read_manifest(old).itertuples()
    assert row.source_path == "" and row.patient_age == "" and math.isnan(row.patient_height)
    merge_into_manifest(old, [ManifestRow("1.2.6", "1.2", "s", "1", "none", "labelmap", "1.2.7", "1.2.8", "", "written",
                                          source_path="v.nii.gz", patient_age="040Y", patient_weight=60.0)])
    before, after = read_manifest(old).itertuples()
    assert (before.source_path, before.patient_age, after.source_path, after.patient_age) == ("", "", "v.nii.gz", "040Y")
    assert math.isnan(before.patient_weight) and after.patient_weight == 60.0
