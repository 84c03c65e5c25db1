"""A trained nnU-Net v2 model folder plus a mapping CSV, run in-process by the real nnU-Net predictor.

The model is a stand-in (``tests.support.nnunet_standin``) for a custom tarsal-bones model: its
dataset.json lists the 14 sided tarsal bones of ``tests/data/nnunet_tarsal_bones_mapping.csv`` and it
predicts a bright object as ``calcaneus_left``.
"""

import csv
import json
import shutil
import subprocess
import sys

import pytest

from labels.label_sets import LabelSetError, load_label_set
from labels.schema import default_schema
from models.base import Prediction, SegmentationModel
from models.errors import ModelUnavailableError
from models.harmonize import to_schema
from models.nnunet import NnUNetModel
from tests.support.bright_object_ct import object_labelled, write_bright_object_ct

TARGET = "calcaneus_left"
DATASET = "Dataset501_TarsalBones"


@pytest.fixture(scope="session")
def mapping(test_data):
    return test_data / "nnunet_tarsal_bones_mapping.csv"


@pytest.fixture(scope="session")
def tarsal_labels(mapping) -> dict[str, int]:
    with open(mapping, newline="") as handle:
        return {"background": 0, **{row["native_name"]: int(row["native_value"]) for row in csv.DictReader(handle)}}


@pytest.fixture(scope="session")
def tarsal_model(standin_factory, tarsal_labels, tmp_path_factory):
    folder = tmp_path_factory.mktemp("results") / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    return standin_factory(folder, tarsal_labels, tarsal_labels[TARGET], dataset_name=DATASET)


@pytest.fixture(scope="session")
def bright(tmp_path_factory):
    return write_bright_object_ct(tmp_path_factory.mktemp("ct") / "series")


@pytest.fixture(scope="session")
def loaded(tarsal_model, mapping):
    model = NnUNetModel(tarsal_model, mapping)
    model.load()
    return model


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_torchvision_and_timm_import_in_a_fresh_interpreter():
    """The start-up hook (models.torch_compat via its .pth file) makes the CUDA torchvision importable here."""
    done = run_python("import torchvision, timm; print(torchvision.__version__)")
    assert done.returncode == 0, done.stderr[-2000:]


def test_startup_hook_is_waiting_and_imports_nothing_heavy():
    done = run_python("import sys; from models import torch_compat as t; "
                      "assert t._TorchvisionOpsFinder in sys.meta_path, 'hook not installed: make setup'; "
                      "assert 'torch' not in sys.modules")
    assert done.returncode == 0, done.stderr[-2000:]


def test_shim_stays_out_of_the_way_of_real_ops():
    """Where torchvision's ops are already defined (a working torchvision), nothing is declared twice."""
    done = run_python(
        "import torch; real = torch.library.Library('torchvision', 'DEF'); "
        "real.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor'); "
        "from models.torch_compat import register_torchvision_ops; assert register_torchvision_ops() is False"
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_bright_object_becomes_the_mapped_bone(loaded, bright):
    assert isinstance(loaded, SegmentationModel)
    prediction = loaded.predict(bright.ct)
    assert isinstance(prediction, Prediction) and prediction.label_set is not None
    object_labelled(bright, to_schema(prediction, bright.ct), default_schema()[TARGET].id)


def test_model_trained_in_ras_gets_a_turned_ct_and_lands_back(tarsal_model, mapping, bright, tmp_path):
    """A reorienting reader in plans.json means RAS arrays: the CT is turned, the labels still land on the object."""
    folder = tmp_path / tarsal_model.name
    shutil.copytree(tarsal_model, folder)
    plans = json.loads((folder / "plans.json").read_text())
    (folder / "plans.json").write_text(json.dumps({**plans, "image_reader_writer": "NibabelIOWithReorient"}))
    prediction = NnUNetModel(folder, mapping).predict(bright.ct)
    assert [o.value for o in prediction.labels.get_closest_patient_orientation()] == ["H", "A", "R"]
    object_labelled(bright, to_schema(prediction, bright.ct), default_schema()[TARGET].id)


def test_name_and_version_come_from_the_folder(tarsal_model, mapping, standin_factory, tarsal_labels, tmp_path):
    model = NnUNetModel(tarsal_model, mapping)
    assert model.name == f"nnU-Net {DATASET}"
    assert model.version.startswith("sha256-") and model.version == NnUNetModel(tarsal_model, mapping).version
    other = standin_factory(tmp_path / DATASET / tarsal_model.name, tarsal_labels, tarsal_labels["talus_left"], dataset_name=DATASET)
    assert NnUNetModel(other, mapping).version != model.version
    named = NnUNetModel(tmp_path / "absent", mapping, name="tarsals", version="3")
    assert (named.name, named.version) == ("tarsals", "3")


def test_folds_default_to_those_with_a_checkpoint(standin_factory, tarsal_labels, mapping, tmp_path):
    folder = standin_factory(tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres", tarsal_labels, 2, fold="0")
    assert NnUNetModel(folder, mapping).folds == ("0",)
    with pytest.raises(ModelUnavailableError, match="fold_all"):
        NnUNetModel(folder, mapping, folds=("all",))


def test_missing_folder_says_where_and_what(mapping, tmp_path):
    with pytest.raises(ModelUnavailableError) as raised:
        NnUNetModel(tmp_path / "nowhere", mapping)
    assert str(tmp_path / "nowhere") in str(raised.value) and "checkpoint_final.pth" in str(raised.value)


def test_mapping_lacking_a_model_label_is_refused(tarsal_model, mapping, tmp_path):
    rows = mapping.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(row for row in rows if ",cuboid_right," not in row) + "\n")
    with pytest.raises(LabelSetError, match=r"11 'cuboid_right'"):
        NnUNetModel(tarsal_model, short).load()


def test_mapping_naming_a_value_differently_is_refused(tarsal_model, mapping, tmp_path):
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(mapping.read_text().replace("1,talus_left,", "1,astragalus_left,"))
    assert load_label_set(renamed).labels[1].name == "astragalus_left"
    with pytest.raises(LabelSetError, match="'talus_left' in the model but 'astragalus_left'"):
        NnUNetModel(tarsal_model, renamed).load()
