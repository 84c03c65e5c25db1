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
  ``$nnUNet_preprocessed/DatasetNNN_Name/`` before training) and ``cases.csv`` (case -> series
  UID, patient key, validation fold).

Every file goes through ``dataset.files.ExportFiles`` (replaced only when its bytes differ; files of
series that left the selection removed by the export driver), so a rerun changes no file. The label
values depend on the whole export, so ``add`` writes the image and stages the schema-id map on disk,
and ``finish`` writes every label image once all series are known (memory stays one series).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from dataset.context import ExportContext
from dataset.errors import ExportInputError
from dataset.files import ExportFiles
from dataset.final_labels import SeriesFinal
from dataset.nnunet_folds import DEFAULT_FOLDS, patient_folds, patient_key
from labels.slabs import present_values
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
# and nnU-Net trains on exactly the arrays (and spacing) it later predicts on.
_REVERSED = (2, 1, 0)


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's ``DatasetNNN_Name`` (three digits, a name without spaces or path characters)."""
    if not 1 <= dataset_id <= 999:
        raise ExportInputError(f"nnU-Net dataset id {dataset_id}: must be 1..999 (DatasetNNN_Name)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ExportInputError(f"nnU-Net dataset name {name!r}: letters, digits, '_' and '-' only")
    return f"Dataset{dataset_id:03d}_{name}"


def case_id(series_uid: str) -> str:
    return series_uid.replace(".", "_")


@dataclass(frozen=True)
class _Staged:
    series_uid: str
    case: str
    patient: str
    ids: frozenset[int]  # schema ids with voxels in this series
    labels_file: Path  # schema ids (uint16) and the untrusted mask, as .npz
    geometry: hd.VolumeGeometry  # the CT grid


class NnUNetExport:
    """``--format nnunet`` (``dataset.context.ExportFormat``): images per series, labels and descriptions at the end.

    After ``finish``: ``labels`` (dataset.json's, background first, ignore last), ``cases`` (series UID -> case
    id) and ``n_folds`` (0: fewer than two patients, no ``splits_final.json``).
    """

    def __init__(self, files: ExportFiles, *, dataset_id: int = DEFAULT_DATASET_ID, name: str = DEFAULT_NAME,
                 n_folds: int = DEFAULT_FOLDS, schema: BoneSchema | None = None):
        self.files = files
        self.name = name
        self.n_folds = n_folds
        self.folder = dataset_folder_name(dataset_id, name)
        self.schema = schema or default_schema()
        self.labels: dict[str, int] = {}
        self.cases: dict[str, str] = {}
        self._staged: list[_Staged] = []
        self._staging = Path(tempfile.mkdtemp(prefix="bonehub-nnunet-"))

    @classmethod
    def from_context(cls, context: ExportContext) -> NnUNetExport:
        """The format table's entry: ``--dataset-id`` (when given) is the nnU-Net dataset number."""
        dataset_id = str(context.options.get("dataset_id", DEFAULT_DATASET_ID))
        if not dataset_id.isdigit():
            raise ExportInputError(f"nnU-Net dataset id {dataset_id!r}: must be a number 1..999 (DatasetNNN_Name)")
        return cls(context.files, dataset_id=int(dataset_id))

    def add(self, final: SeriesFinal) -> None:
        """Write the CT image now; stage the schema-id map until every series' structures are known."""
        volume = final.ct.volume
        if final.labels.shape != volume.spatial_shape or final.untrusted.shape != volume.spatial_shape:
            raise ExportInputError(f"series {final.series_uid}: final labels {final.labels.shape} are not on the CT "
                                   f"grid {volume.spatial_shape}")
        case = case_id(final.series_uid)
        geometry = volume.get_geometry()
        self._image(f"imagesTr/{case}_0000{FILE_ENDING}", _as_hu(volume.array), geometry)
        labels_file = self._staging / f"{case}.npz"
        np.savez(labels_file, labels=final.labels.astype(np.uint16), untrusted=final.untrusted.astype(bool))
        ids = frozenset(int(v) for v in present_values(final.labels) if v)
        self._staged.append(_Staged(final.series_uid, case, patient_key(final.ct), ids, labels_file, geometry))

    def finish(self, exported: list[str]) -> None:
        """The label images (values fixed by every series' structures), dataset.json, mapping, cases and folds."""
        try:
            self._finish()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)

    def _finish(self) -> None:
        staged = sorted(self._staged, key=lambda case: case.case)
        ids = sorted(set().union(*(case.ids for case in staged)))
        if not ids:
            raise ExportInputError(f"nnU-Net export {self.folder}: no trusted bone has voxels; nothing to train on")
        self.labels = {"background": 0, **{self.schema[i].name: value for value, i in enumerate(ids, start=1)},
                       IGNORE: len(ids) + 1}
        for case in staged:
            self._image(f"labelsTr/{case.case}{FILE_ENDING}", _nnunet_labels(case, ids), case.geometry)
        self.cases = {case.series_uid: case.case for case in staged}
        splits = patient_folds({case.case: case.patient for case in staged}, self.n_folds)
        self._text("dataset.json", _json(_dataset_json(self.labels, len(staged), self.name)))
        self._text(MAPPING_FILE, _mapping_csv(self.labels))
        self._text(CASES_FILE, _cases_csv(staged, splits))
        if splits:
            self._text(SPLITS_FILE, _json(splits))
        if len(splits) < self.n_folds:
            log.warning("nnU-Net export %s: %d patient(s) for %d folds: %s", self.folder,
                        len({case.patient for case in staged}), self.n_folds,
                        f"{SPLITS_FILE} has {len(splits)} folds, one per patient" if splits
                        else f"no {SPLITS_FILE}; train nnU-Net's fold 'all'")
        self.n_folds = len(splits)

    def _image(self, relative: str, array: np.ndarray, geometry: hd.VolumeGeometry) -> None:
        """``array`` on ``geometry`` as an image whose SimpleITK array is ``array`` itself (see ``_REVERSED``)."""
        image = geometry.permute_spatial_axes(_REVERSED).with_array(array.transpose(_REVERSED)).to_simpleitk()
        self.files.put_with(f"{self.folder}/{relative}",
                            lambda path: sitk.WriteImage(image, str(path), useCompression=True))

    def _text(self, relative: str, text: str) -> None:
        self.files.put_bytes(f"{self.folder}/{relative}", text.encode())


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
