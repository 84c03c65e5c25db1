"""An nnU-Net export passes nnU-Net's own integrity check, plans and preprocesses (its command line, on CPU).

``nnUNetv2_plan_and_preprocess -d NNN --verify_dataset_integrity -c 3d_fullres -np 1 -npfp 1`` on a tiny
synthetic export (four series of three patients, a bone not yet trusted in two): no error, no
geometry warning, every case preprocessed, and the ignore label survives preprocessing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset.nnunet_export import SPLITS_FILE
from tests.support.nnunet_finals import SECOND_BOX, TRUSTED_BOX, UNTRUSTED_BOX, export_nnunet, tiny_final

DATASET_ID = 802
NAME = "IntegrityCheck"


def nnunet_environment(work: Path) -> dict[str, str]:
    """nnU-Net's folders under ``work`` (it reads them from the environment), one process, no compilation."""
    env = dict(os.environ)
    env.update(nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "preprocessed"),
               nnUNet_results=str(work / "results"), nnUNet_def_n_proc="1", nnUNet_compile="false")
    env.pop("nnUNet_extTrainer", None)
    return env


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    work = tmp_path_factory.mktemp("nnunet")
    finals = [
        tiny_final(work / "ct", 11, "A", trusted={"calcaneus_left": TRUSTED_BOX}, untrusted=UNTRUSTED_BOX),
        tiny_final(work / "ct", 12, "A", trusted={"calcaneus_left": TRUSTED_BOX, "talus_left": SECOND_BOX}),
        tiny_final(work / "ct", 13, "B", trusted={"calcaneus_left": TRUSTED_BOX}, untrusted=UNTRUSTED_BOX),
        tiny_final(work / "ct", 14, "C", trusted={"talus_left": SECOND_BOX}),
    ]
    export = export_nnunet(finals, work / "raw", dataset_id=DATASET_ID, name=NAME)
    # -npfp: workers of the integrity check and the fingerprint (default 8, each importing torch)
    command = [str(Path(sys.executable).with_name("nnUNetv2_plan_and_preprocess")), "-d", str(DATASET_ID),
               "--verify_dataset_integrity", "-c", "3d_fullres", "-np", "1", "-npfp", "1"]
    done = subprocess.run(command, env=nnunet_environment(work), capture_output=True, text=True, timeout=300)
    return export, work / "preprocessed" / export.folder.name, done


def test_integrity_check_plans_and_preprocesses(preprocessed):
    export, folder, done = preprocessed
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "mismatch" not in output.lower(), output[-3000:]  # nnU-Net only warns about origin/direction mismatches
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    assert "3d_fullres" in plans["configurations"]
    assert json.loads((folder / "dataset.json").read_text())["labels"] == export.labels
    stored = {path.name.split(".")[0] for path in (folder / "nnUNetPlans_3d_fullres").iterdir() if "_seg" not in path.name}
    assert stored == set(export.cases.values())


def test_ignore_label_survives_preprocessing(preprocessed):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    export, folder, _ = preprocessed
    data = folder / "nnUNetPlans_3d_fullres"
    dataset = infer_dataset_class(str(data))(str(data))
    values = set()
    for case in export.cases.values():
        _, seg, _, _ = dataset.load_case(case)
        values |= set(np.unique(np.asarray(seg)).tolist())
    assert values == set(export.labels.values())  # background, both bones and ignore (K+1)


def test_patient_folds_are_what_nnunet_reads(preprocessed):
    export, folder, _ = preprocessed
    splits = json.loads((export.folder / SPLITS_FILE).read_text())
    assert len(splits) == 3 and all(split["val"] for split in splits)  # three patients for five folds
