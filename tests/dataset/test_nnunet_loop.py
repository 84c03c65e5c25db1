"""The loop back: run -> QC -> ``bonehub dataset export --format nnunet`` -> train -> the next run -> QC.

Two synthetic CTs of two patients, each with one bright bone-like box; two stand-in nnU-Net models
(``tests.support.nnunet_standin``) both label it ``calcaneus_left``, so QC accepts it. Its final
labels are exported for nnU-Net, a tiny model is trained on the export on CPU (two short epochs from
the stand-in's weights, cached per export content: ``tests.support.nnunet_export_training``) and
joins the next ``bonehub run`` as ``nnunet:MODEL?mapping=<export>/schema_mapping.csv``; QC then
shows it next to the two sources it learned from.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from dataset.final_labels import final_series
from dataset.nnunet_export import MAPPING_FILE
from dataset.selection import ExportSelection
from pipeline.cli import main
from review.state import ReviewPlace
from tests.conftest import TEST_DATA
from tests.support.nnunet_export_training import train_on_export
from tests.support.nnunet_finals import TRUSTED_BOX, tiny_final
from tests.support.nnunet_standin import build_standin_model

MAPPING = TEST_DATA / "nnunet_tarsal_bones_mapping.csv"
TEACHERS = ("Dataset501_TarsalBones", "Dataset502_TarsalBonesTwin")
SHAPE = (40, 48, 56)  # larger than the stand-in's 32^3 patch
STUDENT = "nnU-Net Dataset800_BoneHub"  # the export's default nnU-Net dataset


def _teacher(root: Path, dataset_name: str) -> str:
    with open(MAPPING, newline="") as handle:
        labels = {"background": 0, **{row["native_name"]: int(row["native_value"]) for row in csv.DictReader(handle)}}
    folder = build_standin_model(root / dataset_name / "nnUNetTrainer__nnUNetPlans__3d_fullres", labels,
                                 labels["calcaneus_left"], dataset_name=dataset_name)
    return f"nnunet:{folder}?mapping={MAPPING}"


def _run(cts: Path, store: Path, sources: list[str]) -> int:
    args = ["run", "--dicom-folder", str(cts), "--out", str(store), "--cache-dir", str(store.parent / "cache")]
    return main(args + [arg for source in sources for arg in ("--source", source)])


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    work = tmp_path_factory.mktemp("loop")
    for index, patient in ((21, "LOOP-A"), (22, "LOOP-B")):
        tiny_final(work / "ct", index, patient, trusted={"calcaneus_left": TRUSTED_BOX}, shape=SHAPE)
    teachers = [_teacher(work / "models", name) for name in TEACHERS]
    store = work / "store"
    assert _run(work / "ct", store, teachers) == 0
    place = ReviewPlace(str(store), str(store / "manifest.parquet"), str(store / "qc"), str(work / "cache"))
    finals = list(final_series(place, ExportSelection()))
    raw = work / "raw"  # nnU-Net's raw folder: the data card lies beside the dataset folder
    assert main(["dataset", "export", "--out", str(store), "--cache-dir", str(work / "cache"), "--to", str(raw),
                 "--format", "nnunet"]) == 0
    export = raw / "Dataset800_BoneHub"
    model = train_on_export(export)
    student = f"nnunet:{model}?mapping={export / MAPPING_FILE}"
    assert _run(work / "ct", store, [*teachers, student]) == 0
    return finals, export, store


def test_accepted_bones_are_exported(loop):
    finals, export, _ = loop
    assert len(finals) == 2 and all(final.states.get("calcaneus_left") == "automatic_accepted" for final in finals)
    labels = json.loads((export / "dataset.json").read_text())["labels"]
    assert labels == {"background": 0, "calcaneus_left": 1, "ignore": 2}


def test_trained_model_joins_the_next_run_and_qc_shows_it_next_to_its_teachers(loop):
    _, _, store = loop
    manifest = pd.read_parquet(store / "manifest.parquet")
    student = manifest[manifest["source"] == STUDENT]
    assert len(student) == 2 and set(student["status"]) == {"written"}
    assert set(manifest.loc[manifest["source"] != STUDENT, "status"]) == {"exists"}
    comparison = pd.read_parquet(store / "qc" / "model_comparison.parquet")
    rows = comparison[comparison["structure"] == "calcaneus_left"]
    sources = {source.rsplit(" ", 1)[0] for source in rows["source"]}
    assert sources == {STUDENT, *(f"nnU-Net {name}" for name in TEACHERS)}
    assert set(rows["series"]) == {2}
