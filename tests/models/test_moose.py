"""MOOSE (moosez 3.2) through the adapter, with stand-in nnU-Net models placed where moosez looks for them.

No MOOSE weights can be downloaded here, so each model folder holds a small real nnU-Net model
(``tests.support.nnunet_standin``) that predicts a bright object as one of the model's own labels. The
folder layout, the ``model_version.json`` URL and the folder names come from moosez's own table; the
dataset.json labels from the packaged mapping CSVs. Everything else (moosez's Model, resampling,
chunked nnU-Net inference, MOOSE's custom trainer) is the real code.
"""

import csv
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import nnunetv2
import numpy as np
import pytest
import requests

from dicom_io.ct_series import read_ct_series
from dicom_io.ct_writer import write_ct_series
from labels.label_sets import LabelSetError
from labels.schema import default_schema
from models.base import SegmentationModel
from models.errors import ModelUnavailableError
from models.harmonize import to_schema
from models.moose import MODEL_VERSION_FILE, MOOSE_MODELS, Moose
from tests.support.nnunet_standin import BRIGHT_HU, SOFT_TISSUE_HU, build_standin_model

REPO_ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = REPO_ROOT / "labels" / "mappings"
# MOOSE ships its own trainer (moosez/nnUNet_custom_trainer); a stand-in trained "with" it makes
# nnU-Net look the trainer up the way it must for such a real model.
MOOSE_TRAINER = "nnUNetTrainer_2000_epochs_DA5NoMirroring"
NNUNET_ENV = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer")
FOREGROUND = {  # model -> the native label its stand-in gives a bright object
    "clin_ct_vertebrae": "vertebra_L1",
    "clin_ct_ribs": "rib_left_5",
    "clin_ct_peripheral_bones": "femur_left",
}
# (slices, rows, columns) of the bright box: off-centre on every axis, so a flipped axis would miss it
BOX = (slice(3, 9), slice(24, 34), slice(5, 13))
GRIDS = {
    "axial": np.eye(3),
    "left_handed_rotated": np.diag([1.0, -1.0, 1.0]) @ np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
}


def mapping_labels(model_name: str) -> dict[str, int]:
    """dataset.json ``labels`` for a stand-in: background plus the packaged mapping's native names and values."""
    with open(MAPPINGS / f"moose_{model_name}.csv", newline="") as handle:
        return {"background": 0, **{row["native_name"]: int(row["native_value"]) for row in csv.DictReader(handle)}}


def moosez_table(model_name: str) -> tuple[str, str]:
    """(folder name, URL) from moosez's model table (imported after the adapter did, with the environment guarded)."""
    from moosez.models import MODEL_METADATA

    return MODEL_METADATA[model_name]["folder_name"], MODEL_METADATA[model_name]["url"]


def place_standin(models_dir: Path, model_name: str, labels: dict[str, int], *, url: str | None = None) -> Path:
    """A stand-in in ``models_dir/models/nnunet_trained_models/<moosez folder>``, as ``moosez -md-out`` leaves it."""
    Moose(model_name, models_dir=models_dir)  # imports moosez with nnU-Net's environment guarded
    folder_name, moosez_url = moosez_table(model_name)
    model_folder = models_dir / "models" / "nnunet_trained_models" / folder_name
    foreground = labels.get(FOREGROUND[model_name], 1)
    build_standin_model(model_folder / f"{MOOSE_TRAINER}__nnUNetPlans__3d_fullres", labels, foreground, trainer=MOOSE_TRAINER)
    (model_folder / MODEL_VERSION_FILE).write_text(json.dumps({"url": url or moosez_url}))
    return model_folder


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """Stand-ins of all three models, built once."""
    root = tmp_path_factory.mktemp("moose")
    started = time.perf_counter()
    for model_name in MOOSE_MODELS:
        place_standin(root, model_name, mapping_labels(model_name))
    print(f"MOOSE stand-ins placed in {time.perf_counter() - started:.1f} s (base model cached)")
    return root


@pytest.fixture(scope="module")
def loaded(models_dir):
    """model name -> loaded adapter."""
    sources = {}
    for model_name in MOOSE_MODELS:
        started = time.perf_counter()
        sources[model_name] = Moose(model_name, models_dir=models_dir, device="cpu")
        sources[model_name].load()
        print(f"{model_name} loaded in {time.perf_counter() - started:.1f} s")
    return sources


def synthetic_ct(folder: Path, direction: np.ndarray):
    """A CT with one bright box in soft tissue on a non-symmetric grid, and the box on the read-back CT grid."""
    rng = np.random.default_rng(7)
    array = rng.normal(SOFT_TISSUE_HU, 20.0, size=(20, 44, 36))
    array[BOX] = rng.normal(BRIGHT_HU, 50.0, size=array[BOX].shape)
    frame = "1.2.826.0.1.3680043.8.498.23"
    volume = hd.Volume.from_components(
        np.round(array).astype(np.int16), spacing=[2.5, 1.7, 1.9], direction=direction,
        position=[-40.5, 12.25, -310.0], coordinate_system="PATIENT", frame_of_reference_uid=frame,
    )
    write_ct_series(volume, folder, study_instance_uid="1.2.826.0.1.3680043.8.498.21",
                    series_instance_uid="1.2.826.0.1.3680043.8.498.22", frame_of_reference_uid=frame)
    ct = read_ct_series(folder)
    box = np.zeros(array.shape, np.uint8)
    box[BOX] = 1
    # the reader stacks slices along the right-handed normal: bring the box onto its grid
    return ct, volume.with_array(box).match_geometry(ct.geometry).array.astype(bool)


@pytest.fixture
def network_attempts(monkeypatch):
    """Every name lookup or connection made during the test, refused and recorded."""
    attempts = []

    def refuse(what):
        def call(*args, **kwargs):
            attempts.append((what, args[:2]))
            raise OSError(f"test: network access refused ({what})")
        return call

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    return attempts


def test_name_version_and_folder_before_loading(models_dir):
    folder_name, url = moosez_table("clin_ct_vertebrae")
    source = Moose("clin_ct_vertebrae", models_dir=models_dir)
    assert isinstance(source, SegmentationModel)
    assert source.name == "MOOSE clin_ct_vertebrae"
    assert source.model_folder == models_dir / "models" / "nnunet_trained_models" / folder_name
    moosez_version = importlib.metadata.version("moosez")
    assert source.version == f"moosez {moosez_version} model {url.rsplit('/', 1)[1].removesuffix('.zip')}"
    assert source._model is None  # nothing loaded
    # the same folder given as moosez's models folder itself; no model there -> the moosez version alone
    assert Moose("clin_ct_vertebrae", models_dir=source.models_dir).model_folder == source.model_folder
    assert Moose("clin_ct_ribs", models_dir=models_dir / "empty").version == f"moosez {moosez_version}"


def test_default_models_dir_is_moosez_own():
    from moosez import system

    assert Moose("clin_ct_ribs").models_dir == Path(system.MODELS_DIRECTORY_PATH)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="clin_ct_organs.*clin_ct_vertebrae, clin_ct_ribs, clin_ct_peripheral_bones"):
        Moose("clin_ct_organs")


@pytest.mark.parametrize("model_name", MOOSE_MODELS)
def test_loads_when_dataset_json_matches_the_mapping(loaded, model_name):
    source = loaded[model_name]
    assert source._label_set.name == f"moose_{model_name}"
    source.load()  # cheap the second time
    assert source._model is loaded[model_name]._model


@pytest.mark.parametrize(("model_name", "grid"), [("clin_ct_vertebrae", "axial"),
                                                  ("clin_ct_peripheral_bones", "left_handed_rotated")])
def test_bright_object_becomes_the_models_bone_where_it_is(loaded, model_name, grid, tmp_path, monkeypatch,
                                                        network_attempts):
    ct, box = synthetic_ct(tmp_path / "ct", GRIDS[grid])
    environment = {"nnUNet_raw": "/raw", "nnUNet_preprocessed": "/pre", "nnUNet_results": "/results"}
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    copied_trainer = Path(nnunetv2.__path__[0]) / "training" / "nnUNetTrainer" / "variants" / "MOOSE_custom_trainers.py"
    trainer_was_there = copied_trainer.exists()

    started = time.perf_counter()
    prediction = loaded[model_name].predict(ct)
    print(f"{model_name} predicted a {ct.volume.spatial_shape} CT in {time.perf_counter() - started:.1f} s")

    schema_map = to_schema(prediction, ct)
    bone = default_schema()[FOREGROUND[model_name]].id
    assert set(np.unique(schema_map)) <= {0, bone}
    found = schema_map == bone
    dice = 2 * (found & box).sum() / (found.sum() + box.sum())
    assert dice > 0.8, f"{FOREGROUND[model_name]} found with Dice {dice:.2f} against the bright box"
    assert {key: os.environ.get(key) for key in NNUNET_ENV} == {**environment, "nnUNet_extTrainer": None}
    assert copied_trainer.exists() == trainer_was_there  # MOOSE's trainer was found without copying it into nnunetv2
    assert network_attempts == []  # moosez sends nothing while it predicts


def test_missing_model_fails_without_network(tmp_path, network_attempts):
    source = Moose("clin_ct_vertebrae", models_dir=tmp_path)
    with pytest.raises(ModelUnavailableError) as raised:
        source.load()
    message = str(raised.value)
    assert str(source.model_folder) in message and f"moosez -md clin_ct_vertebrae -md-out {tmp_path}" in message
    assert source.url in message
    assert network_attempts == []
    assert not (tmp_path / "models").exists()


def test_network_guard_sees_moosez_download(tmp_path, network_attempts):
    """Control: moosez's own Model on the same empty folder does try to download, and the guard sees it."""
    Moose("clin_ct_vertebrae", models_dir=tmp_path)  # moosez imported with the environment guarded
    from moosez import models, system

    with pytest.raises(requests.ConnectionError):
        models.Model("clin_ct_vertebrae", system.OutputManager(False, False), base_directory=str(tmp_path))
    assert network_attempts


def test_outdated_model_is_kept_and_refused(tmp_path, network_attempts):
    old_url = "https://github.com/ENHANCE-PET/MOOSE/releases/download/old/clin_ct_ribs_old.zip"
    model_folder = place_standin(tmp_path, "clin_ct_ribs", mapping_labels("clin_ct_ribs"), url=old_url)
    source = Moose("clin_ct_ribs", models_dir=tmp_path)
    assert source.version.endswith("model clin_ct_ribs_old")
    with pytest.raises(ModelUnavailableError, match="delete the folder and download") as raised:
        source.load()
    assert old_url in str(raised.value) and source.url in str(raised.value)
    assert (model_folder / MODEL_VERSION_FILE).is_file()  # moosez would have deleted the folder
    assert network_attempts == []


def test_model_without_version_file_is_refused(tmp_path, network_attempts):
    model_folder = place_standin(tmp_path, "clin_ct_ribs", mapping_labels("clin_ct_ribs"))
    (model_folder / MODEL_VERSION_FILE).unlink()
    with pytest.raises(ModelUnavailableError, match=f"no {MODEL_VERSION_FILE}"):
        Moose("clin_ct_ribs", models_dir=tmp_path).load()
    assert network_attempts == []


@pytest.mark.parametrize(("change", "expected"), [
    ("rename_and_drop", r"value 1 is 'rib_1_left' in the model but 'rib_left_1' in the mapping; "
                        r"only the mapping has 27 'sternum'"),
    ("extra", r"only the model has 28 'costal_cartilage'"),
])
def test_dataset_json_differing_from_the_mapping_is_named(tmp_path, change, expected):
    labels = mapping_labels("clin_ct_ribs")
    if change == "rename_and_drop":
        del labels["rib_left_1"], labels["sternum"]
        labels["rib_1_left"] = 1
    else:
        labels["costal_cartilage"] = 28
    place_standin(tmp_path, "clin_ct_ribs", labels)
    with pytest.raises(LabelSetError, match=expected) as raised:
        Moose("clin_ct_ribs", models_dir=tmp_path).load()
    assert "dataset.json" in str(raised.value) and "moose_clin_ct_ribs" in str(raised.value)


_PLAIN_NNUNET_AFTER_MOOSE = """
import json, os, sys
import numpy as np
keys = sys.argv[3].split(",")
before = {key: os.environ.get(key) for key in keys}
from models.moose import Moose
Moose("clin_ct_vertebrae", models_dir=sys.argv[1]).load()  # imports moosez
after = {key: os.environ.get(key) for key in keys}
from nnunetv2.utilities.file_path_utilities import get_output_folder
from dicom_io.ct_series import read_ct_series
from models.harmonize import to_schema
from models.nnunet import NnUNetModel
work = sys.argv[2]
model_folder = get_output_folder(999, "nnUNetTrainer", "nnUNetPlans", "3d_fullres")  # found through nnUNet_* folders
ct = read_ct_series(work + "/ct")
np.save(work + "/schema_map.npy", to_schema(NnUNetModel(model_folder, work + "/mapping.csv", device="cpu").predict(ct), ct))
print(json.dumps({"before": before, "after": after}))
"""


def test_plain_nnunet_still_works_after_importing_moosez(models_dir, tmp_path):
    """moosez sets nnU-Net's folders to empty strings on import; in a fresh process the adapter restores them,
    so the nnU-Net adapter, given a model found through nnU-Net's folder variables, still predicts."""
    results = tmp_path / "results"
    build_standin_model(results / "Dataset999_BoneHubStandin" / "nnUNetTrainer__nnUNetPlans__3d_fullres",
                        {"background": 0, "bright_object": 1}, 1)
    (tmp_path / "mapping.csv").write_text("native_value,native_name,schema_name,split_by_side\n1,bright_object,sacrum,\n")
    _, box = synthetic_ct(tmp_path / "ct", GRIDS["axial"])
    env = {**os.environ, "nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(results)}
    env.pop("nnUNet_extTrainer", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PLAIN_NNUNET_AFTER_MOOSE, str(models_dir), str(tmp_path), ",".join(NNUNET_ENV)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    print(f"fresh process importing moosez, then the nnU-Net adapter: {time.perf_counter() - started:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["after"] == report["before"] and report["before"]["nnUNet_results"] == str(results)
    found = np.load(tmp_path / "schema_map.npy") == default_schema()["sacrum"].id
    assert 2 * (found & box).sum() / (found.sum() + box.sum()) > 0.8
