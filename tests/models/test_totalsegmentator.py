"""TotalSegmentator through its real Python API, with stand-in nnU-Net models under a temporary weights folder.

Each stand-in (``tests.support.nnunet_standin``) sits in the exact folder TotalSegmentator looks in,
has the dataset's real label list and predicts a bright object as ``femur_left`` (the part models of
``total`` that do not hold the femur predict nothing). Everything else (canonical reorientation,
resampling, nnU-Net inference, merging the five parts) is TotalSegmentator's own code.
"""

import json
import os
import time

import pytest

from labels.label_sets import load_label_set
from labels.schema import default_schema
from models.base import SegmentationModel
from models.errors import ModelUnavailableError
from models.harmonize import to_schema
from models.totalsegmentator import TotalSegmentator
from tests.support.bright_object_ct import object_labelled, write_bright_object_ct

TARGET = "femur_left"
FAST_MODEL = "Dataset297_TotalSegmentator_total_3mm_1559subj/nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres"
TOTAL_MODELS = [f"{dataset}/nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres" for dataset in (
    "Dataset291_TotalSegmentator_part1_organs_1559subj",
    "Dataset292_TotalSegmentator_part2_vertebrae_1532subj",
    "Dataset293_TotalSegmentator_part3_cardiac_1559subj",
    "Dataset294_TotalSegmentator_part4_muscles_1559subj",
    "Dataset295_TotalSegmentator_part5_ribs_1559subj",
)]


def part_labels(dataset_folder: str) -> dict[int, str]:
    """The native labels a TotalSegmentator dataset's model outputs, from TotalSegmentator's own tables."""
    from totalsegmentator.map_to_binary import class_map, class_map_5_parts, map_taskid_to_partname_ct

    task_id = int(dataset_folder[7:10])
    return class_map["total"] if task_id == 297 else class_map_5_parts[map_taskid_to_partname_ct[task_id]]


def place_standins(weights, models, standin_factory):
    for model in models:
        labels = part_labels(model)
        names = {name: value for value, name in labels.items()}
        trainer, plans, configuration = model.split("/")[1].split("__")
        standin_factory(weights / model, {"background": 0, **names}, names.get(TARGET, 0),
                        trainer=trainer, plans=plans, configuration=configuration, fold="0", dataset_name=model.split("/")[0])


@pytest.fixture(autouse=True)
def totalseg_home(tmp_path, monkeypatch):
    """TotalSegmentator's config.json (licence, usage statistics) in a folder of this test, never ~/.totalsegmentator."""
    home = tmp_path / "totalseg_home"
    home.mkdir()
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(home))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    return home


@pytest.fixture(scope="session")
def bright(tmp_path_factory):
    return write_bright_object_ct(tmp_path_factory.mktemp("ct") / "series")


@pytest.fixture(scope="session")
def weights(tmp_path_factory, standin_factory):
    folder = tmp_path_factory.mktemp("totalseg_weights")
    place_standins(folder, [FAST_MODEL, *TOTAL_MODELS], standin_factory)
    return folder


def expected_id() -> int:
    schema_name = load_label_set("totalsegmentator_total").by_name(TARGET).schema_name
    return default_schema()[schema_name].id


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "total"])
def test_bright_object_becomes_the_left_femur(fast, weights, bright, totalseg_home, monkeypatch):
    monkeypatch.setenv("nnUNet_results", "/somewhere/else")
    model = TotalSegmentator("total", fast=fast, weights_dir=weights)
    assert isinstance(model, SegmentationModel)
    assert model.name == "TotalSegmentator total" + (" fast" if fast else "")
    started = time.perf_counter()
    prediction = model.predict(bright.ct)
    print(f"{model.name}: {time.perf_counter() - started:.1f} s")
    assert prediction.label_set.name == "totalsegmentator_total"
    object_labelled(bright, to_schema(prediction, bright.ct), expected_id())
    assert json.loads((totalseg_home / "config.json").read_text())["send_usage_stats"] is False
    assert os.environ["nnUNet_results"] == "/somewhere/else"
    assert "TOTALSEG_WEIGHTS_PATH" not in os.environ


def test_usage_statistics_switched_off_in_an_existing_config(totalseg_home, tmp_path):
    (totalseg_home / "config.json").write_text(json.dumps({"totalseg_id": "totalseg_ABCDEFGH", "send_usage_stats": True, "prediction_counter": 3}))
    with pytest.raises(ModelUnavailableError):
        TotalSegmentator("total", fast=True, weights_dir=tmp_path / "empty").load()
    config = json.loads((totalseg_home / "config.json").read_text())
    assert config["send_usage_stats"] is False and config["prediction_counter"] == 3


@pytest.mark.parametrize("fast, models", [(True, [FAST_MODEL]), (False, TOTAL_MODELS)], ids=["fast", "total"])
def test_missing_weights_named_without_download(fast, models, tmp_path):
    empty = tmp_path / "weights"
    with pytest.raises(ModelUnavailableError) as raised:
        TotalSegmentator("total", fast=fast, weights_dir=empty).load()
    message = str(raised.value)
    assert str(empty) in message and "totalseg_download_weights -t total" in message
    assert all(f"{model}/fold_0/checkpoint_final.pth" in message for model in models)
    assert not empty.exists()  # nothing was downloaded or even prepared for a download


def test_appendicular_bones_without_licence_is_unavailable_not_an_exit(tmp_path):
    with pytest.raises(ModelUnavailableError, match="licence") as raised:
        TotalSegmentator("appendicular_bones", weights_dir=tmp_path).load()
    assert "totalseg_set_license" in str(raised.value)


def test_appendicular_bones_with_licence_goes_on_to_the_weights(tmp_path, totalseg_home):
    model = TotalSegmentator("appendicular_bones", weights_dir=tmp_path, licence_number="aca_" + "X" * 14)
    with pytest.raises(ModelUnavailableError, match="Dataset304_appendicular_bones_ext_1559subj/nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"):
        model.load()
    assert model.name == "TotalSegmentator appendicular_bones"
    assert json.loads((totalseg_home / "config.json").read_text())["license_number"] == "aca_" + "X" * 14


def test_unsupported_task_and_mode_are_refused():
    with pytest.raises(ValueError, match="not supported"):
        TotalSegmentator("appendicular_bones", fast=True)
    with pytest.raises(ValueError, match="not supported"):
        TotalSegmentator("lung_vessels")
