"""The final labels as an nnU-Net v2 raw dataset, so the curated bones train the next model.

``DatasetNNN_Name/`` under the export folder (which can be ``$nnUNet_raw`` itself):

- ``imagesTr/<case>_0000.nii.gz``: the CT in HU on its own grid (int16 where the HU are whole
  numbers, as they are for stored CT), ``labelsTr/<case>.nii.gz`` on exactly that grid. A case id is
  the series UID with its dots as underscores: stable when series come and go, and reversible.
- labels: background 0, then one value per schema structure trusted somewhere in the export,
  ordered by schema id (1..K), and ``ignore`` = K+1 on every voxel of a bone present but not trusted
  (``SeriesFinal.untrusted``), as nnU-Net's sparse-annotation support defines it: the loss and the
  validation skip those voxels, so an unreviewed bone teaches neither "bone" nor "background".
- ``dataset.json`` (channel ``CT``, the labels, ``ignore`` last, SimpleITK as reader so the model
  sees the arrays the ``nnunet:`` source gives it), ``schema_mapping.csv`` (the mapping
  ``nnunet:MODEL?mapping=`` reads: each label value back to its schema structure),
  ``splits_final.json`` (patient-level folds, ``dataset.nnunet_folds``; copy it into
  ``$nnUNet_preprocessed/DatasetNNN_Name/`` before training) and ``cases.csv`` (case -> series,
  study, patient, validation fold).

Every file is written to a temporary name and replaces the old one only when its bytes differ, so a
rerun changes no file, and files of series that left the selection are removed. The label values
depend on the whole export, so the schema-id maps are staged on disk first and written once all
series are known (memory stays one series).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from dataset.errors import ExportInputError
from dataset.final_labels import SeriesFinal
from dataset.nnunet_folds import DEFAULT_FOLDS, patient_folds, patient_key
from labels.label_sets import present_values
from labels.schema import BoneSchema, default_schema

log = logging.getLogger("bonehub.dataset")

DEFAULT_DATASET_ID = 800
DEFAULT_NAME = "BoneHub"
IGNORE = "ignore"
FILE_ENDING = ".nii.gz"
MAPPING_FILE = "schema_mapping.csv"
CASES_FILE = "cases.csv"
SPLITS_FILE = "splits_final.json"
_INT16 = np.iinfo(np.int16)
# highdicom's ``to_simpleitk`` makes the array's first axis SimpleITK's x; nnU-Net reads ``GetArrayFromImage``
# (z, y, x), and the ``nnunet:`` source gives the model the CT's own array: so the axes are reversed once first,
# and nnU-Net trains on exactly the arrays (and spacing) it later predicts on, as for a DICOM series read by SimpleITK.
_REVERSED = (2, 1, 0)


@dataclass(frozen=True)
class NnUNetExport:
    """What an nnU-Net export holds: its folder, case ids by series UID, label values, folds, files changed."""

    folder: Path
    cases: dict[str, str]  # series UID -> case id
    labels: dict[str, int]  # nnU-Net's dataset.json labels, background first, ignore last
    n_folds: int  # 0: fewer than two patients, no splits_final.json
    changed: tuple[Path, ...]  # files written or removed by this run


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's ``DatasetNNN_Name`` (three digits, a name without spaces or path characters)."""
    if not 1 <= dataset_id <= 999:
        raise ExportInputError(f"nnU-Net dataset id {dataset_id}: must be 1..999 (DatasetNNN_Name)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ExportInputError(f"nnU-Net dataset name {name!r}: letters, digits, '_' and '-' only")
    return f"Dataset{dataset_id:03d}_{name}"


def case_id(series_uid: str) -> str:
    return series_uid.replace(".", "_")


def export_nnunet(finals: Iterable[SeriesFinal], to: str | os.PathLike, *, dataset_id: int = DEFAULT_DATASET_ID,
                  name: str = DEFAULT_NAME, n_folds: int = DEFAULT_FOLDS, schema: BoneSchema | None = None) -> NnUNetExport:
    """Write the nnU-Net raw dataset of ``finals`` under ``to`` (see the module docstring)."""
    schema = schema or default_schema()
    folder = Path(to) / dataset_folder_name(dataset_id, name)
    writer = _Writer()
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".nnunet-staging-", dir=folder) as staging:
        staged = [_stage(final, folder, Path(staging), writer) for final in finals]
        if not staged:
            raise ExportInputError(f"nnU-Net export to {folder}: the selection holds no series with a trusted bone")
        ids = sorted(set().union(*(case.ids for case in staged)))
        if not ids:
            raise ExportInputError(f"nnU-Net export to {folder}: no trusted bone has voxels; nothing to train on")
        labels = {"background": 0, **{schema[i].name: value for value, i in enumerate(ids, start=1)}, IGNORE: len(ids) + 1}
        for case in staged:
            writer.image(_nnunet_labels(case, ids), case.geometry, folder / "labelsTr" / f"{case.case}{FILE_ENDING}")
    cases = {case.series_uid: case.case for case in staged}
    splits = patient_folds({case.case: case.patient for case in staged}, n_folds)
    writer.text(folder / "dataset.json", _json(_dataset_json(labels, len(staged), name)))
    writer.text(folder / MAPPING_FILE, _mapping_csv(labels))
    writer.text(folder / CASES_FILE, _cases_csv(staged, splits))
    if splits:
        writer.text(folder / SPLITS_FILE, _json(splits))
    else:
        writer.remove(folder / SPLITS_FILE)
        log.warning("nnU-Net export %s: %d patient(s), fewer than 2: no %s; train nnU-Net's fold 'all'",
                    folder.name, len({case.patient for case in staged}), SPLITS_FILE)
    if splits and len(splits) < n_folds:
        log.warning("nnU-Net export %s: %d patients for %d folds: %s has %d folds, one per patient",
                    folder.name, len(splits), n_folds, SPLITS_FILE, len(splits))
    _remove_stale(folder, set(cases.values()), writer)
    return NnUNetExport(folder, cases, labels, len(splits), tuple(writer.changed))


@dataclass(frozen=True)
class _Staged:
    series_uid: str
    case: str
    patient: str
    ids: frozenset[int]  # schema ids with voxels in this series
    labels_file: Path  # schema ids (uint16) and the untrusted mask, as .npz
    geometry: hd.VolumeGeometry  # the CT grid


def _stage(final: SeriesFinal, folder: Path, staging: Path, writer: _Writer) -> _Staged:
    """Write the CT image now; stage the schema-id map until every series' structures are known."""
    volume = final.ct.volume
    if final.labels.shape != volume.spatial_shape or final.untrusted.shape != volume.spatial_shape:
        raise ExportInputError(f"series {final.series_uid}: final labels {final.labels.shape} are not on the CT grid "
                               f"{volume.spatial_shape}")
    case = case_id(final.series_uid)
    writer.image(_as_hu(volume.array), volume.get_geometry(), folder / "imagesTr" / f"{case}_0000{FILE_ENDING}")
    labels_file = staging / f"{case}.npz"
    np.savez(labels_file, labels=final.labels.astype(np.uint16), untrusted=final.untrusted.astype(bool))
    ids = frozenset(int(v) for v in present_values(final.labels) if v)
    return _Staged(final.series_uid, case, patient_key(final.ct), ids, labels_file, volume.get_geometry())


def _nnunet_labels(case: _Staged, ids: list[int]) -> np.ndarray:
    """Schema ids -> 1..K by ``ids``' order, untrusted voxels -> K+1 (ignore), everything else 0."""
    with np.load(case.labels_file) as staged:
        schema_ids, untrusted = staged["labels"], staged["untrusted"]
    lookup = np.zeros(max(ids) + 1, np.uint16)
    lookup[ids] = np.arange(1, len(ids) + 1)
    values = lookup[schema_ids]
    values[untrusted] = len(ids) + 1
    return values.astype(np.uint8 if len(ids) + 1 <= np.iinfo(np.uint8).max else np.uint16)


def _as_hu(array: np.ndarray) -> np.ndarray:
    """int16 where every HU is a whole number in range (stored CT always is), else float32."""
    if array.size and np.array_equal(array, np.round(array)) and _INT16.min <= array.min() and array.max() <= _INT16.max:
        return array.astype(np.int16)
    return array.astype(np.float32)


def _dataset_json(labels: dict[str, int], n_cases: int, name: str) -> dict:
    return {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": n_cases,
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
        "name": name,
        "description": "BoneHub final bone labels; 'ignore' marks bones present but not yet trusted",
    }


def _mapping_csv(labels: dict[str, int]) -> str:
    """The ``labels/README.md`` mapping format: every label the trained model can output -> its schema name."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["native_value", "native_name", "schema_name", "split_by_side"])
    writer.writerows([value, name, name, ""] for name, value in labels.items() if name not in ("background", IGNORE))
    return out.getvalue()


def _cases_csv(staged: list[_Staged], splits: list[dict[str, list[str]]]) -> str:
    fold_of = {case: fold for fold, split in enumerate(splits) for case in split["val"]}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["case", "series_uid", "patient", "fold"])
    writer.writerows([c.case, c.series_uid, c.patient, fold_of.get(c.case, "")] for c in sorted(staged, key=lambda c: c.case))
    return out.getvalue()


def _json(content: object) -> str:
    return json.dumps(content, indent=2) + "\n"


def _remove_stale(folder: Path, cases: set[str], writer: _Writer) -> None:
    """Files of series no longer in the export: their images and labels go."""
    for path in sorted((folder / "imagesTr").glob(f"*_0000{FILE_ENDING}")):
        if path.name[: -len(f"_0000{FILE_ENDING}")] not in cases:
            writer.remove(path)
    for path in sorted((folder / "labelsTr").glob(f"*{FILE_ENDING}")):
        if path.name[: -len(FILE_ENDING)] not in cases:
            writer.remove(path)


class _Writer:
    """Writes each file under a temporary name and keeps it only where the bytes differ; records what changed."""

    def __init__(self) -> None:
        self.changed: list[Path] = []

    def image(self, array: np.ndarray, geometry: hd.VolumeGeometry, path: Path) -> None:
        """``array`` on ``geometry`` as an image whose SimpleITK array is ``array`` itself (see ``_REVERSED``)."""
        image = geometry.permute_spatial_axes(_REVERSED).with_array(array.transpose(_REVERSED)).to_simpleitk()
        self._replace(path, lambda temporary: sitk.WriteImage(image, str(temporary), useCompression=True))

    def text(self, path: Path, text: str) -> None:
        self._replace(path, lambda temporary: temporary.write_text(text))

    def remove(self, path: Path) -> None:
        if path.exists():
            path.unlink()
            self.changed.append(path)

    def _replace(self, path: Path, write) -> None:
        temporary = path.with_name(f".partial.{path.name}")  # same extension: SimpleITK picks its writer by it
        try:
            write(temporary)
            if path.is_file() and path.read_bytes() == temporary.read_bytes():
                temporary.unlink()
                return
            os.replace(temporary, path)
            self.changed.append(path)
        finally:
            temporary.unlink(missing_ok=True)
