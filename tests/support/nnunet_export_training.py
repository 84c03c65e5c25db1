"""Train a tiny nnU-Net v2 model on an nnU-Net export (the loop back), on CPU, once per export content.

nnU-Net's own steps in a child process (it reads its folders from the environment): fingerprint
with its integrity check, plan, preprocess, then a few iterations of a trainer without data
augmentation on fold ``all``, started from the stand-in base model's weights
(``tests.support.nnunet_standin``; nnU-Net's ``load_pretrained_weights`` skips the segmentation
layers, so only those learn the export's labels from scratch). The plans are shrunk as the
stand-in's are, so the architecture matches and training takes seconds. Model quality is not the
point: the loop is (export -> train -> ``nnunet:`` source -> QC).

Cache: under ``tests.support.nnunet_standin.cache_root()``, keyed by this file's source, the base
model and the export's files (a deterministic export gives the same key); a file lock keeps
parallel pytest workers from training twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.support.nnunet_standin import REPO_ROOT, _as_plain_trainer, _shrink_plans, base_model_folder, cache_root

_EPOCHS = 2
_ITERATIONS_PER_EPOCH = 8
_TRAINER = "nnUNetTrainerExportLoop"
_MODEL = "nnUNetTrainer__nnUNetPlans__3d_fullres"  # the checkpoint names the plain trainer (same network)


def train_on_export(dataset_folder: Path) -> Path:
    """The trained model folder (``nnUNetTrainer__nnUNetPlans__3d_fullres``, fold ``all``) for the export at ``dataset_folder``."""
    base = base_model_folder()
    key = hashlib.sha256(Path(__file__).read_bytes() + str(base).encode())
    for path in sorted(p for p in dataset_folder.rglob("*") if p.is_file()):
        key.update(str(path.relative_to(dataset_folder)).encode() + path.read_bytes())
    root = cache_root() / f"nnunet-export-trained-{key.hexdigest()[:16]}"
    folder = root / dataset_folder.name / _MODEL
    if (folder / "fold_all" / "checkpoint_final.pth").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "fold_all" / "checkpoint_final.pth").is_file():
            _train(dataset_folder, base / "fold_all" / "checkpoint_final.pth", folder)
    return folder


def _train(dataset_folder: Path, pretrained: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="export-train-", dir=target.parent) as scratch:
        work = Path(scratch)
        env = dict(os.environ)
        env.update(nnUNet_raw=str(dataset_folder.parent), nnUNet_preprocessed=str(work / "preprocessed"),
                   nnUNet_results=str(work / "results"), nnUNet_def_n_proc="1", nnUNet_compile="false")
        env.pop("nnUNet_extTrainer", None)
        log = work / "train.log"
        with open(log, "w") as out:
            done = subprocess.run([sys.executable, "-m", "tests.support.nnunet_export_training", dataset_folder.name,
                                   str(pretrained)], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"training on the nnU-Net export failed (exit {done.returncode}):\n{log.read_text()[-3000:]}")
        trained = work / "results" / dataset_folder.name / f"{_TRAINER}__nnUNetPlans__3d_fullres"
        shutil.copy(log, trained / "build.log")
        trained.rename(target)


def _run(dataset_name: str, pretrained: Path) -> None:
    """Plan, preprocess and train with nnU-Net's own API (runs in the child process)."""
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoDA import nnUNetTrainerNoDA

    class nnUNetTrainerExportLoop(nnUNetTrainerNoDA):
        """A couple of short epochs: enough to show the loop works, not to make a good model."""

        def __init__(self, plans: dict, configuration: str, fold, dataset_json: dict, device: torch.device):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = _EPOCHS
            self.num_iterations_per_epoch = _ITERATIONS_PER_EPOCH
            self.num_val_iterations_per_epoch = 1

    dataset_id = int(dataset_name[7:10])
    np.random.seed(0)
    torch.manual_seed(0)
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True)
    plan_experiments([dataset_id])
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / dataset_name
    _shrink_plans(preprocessed / "nnUNetPlans.json")
    preprocess([dataset_id], configurations=["3d_fullres"], num_processes=[1])
    os.environ["nnUNet_n_proc_DA"] = "0"
    plans = {**json.loads((preprocessed / "nnUNetPlans.json").read_text()), "continue_training": False}
    trainer = nnUNetTrainerExportLoop(plans, "3d_fullres", "all", json.loads((preprocessed / "dataset.json").read_text()),
                                      device=torch.device("cpu"))
    trainer.initialize()
    load_pretrained_weights(trainer.network, str(pretrained))
    trainer.run_training()
    model_folder = Path(trainer.output_folder_base)
    (model_folder / "fold_all" / "checkpoint_best.pth").unlink(missing_ok=True)
    _as_plain_trainer(model_folder / "fold_all" / "checkpoint_final.pth")


if __name__ == "__main__":  # nnU-Net spawns worker processes, which re-import this module
    _run(sys.argv[1], Path(sys.argv[2]))
