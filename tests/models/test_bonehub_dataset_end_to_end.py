"""End to end with the packaged BoneHub label sets: BoneHub-Dataset folder (both layouts) -> derived CT -> ``bonehub:`` source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from dicom_io.bonehub_layout import find_subjects
from dicom_io.ct_series import read_ct_series
from dicom_io.volume_ct import VolumeInput, derive_ct
from labels.schema import default_schema
from models.harmonize import to_schema
from models.sources import build_source
from tests.support.bright_object_ct import write_bright_object_ct
from tests.support.slicer_seg_files import Seg, bonehub_tags, write_slicer_file

SCHEMA = default_schema()
L1, L2, FEMUR, RIB_7_LEFT = 230100000, 230200000, 710000000, 310700001


def _regions(shape) -> np.ndarray:
    """(z, y, x) array of region numbers 1-4 on the image's voxel grid."""
    regions = np.zeros(shape[::-1], np.uint8)
    regions[1:4, 2:6, 2:6] = 1
    regions[5:8, 2:6, 2:6] = 2
    regions[1:4, 8:12, 0:3] = 3
    regions[1:4, 8:12, 8:12] = 3  # side-less femur: two blobs, each given a side by the body midline
    regions[8:11, 10:14, 8:12] = 4
    return regions


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Dataset_001 (layout v2 .seg.nrrd with tags and statuses) and Dataset_002 (layout v1 NIfTI), one subject each."""
    root = tmp_path_factory.mktemp("bonehub")
    ct = write_bright_object_ct(tmp_path_factory.mktemp("ct"), shape=(12, 16, 20)).ct
    for dataset_id, record in (("001", {"segmentation": {"VERTEBRA_L2": 12}}), ("002", {"segmentation": {"VERTEBRA_L1": 33}})):
        folder = root / f"Dataset_{dataset_id}"
        (folder / "Image").mkdir(parents=True)
        (folder / "Segmentation").mkdir()
        image_path = folder / "Image" / f"{dataset_id}_000001.nii.gz"
        sitk.WriteImage(ct.volume.to_simpleitk(), str(image_path))
        (folder / f"Dataset_info_{dataset_id}.json").write_text(json.dumps({"dataset_id": int(dataset_id), "version": "1.1"}))
        (folder / f"Subject_info_{dataset_id}.json").write_text(json.dumps(
            [{"dataset_id": int(dataset_id), "subject_id": 1, "image": True, **record}]))
        image = sitk.ReadImage(str(image_path))  # the mask shares the image's (float32 NIfTI) geometry, as theirs do
        regions = _regions(image.GetSize())
        geometry = dict(spacing=image.GetSpacing(), origin=image.GetOrigin(), direction=image.GetDirection())
        if dataset_id == "001":
            write_slicer_file(folder / "Segmentation" / "001_000001.seg.nrrd", [regions], [
                Seg("VERTEBRA_L1", 1, tags=bonehub_tags("VERTEBRA_L1", L1, 33)),
                Seg("VERTEBRA_L2", 2),  # no tags: status from Subject_info (12, failed: does not vote)
                Seg("FEMUR", 3, tags=bonehub_tags("FEMUR", FEMUR, 30)),
                Seg("RIB_7_LEFT", 4)], **geometry)
        else:
            values = np.select([regions == 1, regions == 2], [2301, 2302], 0).astype(np.int16)
            mask = sitk.GetImageFromArray(values)
            mask.CopyInformation(image)
            sitk.WriteImage(mask, str(folder / "Segmentation" / "002_000001.nii.gz"))
    return root


@pytest.fixture(scope="module")
def cts(dataset, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    made = {}
    for subject in find_subjects(dataset):
        derived = derive_ct(VolumeInput(subject.image, str(subject.image.relative_to(dataset)), subject), cache)
        made[subject.subject_id] = read_ct_series(derived.folder)
    return made


def test_v2_seg_nrrd_votes_with_statuses(dataset, cts):
    source = build_source(f"bonehub:{dataset}")
    assert source.version == "001:1.1 002:1.1"
    ct = cts["001_000001"]
    prediction = source.predict(ct)
    schema_map = to_schema(prediction, ct)
    counts = {name: int((schema_map == SCHEMA[name].id).sum()) for name in
              ("vertebra_L1", "vertebra_L2", "femur_left", "femur_right", "rib_left_7")}
    assert counts["vertebra_L1"] == 3 * 4 * 4 and counts["vertebra_L2"] == 0
    assert counts["femur_left"] + counts["femur_right"] == 3 * 4 * 3 + 3 * 4 * 4
    assert counts["rib_left_7"] == 3 * 4 * 4
    assert prediction.statuses == {"vertebra_L1": (33,), "femur_left": (30,), "femur_right": (30,)}  # RIB_7_LEFT: unknown
    assert prediction.layouts == ("bonehub_v2",) and "VERTEBRA_L2" in prediction.withheld[0]


def test_v1_nifti_mask_votes(dataset, cts):
    ct = cts["002_000001"]
    prediction = build_source(f"bonehub:{dataset}?name=BoneHub v1&version=x").predict(ct)
    schema_map = to_schema(prediction, ct)
    assert int((schema_map == SCHEMA["vertebra_L1"].id).sum()) == 3 * 4 * 4
    assert int((schema_map == SCHEMA["vertebra_L2"].id).sum()) == 3 * 4 * 4
    assert prediction.statuses == {"vertebra_L1": (33,)} and prediction.layouts == ("bonehub_v1",)
