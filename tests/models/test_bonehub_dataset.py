"""A BoneHub-Dataset folder as a source: the CT's subject mask in schema ids, statuses as provenance, bad masks alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from dicom_io.bonehub_seg_nrrd import BoneHubMaskError
from dicom_io.label_images import LabelGridError
from labels.label_sets import LabelSet, NativeLabel
from labels.schema import default_schema
from models import bonehub_dataset
from models.bonehub_dataset import BoneHubDatasetSource, BoneHubPrediction
from models.harmonize import to_schema
from models.precomputed import PrecomputedNotFoundError
from models.sources import build_source
from tests.support.bright_object_ct import write_bright_object_ct
from tests.support.slicer_seg_files import Seg, bonehub_tags, write_slicer_file

L1, L2, L3, FEMUR_LEFT, FEMUR, LUMBAR = 230100000, 230200000, 230300000, 710000001, 710000000, 230000000
FEMUR_CORTICAL_LEFT = 710000011
LABEL_SETS = {
    "bonehub_v2": LabelSet("bonehub_v2", [
        NativeLabel(L1, "VERTEBRA_L1", "vertebra_L1", False), NativeLabel(L2, "VERTEBRA_L2", "vertebra_L2", False),
        NativeLabel(L3, "VERTEBRA_L3", "vertebra_L3", False), NativeLabel(LUMBAR, "LUMBAR_SPINE", "lumbar_vertebrae", False),
        NativeLabel(FEMUR_LEFT, "FEMUR_LEFT", "femur_left", False), NativeLabel(FEMUR, "FEMUR", "femur", True),
        NativeLabel(FEMUR_CORTICAL_LEFT, "FEMUR_CORTICAL_LEFT", "femur_left", False)]),
    "bonehub_v1": LabelSet("bonehub_v1", [NativeLabel(2301, "VERTEBRA_L1", "vertebra_L1", False),
                                          NativeLabel(2302, "VERTEBRA_L2", "vertebra_L2", False)]),
}
SCHEMA = default_schema()


@pytest.fixture(autouse=True)
def _test_label_sets(monkeypatch):
    """Small stand-ins for the packaged BoneHub label sets, with real BoneHub values."""
    monkeypatch.setattr(bonehub_dataset, "load_label_set", LABEL_SETS.__getitem__)


@pytest.fixture(scope="module")
def bright(tmp_path_factory):
    made = write_bright_object_ct(tmp_path_factory.mktemp("ct"), shape=(12, 16, 20))
    made.ct.datasets[0].ClinicalTrialProtocolID = "001"
    made.ct.datasets[0].ClinicalTrialSubjectID = "001_000001"
    return made


def _layout(root: Path, ct, masks: dict[str, object], record: dict | None = None) -> Path:
    """``root/Dataset_001`` with the subject's image and the given masks (name -> writer)."""
    folder = root / "Dataset_001"
    (folder / "Image").mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(ct.volume.to_simpleitk(), str(folder / "Image" / "001_000001.nii.gz"))
    (folder / "Dataset_info_001.json").write_text(json.dumps({"dataset_id": 1, "version": "2.0"}))
    (folder / "Subject_info_001.json").write_text(json.dumps([{"subject_id": 1, "dataset_id": 1, "image": True,
                                                               **(record or {})}]))
    for name, write in masks.items():
        write(folder / "Segmentation" / name)
    return root


def _seg_nrrd(ct, layers, segments):
    """A writer of a Slicer file on the CT's own grid (layers given on the CT's array axes)."""
    def write(path):
        image = ct.volume.with_array(np.zeros(ct.volume.spatial_shape, np.uint8)).to_simpleitk()
        write_slicer_file(path, [sitk.GetArrayFromImage(ct.volume.with_array(a.astype(np.uint8)).to_simpleitk())
                                 for a in layers], segments, spacing=image.GetSpacing(), origin=image.GetOrigin(),
                          direction=image.GetDirection())
    return write


def _blocks(ct):
    shape = ct.volume.spatial_shape
    layer = np.zeros(shape, np.uint8)
    layer[2:5, 3:8, 4:10] = 1
    layer[6:9, 3:8, 4:10] = 2
    layer[9:11, 3:8, 4:10] = 3
    return layer


def test_spec_reads_subject_mask_in_schema_ids_with_statuses(tmp_path, bright):
    ct = bright.ct
    root = _layout(tmp_path, ct, {"001_000001.seg.nrrd": _seg_nrrd(ct, [_blocks(ct)], [
        Seg("VERTEBRA_L1", 1, tags=bonehub_tags("VERTEBRA_L1", L1, 33)),
        Seg("VERTEBRA_L2", 2, tags=bonehub_tags("VERTEBRA_L2", L2, 10)),
        Seg("VERTEBRA_L3", 3, tags=bonehub_tags("VERTEBRA_L3", L3, 34))])})  # expert rejected: no vote
    source = build_source(f"bonehub:{root}")
    assert (source.name, source.version, source.vocabulary) == ("BoneHub-Dataset", "001:2.0", frozenset())
    prediction = source.predict(ct)
    assert isinstance(prediction, BoneHubPrediction) and prediction.layouts == ("bonehub_v2",)
    schema_map = to_schema(prediction, ct)
    blocks = _blocks(ct)
    assert np.array_equal(schema_map == SCHEMA["vertebra_L1"].id, blocks == 1)
    assert np.array_equal(schema_map == SCHEMA["vertebra_L2"].id, blocks == 2)
    assert not (schema_map[blocks == 3]).any()
    assert prediction.statuses == {"vertebra_L1": (33,), "vertebra_L2": (10,)}
    assert len(prediction.withheld) == 1 and "VERTEBRA_L3" in prediction.withheld[0]


def test_v1_nifti_mask_with_statuses_from_subject_info(tmp_path, bright):
    ct = bright.ct
    values = np.where(_blocks(ct) == 1, 2301, np.where(_blocks(ct) == 2, 2302, 0)).astype(np.int16)

    def write(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(ct.volume.with_array(values).to_simpleitk(), str(path))

    root = _layout(tmp_path, ct, {"001_000001.nii.gz": write}, {"segmentation": {"VERTEBRA_L1": 30, "VERTEBRA_L2": 12}})
    prediction = BoneHubDatasetSource(root, version="v").predict(ct)
    schema_map = to_schema(prediction, ct)
    assert np.array_equal(schema_map == SCHEMA["vertebra_L1"].id, values == 2301)
    assert not (schema_map == SCHEMA["vertebra_L2"].id).any()  # 12: automatic check failed
    assert prediction.statuses == {"vertebra_L1": (30,)} and prediction.layouts == ("bonehub_v1",)


def test_overlapping_layers_take_the_finer_label_and_split_sideless(tmp_path, bright):
    ct = bright.ct
    shape = ct.volume.spatial_shape
    femur_any = np.zeros(shape, np.uint8)
    femur_any[1:11, 1:15, 1:19] = 1  # side-less femur label: split by the body midline
    femur_left = np.zeros(shape, np.uint8)
    femur_left[2:4, 2:5, 2:5] = 1
    root = _layout(tmp_path, ct, {"001_000001.seg.nrrd": _seg_nrrd(ct, [femur_any, femur_left], [
        Seg("FEMUR", 1, 0, bonehub_tags("FEMUR", FEMUR, 30)),
        Seg("FEMUR_LEFT", 1, 1, bonehub_tags("FEMUR_LEFT", FEMUR_LEFT, 33))])})
    prediction = BoneHubDatasetSource(root).predict(ct)
    schema_map = to_schema(prediction, ct)
    assert (schema_map[femur_left == 1] == SCHEMA["femur_left"].id).all()
    assert set(np.unique(schema_map[femur_any == 1])) <= {SCHEMA["femur_left"].id, SCHEMA["femur_right"].id}
    assert prediction.statuses["femur_left"] == (30, 33) and prediction.statuses["femur_right"] == (30,)


def test_group_label_keeps_the_rest_of_its_bones_and_unrelated_overlap_is_refused(tmp_path, bright):
    ct = bright.ct
    lumbar = (_blocks(ct) > 0).astype(np.uint8)
    l1 = (_blocks(ct) == 1).astype(np.uint8)
    root = _layout(tmp_path / "a", ct, {"001_000001.seg.nrrd": _seg_nrrd(ct, [lumbar, l1], [
        Seg("LUMBAR_SPINE", 1, 0, bonehub_tags("LUMBAR_SPINE", LUMBAR, 30)),
        Seg("VERTEBRA_L1", 1, 1, bonehub_tags("VERTEBRA_L1", L1, 30))])})
    schema_map = to_schema(BoneHubDatasetSource(root).predict(ct), ct)
    assert (schema_map[l1 == 1] == SCHEMA["vertebra_L1"].id).all()
    assert (schema_map[(lumbar == 1) & (l1 == 0)] == SCHEMA["lumbar_vertebrae"].id).all()
    root = _layout(tmp_path / "b", ct, {"001_000001.seg.nrrd": _seg_nrrd(ct, [lumbar, l1], [
        Seg("FEMUR_LEFT", 1, 0, bonehub_tags("FEMUR_LEFT", FEMUR_LEFT, 30)),
        Seg("VERTEBRA_L1", 1, 1, bonehub_tags("VERTEBRA_L1", L1, 30))])})
    with pytest.raises(BoneHubMaskError, match=r"FEMUR_LEFT.* overlaps 230100000 VERTEBRA_L1 on 90 voxels"):
        BoneHubDatasetSource(root).predict(ct)


def test_several_files_of_a_subject_are_united(tmp_path, bright):
    ct = bright.ct
    blocks = _blocks(ct)
    root = _layout(tmp_path, ct, {
        "001_000001_spine.seg.nrrd": _seg_nrrd(ct, [(blocks == 1).astype(np.uint8)], [
            Seg("VERTEBRA_L1", 1, tags=bonehub_tags("VERTEBRA_L1", L1, 30))]),
        "001_000001_cortex.seg.nrrd": _seg_nrrd(ct, [(blocks == 2).astype(np.uint8)], [Seg("VERTEBRA_L2", 1)])})
    prediction = BoneHubDatasetSource(root).predict(ct)
    schema_map = to_schema(prediction, ct)
    assert np.array_equal(schema_map == SCHEMA["vertebra_L2"].id, blocks == 2)
    assert prediction.statuses == {"vertebra_L1": (30,)}  # L2 was drawn in Slicer: status unknown


def test_mask_on_another_grid_is_refused(tmp_path, bright):
    ct = bright.ct
    shifted = ct.volume.to_simpleitk()

    def write(path):
        write_slicer_file(path, [sitk.GetArrayFromImage(ct.volume.with_array(_blocks(ct)).to_simpleitk())],
                          [Seg("VERTEBRA_L1", 1), Seg("VERTEBRA_L2", 2), Seg("VERTEBRA_L3", 3)],
                          spacing=shifted.GetSpacing(), origin=tuple(o + 0.7 for o in shifted.GetOrigin()),
                          direction=shifted.GetDirection())

    root = _layout(tmp_path, ct, {"001_000001.seg.nrrd": write})
    with pytest.raises(LabelGridError, match=r"001_000001.seg.nrrd: its grid .* is not the grid .* of CT series"):
        BoneHubDatasetSource(root).predict(ct)


def test_ct_without_subject_or_mask_is_not_found(tmp_path, bright):
    import copy
    import dataclasses

    ct = bright.ct
    root = _layout(tmp_path, ct, {})
    with pytest.raises(PrecomputedNotFoundError, match="no mask for BoneHub subject 001_000001"):
        BoneHubDatasetSource(root).predict(ct)
    bare = dataclasses.replace(ct, datasets=(copy.deepcopy(ct.datasets[0]), *ct.datasets[1:]))
    del bare.datasets[0].ClinicalTrialSubjectID
    with pytest.raises(PrecomputedNotFoundError, match="carries no BoneHub dataset/subject id"):
        BoneHubDatasetSource(root).predict(bare)


def test_all_labels_withheld_fails_alone(tmp_path, bright):
    ct = bright.ct
    root = _layout(tmp_path, ct, {"001_000001.seg.nrrd": _seg_nrrd(ct, [(_blocks(ct) == 1).astype(np.uint8)], [
        Seg("VERTEBRA_L1", 1, tags=bonehub_tags("VERTEBRA_L1", L1, 4))])})
    with pytest.raises(BoneHubMaskError, match="no label of .* votes"):
        BoneHubDatasetSource(root).predict(ct)


def test_spec_errors_are_named(tmp_path):
    from models.sources import SourceSpecError

    with pytest.raises(SourceSpecError, match="name the BoneHub-Dataset folder"):
        build_source("bonehub:")
    with pytest.raises(SourceSpecError, match=r"unknown parameter\(s\) label_set"):
        build_source(f"bonehub:{tmp_path}?label_set=x&version=1")
    with pytest.raises(PrecomputedNotFoundError, match="is not a folder"):
        build_source(f"bonehub:{tmp_path / 'missing'}")
