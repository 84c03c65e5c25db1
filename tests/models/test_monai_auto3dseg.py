"""MONAI Auto3DSeg work dirs through the adapter, on a stand-in work dir that MONAI itself generated and loads."""

import sys
import time

import highdicom as hd
import numpy as np
import pytest
from monai.auto3dseg.utils import algo_from_json, algo_to_pickle
from monai.bundle import ConfigParser
from scipy.spatial.transform import Rotation

from dicom_io.ct_series import read_ct_series
from dicom_io.ct_writer import write_ct_series
from labels.label_sets import LabelSetError, UnmappedLabelError
from labels.schema import default_schema
from models.base import Prediction, SegmentationModel
from models.errors import ModelOutputError, ModelUnavailableError
from models.harmonize import to_schema
from models.monai_auto3dseg import Auto3DSegModel
from tests.support.monai_standin import BLANK, BRIGHT, build_work_dir, write_mapping

SCORES = {BRIGHT: {0: 0.9, 1: 0.8}, BLANK: {0: 0.5, 1: 0.4}}  # fold 2 of both stays untrained
SCHEMA_NAMES = {1: "patella_left", 2: "femur_right"}
# (slices, rows, columns) boxes of the two objects, away from every symmetry of the grid
BRIGHT_BOX = (slice(3, 7), slice(5, 13), slice(30, 40))  # 1200 HU -> label 2
MEDIUM_BOX = (slice(9, 14), slice(25, 34), slice(4, 11))  # 350 HU -> label 1
GRIDS = {
    "axial": np.eye(3),
    "oblique": Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix(),
    "left_handed_rotated": np.diag([1.0, -1.0, 1.0]) @ Rotation.from_euler("z", 90, degrees=True).as_matrix(),
}


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory):
    started = time.perf_counter()
    built = build_work_dir(tmp_path_factory.mktemp("auto3dseg"), SCORES)
    print(f"stand-in Auto3DSeg work dir built in {time.perf_counter() - started:.1f} s")
    return built


@pytest.fixture(scope="session")
def mapping(tmp_path_factory):
    return write_mapping(tmp_path_factory.mktemp("mapping") / "standin.csv", SCHEMA_NAMES)


@pytest.fixture(scope="session")
def model(work_dir, mapping):
    """The default ensemble, loaded once."""
    source = Auto3DSegModel(work_dir, mapping, name="standin")
    started = time.perf_counter()
    source.load()
    print(f"Auto3DSeg stand-in loaded in {time.perf_counter() - started:.1f} s")
    return source


def _ct(folder, direction):
    """A synthetic CT with two objects of known HU, and the schema map they must become."""
    array = np.random.default_rng(0).integers(-100, 100, size=(16, 40, 48)).astype(np.int16)
    array[BRIGHT_BOX] = 1200
    array[MEDIUM_BOX] = 350
    frame = "1.2.826.0.1.3680043.8.498.13"
    volume = hd.Volume.from_components(
        array, spacing=[2.5, 0.8, 0.7], direction=direction, position=[-100.5, 30.25, 17.0],
        coordinate_system="PATIENT", frame_of_reference_uid=frame,
    )
    write_ct_series(
        volume, folder, study_instance_uid="1.2.826.0.1.3680043.8.498.11",
        series_instance_uid="1.2.826.0.1.3680043.8.498.12", frame_of_reference_uid=frame,
    )
    ct = read_ct_series(folder)
    schema = default_schema()
    expected = np.zeros(array.shape, np.uint16)
    expected[BRIGHT_BOX] = schema[SCHEMA_NAMES[2]].id
    expected[MEDIUM_BOX] = schema[SCHEMA_NAMES[1]].id
    # the reader stacks slices along the right-handed normal: bring the expectation onto its grid
    expected = volume.with_array(expected).match_geometry(ct.geometry).array
    return ct, expected


@pytest.mark.parametrize("grid", GRIDS)
def test_objects_land_on_their_voxels(model, grid, tmp_path):
    ct, expected = _ct(tmp_path / "ct", GRIDS[grid])
    started = time.perf_counter()
    prediction = model.predict(ct)
    print(f"{grid}: predicted in {time.perf_counter() - started:.2f} s")
    assert isinstance(prediction, Prediction) and prediction.label_set is not None
    np.testing.assert_array_equal(to_schema(prediction, ct), expected)


def test_default_ensemble_is_best_trained_per_fold(model):
    assert isinstance(model, SegmentationModel)
    assert model.algorithm_ids == [f"{BRIGHT}_0", f"{BRIGHT}_1"]
    assert model.version == f"{BRIGHT}_0:0.9000+{BRIGHT}_1:0.8000"
    inferers = model._inferers
    model.load()
    assert model._inferers is inferers


def test_named_algorithms_are_ensembled(work_dir, mapping, tmp_path):
    ct, _ = _ct(tmp_path / "ct", GRIDS["oblique"])
    blank = Auto3DSegModel(work_dir, mapping, algorithms=[BLANK])
    assert blank.algorithm_ids == [f"{BLANK}_0", f"{BLANK}_1"]
    assert not to_schema(blank.predict(ct), ct).any()
    assert Auto3DSegModel(work_dir, mapping, algorithms=[f"{BRIGHT}_1"], version="v1").algorithm_ids == [f"{BRIGHT}_1"]


def test_unknown_or_untrained_algorithm_is_named(work_dir, mapping):
    with pytest.raises(ModelUnavailableError, match=rf"\['{BRIGHT}_2'\].*trained: .*{BRIGHT}_0"):
        Auto3DSegModel(work_dir, mapping, algorithms=[f"{BRIGHT}_2"]).load()


def test_missing_work_dir(mapping, tmp_path):
    source = Auto3DSegModel(tmp_path / "nowhere", mapping)
    with pytest.raises(ModelUnavailableError, match="nowhere does not exist"):
        source.load()
    with pytest.raises(ModelUnavailableError):
        source.version


def test_missing_monai_says_how_to_install(work_dir, mapping, monkeypatch):
    monkeypatch.setitem(sys.modules, "monai.apps.auto3dseg", None)  # what the import system does for a missing module
    with pytest.raises(ModelUnavailableError, match=r"MONAI is not installed.*pip install 'monai==1\.6\.1'"):
        Auto3DSegModel(work_dir, mapping).load()


def test_work_dir_without_trained_algorithm(mapping, tmp_path):
    untrained = build_work_dir(tmp_path, {})
    with pytest.raises(ModelUnavailableError, match=rf"no trained algorithm .*{BLANK}_0.*progress.yaml"):
        Auto3DSegModel(untrained, mapping).load()


def test_mapping_lacking_a_model_label(work_dir, tmp_path):
    partial = write_mapping(tmp_path / "partial.csv", {1: SCHEMA_NAMES[1]})
    with pytest.raises(UnmappedLabelError, match=r"3 classes.*no row for label value\(s\) \[2\]"):
        Auto3DSegModel(work_dir, partial).load()


def test_mapping_of_another_model(work_dir, tmp_path):
    wider = write_mapping(tmp_path / "wider.csv", {**SCHEMA_NAMES, 3: "sternum"})
    with pytest.raises(LabelSetError, match=r"lists label value\(s\) \[3\] it cannot produce"):
        Auto3DSegModel(work_dir, wider).load()


def test_sigmoid_model_refused(mapping, tmp_path):
    work_dir = build_work_dir(tmp_path, {BRIGHT: {0: 0.9}})
    config_file = work_dir / f"{BRIGHT}_0" / "configs" / "hyper_parameters.yaml"
    config = ConfigParser.load_config_file(str(config_file))
    ConfigParser.export_config_file({**config, "sigmoid": True}, str(config_file), fmt="yaml")
    with pytest.raises(ModelOutputError, match="sigmoid"):
        Auto3DSegModel(work_dir, mapping).load()


def test_legacy_pickled_work_dir_needs_permission(mapping, tmp_path, monkeypatch):
    """Work dirs of MONAI < 1.6 hold algo_object.pkl, which MONAI 1.6 unpickles only when allowed."""
    work_dir = build_work_dir(tmp_path, {BRIGHT: {0: 0.9}}, num_fold=1)
    monkeypatch.setenv("MONAI_ALLOW_PICKLE", "1")
    for folder in (work_dir / f"{BRIGHT}_0", work_dir / f"{BLANK}_0"):
        algo, _ = algo_from_json(str(folder / "algo_object.json"))
        with pytest.warns(Warning):
            algo_to_pickle(algo, template_path=algo.template_path)
        (folder / "algo_object.json").unlink()
    assert Auto3DSegModel(work_dir, mapping).algorithm_ids == [f"{BRIGHT}_0"]
    monkeypatch.delenv("MONAI_ALLOW_PICKLE")
    with pytest.raises(ModelUnavailableError, match=rf"\['{BLANK}_0', '{BRIGHT}_0'\].*MONAI_ALLOW_PICKLE=1"):
        Auto3DSegModel(work_dir, mapping).load()
