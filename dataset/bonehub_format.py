"""``--format bonehub``: the BoneHub-Dataset layout, readable by BoneHub's tools and our own reader.

::

    DIR/Dataset_NNN/Image/NNN_SSSSSS.nii.gz          the CT, HU exactly (int16 when every voxel is a whole number)
    DIR/Dataset_NNN/Segmentation/NNN_SSSSSS.seg.nrrd  the trusted bones as BoneHub v2 values (layout v2)
    DIR/Dataset_NNN/Dataset_info_NNN.json             the dataset's record
    DIR/Dataset_NNN/Subject_info_NNN.json             one record per subject, with each label's status

Each label's status (its segment tags and the subject's ``segmentation`` record) is
its provenance state's BoneHub code (``review.provenance``): 11 automatic check
passed, 13 expert accepted, 23 human-edited and accepted ... A trusted bone without
voxels (``missing``, origin 0) is only in the record. A CT that came from a BoneHub
dataset keeps its dataset and subject ids (manifest ``bonehub_dataset`` /
``bonehub_subject``); every other CT series becomes a subject of the new dataset
``--dataset-id`` (default 999, until BoneHub assigns one), numbered by series UID
over the whole manifest, so a selection or a new correction never renumbers a subject.
Subject metadata (age, sex, weight, height) comes from the manifest's subject columns.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import SimpleITK as sitk

from dataset.context import ExportContext
from dataset.errors import ExportInputError
from dataset.final_labels import SeriesFinal
from dicom_io.bonehub_layout import IMAGE_SUFFIX, check_ids
from dicom_io.bonehub_seg_nrrd import write_bonehub_seg_nrrd
from dicom_io.seg_writer import MANUFACTURER, SOFTWARE_VERSION
from labels.bonehub_labels import bonehub_label_set, bonehub_lookup, bonehub_name, bonehub_value
from labels.bonehub_status import BoneHubStatus
from labels.errors import BoneHubInputError
from labels.schema import default_schema

DEFAULT_DATASET_ID = "999"
_AGE_UNITS = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}  # DICOM AS units per year


@dataclass(frozen=True)
class Subject:
    """Where one CT series goes in the layout."""

    dataset_id: str  # "001"
    subject_id: str  # "001_000001"

    @property
    def number(self) -> int:
        return int(self.subject_id.split("_")[1])


class BoneHubExport:
    """Writes each series' image and mask, then the datasets' JSON records (see the module docstring)."""

    def __init__(self, context: ExportContext):
        self.context = context
        self.new_dataset = str(context.options.get("dataset_id") or DEFAULT_DATASET_ID)
        self.subjects = subjects_of(context.manifest, self.new_dataset)
        self.records: dict[str, dict] = {}  # series UID -> its Subject_info record

    def add(self, final: SeriesFinal) -> None:
        if not final.labels.any():
            return  # only bones without voxels (missing) trusted: no mask to write; the data card notes the series
        subject = self.subjects[final.series_uid]
        folder = f"Dataset_{subject.dataset_id}"
        values, statuses, colors = _bonehub_values(final)
        mask = final.ct.volume.with_array(values)
        self.context.files.put_with(f"{folder}/Image/{subject.subject_id}{IMAGE_SUFFIX}",
                                    lambda path: _write_image(final, path))
        self.context.files.put_with(f"{folder}/Segmentation/{subject.subject_id}.seg.nrrd",
                                    lambda path: write_bonehub_seg_nrrd(path, mask, bonehub_label_set("v2"), statuses,
                                                                        colors))
        self.records[final.series_uid] = self._record(final, subject)

    def finish(self, exported: list[str]) -> None:
        by_dataset: dict[str, list[dict]] = {}
        for uid in exported:
            if uid in self.records:
                by_dataset.setdefault(self.subjects[uid].dataset_id, []).append(self.records[uid])
        for dataset_id, records in sorted(by_dataset.items()):
            folder = f"Dataset_{dataset_id}"
            records.sort(key=lambda record: record["subject_id"])
            self.context.files.put_bytes(f"{folder}/Subject_info_{dataset_id}.json", _json(records))
            self.context.files.put_bytes(f"{folder}/Dataset_info_{dataset_id}.json", _json(self._dataset_info(dataset_id)))

    def _record(self, final: SeriesFinal, subject: Subject) -> dict:
        """The subject's record in BoneHub's field order; fields without a value are left out, as BoneHub does."""
        row = self.context.manifest[self.context.manifest["series_instance_uid"] == final.series_uid].iloc[0]
        statuses = {bonehub_name(bonehub_value(name)): final.statuses[name] for name in _in_order(final.trusted)}
        record = {"dataset_id": int(subject.dataset_id), "subject_id": subject.number,
                  "source_subject_path": str(row["source_path"]) or None, "age": _age_years(str(row["patient_age"])),
                  "gender": str(row["patient_sex"]) if row["patient_sex"] in ("M", "F", "O") else None,
                  "weight": _positive(row["patient_weight"]), "height": _positive(row["patient_height"], 100.0),
                  "imaging_modality": "CT", "image": True, "segmentation": statuses,
                  "remarks": f"DICOM CT series {final.series_uid}"}
        return {key: value for key, value in record.items() if value is not None}

    def _dataset_info(self, dataset_id: str) -> dict:
        made = f"curated with {MANUFACTURER} {SOFTWARE_VERSION}: trusted bones only, each label's status its provenance"
        if dataset_id == self.new_dataset:
            name, description = f"{MANUFACTURER} curated bones", f"CT series segmented by several sources, {made}"
        else:
            name, description = f"BoneHub Dataset_{dataset_id}, curated", f"BoneHub Dataset_{dataset_id} {made}"
        return {"dataset_id": int(dataset_id), "name": name, "description": description, "version": SOFTWARE_VERSION}


def subjects_of(manifest: pd.DataFrame, new_dataset: str) -> dict[str, Subject]:
    """Series UID -> subject for every CT series of the manifest (see the module docstring)."""
    check_ids(new_dataset, f"{new_dataset}_000001")
    series = manifest.drop_duplicates("series_instance_uid").sort_values("series_instance_uid")
    taken = {str(d) for d in series["bonehub_dataset"] if d}
    if new_dataset in taken:
        raise ExportInputError(f"--dataset-id {new_dataset}: BoneHub dataset {new_dataset} is an input of this run; "
                               "choose another id for the new subjects")
    subjects, number = {}, 0
    for row in series.itertuples(index=False):
        if row.bonehub_dataset and row.bonehub_subject:
            subjects[row.series_instance_uid] = Subject(str(row.bonehub_dataset), str(row.bonehub_subject))
        else:
            number += 1
            subjects[row.series_instance_uid] = Subject(new_dataset, f"{new_dataset}_{number:06d}")
    return subjects


def _bonehub_values(final: SeriesFinal):
    """(volume of BoneHub v2 values, {value: status}, {value: colour}) of the trusted bones with voxels."""
    schema = default_schema()
    ids = [int(v) for v in np.unique(final.labels) if v]
    try:
        lut = bonehub_lookup(ids, schema)
    except BoneHubInputError as error:
        raise ExportInputError(f"series {final.series_uid}: {error}; leave their state out of the selection to "
                               "export the series") from None
    values = {i: int(lut[i]) for i in ids}
    statuses = {values[i]: BoneHubStatus.parse(final.statuses[schema[i].name]) for i in ids}
    colors = {values[i]: tuple(c / 255 for c in schema[i].color) for i in ids}
    return lut[final.labels], statuses, colors


def _write_image(final: SeriesFinal, path) -> None:
    """The CT as NIfTI in HU: int16 when every voxel is a whole number in range (the usual CT), else float32."""
    array = np.asarray(final.ct.volume.array)
    whole = np.array_equal(array, np.round(array)) and array.min() >= -32768 and array.max() <= 32767
    image = final.ct.volume.with_array(array.astype(np.int16 if whole else np.float32)).to_simpleitk()
    sitk.WriteImage(image, str(path), useCompression=True)


def _in_order(names) -> list[str]:
    schema = default_schema()
    return sorted(names, key=lambda name: schema[name].id)


def _age_years(age: str) -> int | None:
    """DICOM AS ("065Y", "006M") in whole years; None when not recorded."""
    if len(age) != 4 or not age[:3].isdigit() or age[3] not in _AGE_UNITS:
        return None
    return int(int(age[:3]) / _AGE_UNITS[age[3]])


def _positive(value, scale: float = 1.0) -> float | None:
    number = float(value) if value is not None and value != "" else math.nan
    return round(number * scale, 3) if math.isfinite(number) and number > 0 else None


def _json(document) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
