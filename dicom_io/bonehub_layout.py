"""The subjects of a BoneHub-Dataset folder: each one's CT image, masks and metadata records.

BoneHub (bonehub.eu) keeps its corpus in one folder layout::

    ROOT/Dataset_NNN/Dataset_info_NNN.json     the dataset's record (name, licence, schema_version ...)
    ROOT/Dataset_NNN/Subject_info_NNN.json     a list with one record per subject (age, gender, weight ...)
    ROOT/Dataset_NNN/Image/NNN_SSSSSS.nii.gz   the subject's CT
    ROOT/Dataset_NNN/Segmentation/NNN_SSSSSS.nii.gz    its mask, layout v1 (4-digit label values)
    ROOT/Dataset_NNN/Segmentation/NNN_SSSSSS.seg.nrrd  its mask, layout v2 (9-digit values in the tags)

``NNN`` is the dataset id (3 digits, zero padded; more digits once past 999) and ``SSSSSS`` the
subject's number in it (6 digits, zero padded). Their converter writes one mask per subject (several
source masks are merged into it); a mask named ``NNN_SSSSSS_<tag>.<ext>`` is also listed as that
subject's, so a folder holding several per subject (e.g. before merging) is read rather than refused.
Mesh/, NURBS/ and Landmark/ are not read. This module only lists files and records; reading the
volumes and masks is ``dicom_io.volume_ct`` / the BoneHub mask reader's job.

Every name is checked against the layout: a ``Dataset_*`` folder whose id is malformed, an Image/ file
that is not ``NNN_SSSSSS.nii.gz`` of its own dataset, a mask name that starts with a subject id but does
not follow the pattern, an id holding anything but digits, or an unreadable JSON record is a
``BoneHubInputError`` naming the path. Hidden files (``.DS_Store`` ...) are skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from labels.errors import BoneHubInputError

IMAGE_SUFFIX = ".nii.gz"
SEGMENTATION_SUFFIXES = (".seg.nrrd", ".nii.gz")  # layout v2, layout v1
_DATASET_ID = re.compile(r"\d{3,}")
_SUBJECT_ID = re.compile(r"(\d{3,})_(\d{6,})")
_DATASET_FOLDER = re.compile(r"Dataset_(.*)")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class BoneHubLayoutError(BoneHubInputError):
    """A BoneHub-Dataset folder, file name or record that does not follow the layout."""


@dataclass(frozen=True)
class BoneHubSubject:
    """One subject of a BoneHub-Dataset: its CT, its masks (possibly none) and its metadata records."""

    dataset_id: str  # "001"
    subject_id: str  # "001_000001"
    image: Path  # Dataset_001/Image/001_000001.nii.gz
    segmentations: tuple[Path, ...]  # Dataset_001/Segmentation/001_000001.seg.nrrd ..., sorted
    subject_info: dict  # this subject's record from Subject_info_001.json, or {}
    dataset_info: dict  # Dataset_info_001.json, or {}


def find_subjects(root: str | Path) -> list[BoneHubSubject]:
    """Every subject with an image under ``root`` (a folder of ``Dataset_NNN/`` folders, or one of them).

    Sorted by dataset id, then subject id. A root holding no ``Dataset_NNN/`` folder is refused.
    """
    subjects = []
    for dataset_id, folder in _dataset_folders(Path(root)):
        dataset_info = _read_json(folder / f"Dataset_info_{dataset_id}.json", dict)
        records = _subject_records(folder / f"Subject_info_{dataset_id}.json", dataset_id)
        for subject_id, image in _images(folder, dataset_id):
            subjects.append(BoneHubSubject(
                dataset_id=dataset_id, subject_id=subject_id, image=image,
                segmentations=_segmentations(folder, subject_id),
                subject_info=records.get(subject_id, {}), dataset_info=dataset_info))
    return subjects


def segmentation_files(root: str | Path, dataset_id: str, subject_id: str) -> tuple[Path, ...]:
    """The masks of one subject (sorted; empty when it has none), ``root`` as for ``find_subjects``."""
    check_ids(dataset_id, subject_id)
    root = Path(root)
    folder = root if root.name == f"Dataset_{dataset_id}" else root / f"Dataset_{dataset_id}"
    if not folder.is_dir():
        raise BoneHubLayoutError(f"{folder}: no such BoneHub dataset folder (dataset {dataset_id})")
    return _segmentations(folder, subject_id)


def check_ids(dataset_id: str, subject_id: str) -> None:
    """Refuse ids that are not ``NNN`` / ``NNN_SSSSSS`` of that dataset (so no path can be built from them)."""
    if not _DATASET_ID.fullmatch(dataset_id or ""):
        raise BoneHubLayoutError(f"BoneHub dataset id {dataset_id!r}: expected digits such as '001'")
    match = _SUBJECT_ID.fullmatch(subject_id or "")
    if match is None or match.group(1) != dataset_id:
        raise BoneHubLayoutError(
            f"BoneHub subject id {subject_id!r}: expected '{dataset_id}_' followed by 6 digits, e.g. '{dataset_id}_000001'")


def _dataset_folders(root: Path) -> list[tuple[str, Path]]:
    """(dataset id, folder) for ``root`` itself when it is ``Dataset_NNN``, else for its ``Dataset_*`` children."""
    if not root.is_dir():
        raise BoneHubLayoutError(f"{root}: not a folder (a BoneHub-Dataset root or a Dataset_NNN folder)")
    if _DATASET_FOLDER.fullmatch(root.name):
        return [(_dataset_id_of(root), root)]
    folders = sorted((_dataset_id_of(child), child) for child in root.iterdir()
                     if child.is_dir() and _DATASET_FOLDER.fullmatch(child.name))
    if not folders:
        raise BoneHubLayoutError(f"{root}: no Dataset_NNN folder in it (not a BoneHub-Dataset root)")
    return folders


def _dataset_id_of(folder: Path) -> str:
    dataset_id = _DATASET_FOLDER.fullmatch(folder.name).group(1)
    if not _DATASET_ID.fullmatch(dataset_id):
        raise BoneHubLayoutError(f"{folder}: a BoneHub dataset folder is named Dataset_ and 3 digits, e.g. Dataset_001")
    return dataset_id


def _images(folder: Path, dataset_id: str) -> list[tuple[str, Path]]:
    """(subject id, image) for every file in ``Image/``, each name checked."""
    image_folder = folder / "Image"
    if not image_folder.is_dir():
        raise BoneHubLayoutError(f"{folder}: no Image/ folder")
    images = []
    for path in sorted(_visible(image_folder)):
        subject_id = path.name[: -len(IMAGE_SUFFIX)] if path.name.endswith(IMAGE_SUFFIX) else ""
        match = _SUBJECT_ID.fullmatch(subject_id)
        if not path.is_file() or match is None or match.group(1) != dataset_id:
            raise BoneHubLayoutError(
                f"{path}: not a BoneHub image name; expected {dataset_id}_SSSSSS{IMAGE_SUFFIX} (6-digit subject number)")
        images.append((subject_id, path))
    return images


def _segmentations(folder: Path, subject_id: str) -> tuple[Path, ...]:
    """The files in ``Segmentation/`` that belong to ``subject_id``; a malformed name of that subject is refused."""
    seg_folder = folder / "Segmentation"
    if not seg_folder.is_dir():
        return ()
    found = []
    for path in _visible(seg_folder):
        name = path.name
        if not name.startswith((f"{subject_id}.", f"{subject_id}_")):
            continue
        suffix = next((s for s in SEGMENTATION_SUFFIXES if name.endswith(s)), None)
        stem = name[len(subject_id): -len(suffix)] if suffix else None
        if not path.is_file() or stem is None or (stem and not (stem[0] == "_" and _TAG.fullmatch(stem[1:]))):
            raise BoneHubLayoutError(
                f"{path}: not a BoneHub mask name; expected {subject_id}.seg.nrrd, {subject_id}.nii.gz "
                f"or {subject_id}_<tag> with one of those endings")
        found.append(path)
    return tuple(sorted(found))


def _subject_records(path: Path, dataset_id: str) -> dict[str, dict]:
    """{subject id: record} from ``Subject_info_NNN.json`` (a list of records with integer ids); {} when absent."""
    records: dict[str, dict] = {}
    for record in _read_json(path, list):
        if not isinstance(record, dict) or not isinstance(record.get("subject_id"), int) or isinstance(
                record.get("subject_id"), bool):
            raise BoneHubLayoutError(f"{path}: every subject record needs an integer subject_id")
        if record.get("dataset_id") not in (None, int(dataset_id)):
            raise BoneHubLayoutError(
                f"{path}: subject {record['subject_id']} has dataset_id {record['dataset_id']}, not {int(dataset_id)}")
        subject_id = f"{dataset_id}_{record['subject_id']:06d}"
        if subject_id in records:
            raise BoneHubLayoutError(f"{path}: subject {subject_id} has two records")
        records[subject_id] = record
    return records


def _read_json(path: Path, kind: type) -> dict | list:
    """The JSON document at ``path`` (an empty ``kind`` when the file is absent), checked to be a ``kind``."""
    if not path.is_file():
        return kind()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BoneHubLayoutError(f"{path}: unreadable JSON ({error})") from None
    if not isinstance(document, kind):
        raise BoneHubLayoutError(f"{path}: expected a JSON {'object' if kind is dict else 'list'}")
    return document


def _visible(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if not path.name.startswith(".")]
