"""``--format nnunet``: the raw dataset's files, label values, ignore label voxel by voxel, mapping, folds, reruns.

Tiny synthetic ``SeriesFinal``s (``tests.support.nnunet_finals``): three series of two patients,
``calcaneus_left`` trusted in all, ``talus_left`` in one, a bone not yet trusted in two.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset

from dataset.errors import ExportInputError
from dataset.nnunet_export import MAPPING_FILE, SPLITS_FILE, case_id
from dataset.nnunet_folds import patient_folds, patient_key
from labels.label_sets import load_label_set
from labels.schema import default_schema
from tests.support.nnunet_finals import SECOND_BOX, TRUSTED_BOX, UNTRUSTED_BOX, export_nnunet, tiny_final

DATASET = "Dataset801_TinyBones"


@pytest.fixture(scope="module")
def finals(tmp_path_factory):
    root = tmp_path_factory.mktemp("finals")
    return [
        tiny_final(root, 1, "P1", trusted={"calcaneus_left": TRUSTED_BOX}, untrusted=UNTRUSTED_BOX),
        tiny_final(root, 2, "P1", trusted={"calcaneus_left": TRUSTED_BOX, "talus_left": SECOND_BOX}),
        tiny_final(root, 3, "P2", trusted={"calcaneus_left": TRUSTED_BOX}, untrusted=UNTRUSTED_BOX),
    ]


@pytest.fixture()
def exported(finals, tmp_path):
    return export_nnunet(finals, tmp_path, dataset_id=801, name="TinyBones")


def _array(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_layout_and_dataset_json(exported, finals, tmp_path):
    folder = tmp_path / DATASET
    assert exported.folder == folder
    cases = [case_id(final.series_uid) for final in finals]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == sorted(f"{c}_0000.nii.gz" for c in cases)
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == sorted(f"{c}.nii.gz" for c in cases)
    dataset = json.loads((folder / "dataset.json").read_text())
    # ordered by schema id (talus_left 80 before calcaneus_left 81); ignore is the highest value
    assert dataset["labels"] == {"background": 0, "talus_left": 1, "calcaneus_left": 2, "ignore": 3}
    assert list(dataset["labels"].values()) == [0, 1, 2, 3]
    assert (dataset["channel_names"], dataset["numTraining"], dataset["file_ending"]) == ({"0": "CT"}, 3, ".nii.gz")
    assert not list(folder.glob("**/.partial*"))


def test_ignored_bones_carry_the_ignore_label_and_nothing_else(exported, finals):
    schema = default_schema()
    value_of = {schema[name].id: value for name, value in exported.labels.items() if name not in ("background", "ignore")}
    ignore = exported.labels["ignore"]
    for final in finals:
        case = exported.cases[final.series_uid]
        labels = _array(exported.folder / "labelsTr" / f"{case}.nii.gz")
        expected = np.zeros(final.labels.shape, np.uint8)
        for schema_id, value in value_of.items():
            expected[final.labels == schema_id] = value
        expected[final.untrusted] = ignore
        np.testing.assert_array_equal(labels, expected)
        assert ((labels == ignore) == final.untrusted).all()  # every untrusted voxel, and only those


def test_image_is_the_ct_in_hu_on_its_exact_grid(exported, finals):
    """nnU-Net's reader sees the CT's own array (what the nnunet: source feeds the model), each voxel where it is."""
    for final in finals:
        volume = final.ct.volume
        corners = np.array([[i, j, k] for i in (0, volume.shape[0] - 1) for j in (0, volume.shape[1] - 1)
                            for k in (0, volume.shape[2] - 1)])
        expected = volume.map_indices_to_reference(corners)
        case = exported.cases[final.series_uid]
        image = sitk.ReadImage(str(exported.folder / "imagesTr" / f"{case}_0000.nii.gz"))
        labels = sitk.ReadImage(str(exported.folder / "labelsTr" / f"{case}.nii.gz"))
        for got in (image, labels):
            assert sitk.GetArrayViewFromImage(got).shape == volume.shape
            np.testing.assert_allclose([got.TransformIndexToPhysicalPoint([int(v) for v in corner[::-1]]) for corner in corners],
                                       expected, atol=1e-3)
        assert image.GetPixelID() == sitk.sitkInt16
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volume.array)


def test_mapping_turns_the_model_labels_back_into_the_schema(exported, finals):
    label_set = load_label_set(exported.folder / MAPPING_FILE)
    assert label_set.emitted() == {"talus_left", "calcaneus_left"}
    for final in finals:
        labels = _array(exported.folder / "labelsTr" / f"{exported.cases[final.series_uid]}.nii.gz")
        labels[final.untrusted] = 0  # a model outputs no ignore label
        np.testing.assert_array_equal(label_set.harmonize(labels), final.labels)


def test_folds_keep_each_patient_in_one_fold(exported, finals, caplog):
    splits = json.loads((exported.folder / SPLITS_FILE).read_text())
    p1 = {case_id(finals[0].series_uid), case_id(finals[1].series_uid)}
    assert exported.n_folds == len(splits) == 2  # two patients for five folds: one fold each
    assert sorted(case for split in splits for case in split["val"]) == sorted(exported.cases.values())
    assert any(set(split["val"]) == p1 for split in splits)
    for split in splits:
        assert not set(split["train"]) & set(split["val"])
        assert set(split["train"]) | set(split["val"]) == set(exported.cases.values())


def test_patient_folds_are_balanced_deterministic_and_patient_level():
    cases = {f"case{i:02d}": f"patient{i // 3 if i < 9 else i}" for i in range(20)}  # 3 patients with 3 series
    splits = patient_folds(cases, 5)
    assert splits == patient_folds(dict(reversed(cases.items())), 5)
    assert len(splits) == 5 and sorted(len(split["val"]) for split in splits) == [4, 4, 4, 4, 4]
    for patient in set(cases.values()):
        assert sum(any(cases[c] == patient for c in split["val"]) for split in splits) == 1
    assert patient_folds({"a": "p", "b": "p"}, 5) == []


def test_patient_is_the_bonehub_subject_else_the_patient_id_else_the_study(caplog):
    def ct(**attributes):
        header = Dataset()
        for keyword, value in attributes.items():
            setattr(header, keyword, value)
        return SimpleNamespace(datasets=(header,), series_instance_uid="1.2.3.4", study_instance_uid="1.2.3")

    subject = ct(PatientID="001_000007", ClinicalTrialSponsorName="BoneHub", ClinicalTrialProtocolID="001",
                 ClinicalTrialSubjectID="001_000007")
    assert patient_key(subject) == "bonehub:001/001_000007"
    assert patient_key(ct(PatientID="LIDC-0042")) == "patient:LIDC-0042"
    assert patient_key(ct(PatientID="")) == "study:1.2.3" and "series 1.2.3.4: no PatientID" in caplog.text


def test_one_patient_gets_no_splits_file_and_a_warning(finals, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "bonehub.dataset")
    export = export_nnunet(finals[:2], tmp_path, dataset_id=801, name="TinyBones")
    assert export.n_folds == 0 and not (export.folder / SPLITS_FILE).exists()
    assert "fold 'all'" in caplog.text


def test_rerun_changes_no_file_and_a_series_that_left_goes(exported, finals, tmp_path):
    before = {path: path.stat().st_mtime_ns for path in exported.folder.rglob("*") if path.is_file()}
    again = export_nnunet(finals, tmp_path, exported, dataset_id=801, name="TinyBones")
    assert again.changed == []
    assert {path: path.stat().st_mtime_ns for path in exported.folder.rglob("*") if path.is_file()} == before
    fewer = export_nnunet([finals[0], finals[2]], tmp_path, again, dataset_id=801, name="TinyBones")
    gone = case_id(finals[1].series_uid)
    assert {f"{DATASET}/imagesTr/{gone}_0000.nii.gz", f"{DATASET}/labelsTr/{gone}.nii.gz",
            f"{DATASET}/dataset.json"} <= set(fewer.changed)
    assert not (exported.folder / "imagesTr" / f"{gone}_0000.nii.gz").exists()
    assert fewer.labels == {"background": 0, "calcaneus_left": 1, "ignore": 2}  # talus_left left with its series


def test_nothing_to_export_is_one_clear_error(finals, tmp_path):
    with pytest.raises(ExportInputError, match="no trusted bone has voxels"):
        export_nnunet([], tmp_path)
    with pytest.raises(ExportInputError, match="dataset id"):
        export_nnunet(finals, tmp_path, dataset_id=1000)
