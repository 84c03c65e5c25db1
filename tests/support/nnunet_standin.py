"""Small real nnU-Net v2 model folders for tests, where no real weights can be downloaded.

One tiny base model is trained once with nnU-Net itself (fingerprint, plan, preprocess, a few
training iterations on synthetic CTs: a bright ~1000 HU object in ~40 HU soft tissue) and cached.
Every requested model is derived from it: its labels, trainer, plans and configuration names are
rewritten and the network's segmentation layers widened to one output channel per label, the
trained "bright object" channel copied to ``foreground_label`` and every other new channel made to
lose. The result loads and predicts with nnU-Net's own code (``nnUNetPredictor``), TotalSegmentator
and MOOSE: a bright object comes out as ``foreground_label``, everything else as background.

Cache: ``$BONEHUB_TEST_CACHE`` or ``~/.cache/bonehub-tests``, keyed by this file's source and the
nnunetv2/torch versions; a file lock keeps parallel pytest workers from training twice.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "BONEHUB_TEST_CACHE"
BRIGHT_HU = 1000.0
SOFT_TISSUE_HU = 40.0
LOSING_BIAS = -1000.0  # logit of channels that must never win the argmax

_BASE_DATASET = "Dataset999_BoneHubStandin"
_BASE_TRAINER = "nnUNetTrainerBoneHubStandin"
_SPACING_MM = 2.0
_CASE_SHAPE = (56, 56, 56)  # larger than the patch: many patches hold no object, as in a CT
_N_CASES = 6
_PATCH = [32, 32, 32]
_FEATURES = [8, 16, 32, 64]
_TRAIN_EPOCHS = 6
_ITERATIONS_PER_EPOCH = 30


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bonehub-tests")


def base_model_folder() -> Path:
    """The trained base model (``Trainer__Plans__3d_fullres``), built on first use and cached."""
    key = hashlib.sha256(Path(__file__).read_bytes())
    for package in ("nnunetv2", "torch"):
        key.update(f"{package}=={importlib.metadata.version(package)}".encode())
    root = cache_root() / f"nnunet-standin-{key.hexdigest()[:16]}"
    folder = root / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if (folder / "fold_all" / "checkpoint_final.pth").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "fold_all" / "checkpoint_final.pth").is_file():
            _train_base(folder)
    return folder


def build_standin_model(
    model_folder: Path,
    labels: dict[str, int],
    foreground_label: int,
    *,
    trainer: str = "nnUNetTrainer",
    plans: str = "nnUNetPlans",
    configuration: str = "3d_fullres",
    fold: str = "all",
    dataset_name: str = "Dataset999_BoneHubStandin",
) -> Path:
    """Create ``model_folder`` (named ``<trainer>__<plans>__<configuration>``) as a stand-in model.

    ``labels``: nnU-Net's ``name -> value`` map including ``background: 0``; values must be
    consecutive (nnU-Net's rule). A bright object is predicted as ``foreground_label``; 0 makes a
    model that predicts background everywhere (a part model that must not contribute).
    """
    model_folder = Path(model_folder)
    expected = f"{trainer}__{plans}__{configuration}"
    if model_folder.name != expected:
        raise ValueError(f"stand-in model folder {model_folder} must be named {expected!r} (trainer__plans__configuration)")
    if any(model_folder.resolve().is_relative_to(site) for site in _site_packages()):
        raise ValueError(f"stand-in model folder {model_folder} is inside site-packages; place stand-ins in a temporary folder")
    values = sorted(labels.values())
    if values != list(range(len(values))) or len(values) < 2:
        raise ValueError(f"stand-in labels {labels} must have consecutive values 0..N-1 with N >= 2 (background = 0)")
    if foreground_label not in values:
        raise ValueError(f"foreground label {foreground_label} is not one of the label values {values}")

    base = base_model_folder()
    model_folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(base / "dataset_fingerprint.json", model_folder)
    dataset_json = {**_read_json(base / "dataset.json"), "labels": dict(labels), "name": dataset_name}
    plans_json = _read_json(base / "plans.json")
    configs = plans_json["configurations"]
    plans_json.update(dataset_name=dataset_name, plans_name=plans, configurations={configuration: configs["3d_fullres"]})
    _write_json(model_folder / "dataset.json", dataset_json)
    _write_json(model_folder / "plans.json", plans_json)

    import torch

    checkpoint = torch.load(base / "fold_all" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    checkpoint["network_weights"] = _widen_segmentation_layers(checkpoint["network_weights"], len(values), foreground_label)
    checkpoint["trainer_name"] = trainer
    checkpoint["init_args"] = {**checkpoint["init_args"], "plans": plans_json, "configuration": configuration,
                               "fold": fold, "dataset_json": dataset_json}
    checkpoint["optimizer_state"] = None  # momentum buffers of the narrower layers; inference never reads them
    fold_folder = model_folder / f"fold_{fold}"
    fold_folder.mkdir(exist_ok=True)
    torch.save(checkpoint, fold_folder / "checkpoint_final.pth")
    return model_folder


def _site_packages() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[key]).resolve() for key in ("purelib", "platlib")]


def _widen_segmentation_layers(weights: dict, n_channels: int, foreground_label: int) -> dict:
    """Trained channels (0 background, 1 bright object) -> ``n_channels``, object channel at ``foreground_label``."""
    widened = dict(weights)
    layers = [key for key in weights if ".seg_layers." in key]
    if not layers:
        raise RuntimeError(f"stand-in base network has no seg_layers: {sorted(weights)[:5]}...")
    for key in layers:
        trained = weights[key]
        if key.endswith(".bias"):
            new = trained.new_full((n_channels,), LOSING_BIAS)
        else:
            new = trained.new_zeros((n_channels, *trained.shape[1:]))
        new[0] = trained[0]
        if foreground_label:
            new[foreground_label] = trained[1]
        widened[key] = new
    return widened


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2))


# --- training the base model (in a subprocess: nnU-Net reads its folders from the environment) ---


def _train_base(target: Path) -> None:
    """Train in a scratch folder, then move the model folder into the cache in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="standin-build-", dir=target.parent) as scratch:
        work = Path(scratch)
        env = dict(os.environ)
        env.update(
            nnUNet_raw=str(work / "raw"),
            nnUNet_preprocessed=str(work / "preprocessed"),
            nnUNet_results=str(work / "results"),
            nnUNet_def_n_proc="1",
            nnUNet_compile="false",
        )
        env.pop("nnUNet_extTrainer", None)
        log = work / "train.log"
        with open(log, "w") as out:
            done = subprocess.run([sys.executable, "-m", "tests.support.nnunet_standin", str(work)],
                                  cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"training the nnU-Net stand-in failed (exit {done.returncode}):\n{log.read_text()[-3000:]}")
        trained = work / "results" / _BASE_DATASET / f"{_BASE_TRAINER}__nnUNetPlans__3d_fullres"
        shutil.copy(log, trained / "build.log")
        trained.rename(target)


def synthetic_case(rng: np.random.Generator, shape: tuple[int, int, int] = _CASE_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Soft tissue with noise and one bright sphere or box at a random place: (HU image, object mask)."""
    grid = np.indices(shape).astype(np.float32)
    radius = rng.uniform(3.0, 8.0, size=3)
    centre = np.array([rng.uniform(r + 1, s - r - 1) for r, s in zip(radius, shape)])
    offsets = (grid - centre[:, None, None, None]) / radius[:, None, None, None]
    if rng.random() < 0.5:
        mask = (offsets**2).sum(axis=0) <= 1.0
    else:
        mask = (np.abs(offsets) <= 1.0).all(axis=0)
    image = rng.normal(SOFT_TISSUE_HU, 20.0, shape).astype(np.float32)
    image[mask] = rng.normal(BRIGHT_HU, 50.0, int(mask.sum()))
    return image, mask.astype(np.uint8)


def _write_raw_dataset(raw: Path) -> None:
    import SimpleITK as sitk

    folder = raw / _BASE_DATASET
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    rng = np.random.default_rng(20261122)
    for case in range(_N_CASES):
        for array, name in zip(synthetic_case(rng), (f"imagesTr/case{case:03d}_0000.nii.gz", f"labelsTr/case{case:03d}.nii.gz")):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((_SPACING_MM,) * 3)
            sitk.WriteImage(image, str(folder / name))
    _write_json(folder / "dataset.json", {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "bright_object": 1},
        "numTraining": _N_CASES,
        "file_ending": ".nii.gz",
    })


def _shrink_plans(plans_file: Path) -> None:
    """Keep only 3d_fullres with a small patch and a narrow network: seconds to train on a CPU."""
    plans = _read_json(plans_file)
    config = plans["configurations"]["3d_fullres"]
    config.update(patch_size=_PATCH, batch_size=2)
    arch = config["architecture"]["arch_kwargs"]
    n_stages = len(_FEATURES)
    arch.update(
        n_stages=n_stages,
        features_per_stage=_FEATURES,
        kernel_sizes=[[3, 3, 3]] * n_stages,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1),
        n_conv_per_stage=[2] * n_stages,
        n_conv_per_stage_decoder=[2] * (n_stages - 1),
    )
    plans["configurations"] = {"3d_fullres": config}
    _write_json(plans_file, plans)


def _run_training(work: Path) -> None:
    """Plan, preprocess and train with nnU-Net's own API (runs in the child process)."""
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoDA import nnUNetTrainerNoDA

    class nnUNetTrainerBoneHubStandin(nnUNetTrainerNoDA):
        """A handful of iterations without augmentation: enough to tell a bright object from soft tissue."""

        def __init__(self, plans: dict, configuration: str, fold, dataset_json: dict, device: torch.device):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = _TRAIN_EPOCHS
            self.num_iterations_per_epoch = _ITERATIONS_PER_EPOCH
            self.num_val_iterations_per_epoch = 2

    dataset_id = int(_BASE_DATASET[7:10])
    np.random.seed(0)  # nnU-Net's patch sampling draws from numpy's global generator
    torch.manual_seed(0)
    _write_raw_dataset(work / "raw")
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True)
    plan_experiments([dataset_id])
    preprocessed = work / "preprocessed" / _BASE_DATASET
    _shrink_plans(preprocessed / "nnUNetPlans.json")
    preprocess([dataset_id], configurations=["3d_fullres"], num_processes=[1])
    os.environ["nnUNet_n_proc_DA"] = "0"  # data augmentation in this process (planning needs it unset)
    plans = {**_read_json(preprocessed / "nnUNetPlans.json"), "continue_training": False}  # as nnU-Net's get_trainer_from_args
    trainer = nnUNetTrainerBoneHubStandin(plans, "3d_fullres", "all", _read_json(preprocessed / "dataset.json"),
                                          device=torch.device("cpu"))
    trainer.run_training()
    model_folder = Path(trainer.output_folder_base)
    (model_folder / "fold_all" / "checkpoint_best.pth").unlink(missing_ok=True)
    _as_plain_trainer(model_folder / "fold_all" / "checkpoint_final.pth")
    _check_base(model_folder)


def _as_plain_trainer(checkpoint_file: Path) -> None:
    """Name the trainer ``nnUNetTrainer`` (same network) so the model loads without our trainer class."""
    import torch

    checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
    checkpoint["trainer_name"] = "nnUNetTrainer"
    torch.save(checkpoint, checkpoint_file)


def _check_base(model_folder: Path, min_dice: float = 0.85) -> None:
    """Refuse a base model that does not find fresh bright objects (so tests never run on a bad stand-in)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), ("all",))
    rng = np.random.default_rng(1)
    for case in range(3):
        image, mask = synthetic_case(rng, (44, 48, 52))
        found = predictor.predict_single_npy_array(image[None], {"spacing": [_SPACING_MM] * 3}) == 1
        dice = 2 * (found & (mask == 1)).sum() / (found.sum() + mask.sum())
        print(f"stand-in check case {case}: Dice {dice:.3f}")
        if dice < min_dice:
            raise RuntimeError(f"stand-in base model found the bright object with Dice {dice:.3f} < {min_dice}")


if __name__ == "__main__":  # nnU-Net spawns worker processes, which re-import this module
    _run_training(Path(sys.argv[1]))
