"""BoneHub-Dataset folders: subjects, masks of both layout versions, records, and refused names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicom_io.bonehub_layout import BoneHubLayoutError, check_ids, find_subjects, segmentation_files
from labels.errors import BoneHubInputError


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _dataset(root: Path, dataset_id: str, subjects: dict[int, tuple[str, ...]], *, records: list | None = None,
             info: dict | None = None) -> Path:
    """Dataset_<id> with one image per subject number and the given mask names."""
    folder = root / f"Dataset_{dataset_id}"
    for number, masks in subjects.items():
        _touch(folder / "Image" / f"{dataset_id}_{number:06d}.nii.gz")
        for name in masks:
            _touch(folder / "Segmentation" / name)
    if records is not None:
        (folder / f"Subject_info_{dataset_id}.json").write_text(json.dumps(records))
    if info is not None:
        (folder / f"Dataset_info_{dataset_id}.json").write_text(json.dumps(info))
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Dataset_001 in layout v2 (records, info), Dataset_002 in layout v1 without JSON files."""
    _dataset(tmp_path, "001", {1: ("001_000001.seg.nrrd",), 2: ()},
             records=[{"dataset_id": 1, "subject_id": 1, "age": 65, "gender": "F", "image": True},
                      {"dataset_id": 1, "subject_id": 3, "image": False}],
             info={"dataset_id": 1, "name": "Phantom", "schema_version": "2.0.0"})
    _dataset(tmp_path, "002", {7: ("002_000007.nii.gz", "002_000007_vertebrae.seg.nrrd")})
    _touch(tmp_path / "README.txt")
    (tmp_path / "Dataset_002" / "Mesh").mkdir()
    return tmp_path


def test_subjects_of_every_dataset_in_order(root: Path) -> None:
    subjects = find_subjects(root)
    assert [(s.dataset_id, s.subject_id) for s in subjects] == [("001", "001_000001"), ("001", "001_000002"),
                                                                ("002", "002_000007")]
    first, second, third = subjects
    assert first.image == root / "Dataset_001" / "Image" / "001_000001.nii.gz"
    assert first.segmentations == (root / "Dataset_001" / "Segmentation" / "001_000001.seg.nrrd",)
    assert first.subject_info["age"] == 65 and first.subject_info["gender"] == "F"
    assert first.dataset_info["schema_version"] == "2.0.0"
    assert second.segmentations == () and second.subject_info == {}
    assert [p.name for p in third.segmentations] == ["002_000007.nii.gz", "002_000007_vertebrae.seg.nrrd"]
    assert third.subject_info == {} and third.dataset_info == {}


def test_one_dataset_folder_as_root(root: Path) -> None:
    subjects = find_subjects(root / "Dataset_002")
    assert [s.subject_id for s in subjects] == ["002_000007"]
    assert segmentation_files(root / "Dataset_002", "002", "002_000007") == subjects[0].segmentations
    assert segmentation_files(root, "002", "002_000007") == subjects[0].segmentations
    assert segmentation_files(root, "001", "001_000002") == ()


@pytest.mark.parametrize("dataset_id, subject_id", [
    ("../001", "001_000001"), ("001", "../001_000001"), ("001", "002_000001"), ("001", "001_1"), ("", ""),
    ("001", "001_000001/../x")])
def test_ids_that_could_leave_the_layout_are_refused(root: Path, dataset_id: str, subject_id: str) -> None:
    with pytest.raises(BoneHubInputError, match="BoneHub (dataset|subject) id"):
        segmentation_files(root, dataset_id, subject_id)
    check_ids("001", "001_000001")


def test_missing_dataset_folder_named(root: Path) -> None:
    with pytest.raises(BoneHubLayoutError, match="Dataset_009"):
        segmentation_files(root, "009", "009_000001")


@pytest.mark.parametrize("bad, named", [
    ("Dataset_1/Image/1_000001.nii.gz", "Dataset_1"),
    ("Dataset_001/Image/001_01.nii.gz", "001_01.nii.gz"),
    ("Dataset_001/Image/002_000001.nii.gz", "002_000001.nii.gz"),
    ("Dataset_001/Image/001_000001.nrrd", "001_000001.nrrd"),
    ("Dataset_001/Segmentation/001_000001.seg.nrrd.bak", "001_000001.seg.nrrd.bak"),
    ("Dataset_001/Segmentation/001_000001_.nii.gz", "001_000001_.nii.gz"),
])
def test_names_outside_the_layout_are_refused_by_name(tmp_path: Path, bad: str, named: str) -> None:
    _dataset(tmp_path, "001", {1: ()})
    _touch(tmp_path / bad)
    with pytest.raises(BoneHubLayoutError, match=named.replace(".", r"\.")):
        find_subjects(tmp_path)


def test_hidden_files_and_other_subjects_masks_are_skipped(tmp_path: Path) -> None:
    folder = _dataset(tmp_path, "001", {1: ("001_000001.seg.nrrd", "001_000002.seg.nrrd")})
    _touch(folder / "Image" / ".DS_Store")
    (subject,) = find_subjects(tmp_path)
    assert [p.name for p in subject.segmentations] == ["001_000001.seg.nrrd"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "unreadable JSON"), ('{"subject_id": 1}', "expected a JSON list"),
    ('[{"subject_id": "1"}]', "integer subject_id"), ('[{"dataset_id": 2, "subject_id": 1}]', "dataset_id 2"),
    ('[{"subject_id": 1}, {"subject_id": 1}]', "two records")])
def test_bad_subject_records_are_refused(tmp_path: Path, content: str, message: str) -> None:
    folder = _dataset(tmp_path, "001", {1: ()})
    (folder / "Subject_info_001.json").write_text(content)
    with pytest.raises(BoneHubLayoutError, match=f"Subject_info_001.json.*{message}"):
        find_subjects(tmp_path)


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no Dataset_NNN folder"), (lambda p: _touch(p / "x.nii.gz"), "not a folder"),
    (lambda p: (p / "Dataset_001").mkdir() or p, "no Image/ folder"),
    (lambda p: p / "missing", "not a folder")])
def test_roots_that_are_not_a_bonehub_dataset(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(BoneHubLayoutError, match=message):
        find_subjects(make(tmp_path))
