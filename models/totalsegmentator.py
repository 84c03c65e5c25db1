"""TotalSegmentator (``total``, ``total`` fast, ``appendicular_bones``) run through its own Python API.

The CT goes in as a NIfTI image built from the highdicom Volume (LPS -> RAS affine by highdicom);
TotalSegmentator turns it to the closest canonical orientation, resamples, predicts and undoes
both, so its label map comes back on the CT grid and is read back with the same affine.

Three things are settled before TotalSegmentator runs, so it never downloads, exits or phones home:
- weights: every nnU-Net model folder the task needs must exist under the weights folder
  (``weights_dir``, else ``$TOTALSEG_WEIGHTS_PATH``, else ``$TOTALSEG_HOME_DIR/nnunet/results``,
  else ``~/.totalsegmentator/nnunet/results``), else ``ModelUnavailableError`` names them;
- licence (``appendicular_bones``): ``licence_number``, else one already stored by
  ``totalseg_set_license``; without one ``ModelUnavailableError`` says how to get one (TotalSegmentator
  itself would call ``sys.exit``);
- usage statistics: ``send_usage_stats`` is set false in TotalSegmentator's ``config.json``
  (its documented switch; it stays off for later runs too).
TotalSegmentator points ``nnUNet_*`` environment variables at its weights; they are restored after
each run.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd

from dicom_io.ct_series import CTSeries
from labels.label_sets import LabelSet, load_label_set
from models.base import Prediction
from models.device import torch_device
from models.environment import restored_environment
from models.errors import ModelOutputError, ModelUnavailableError

LICENCE_URL = "https://backend.totalsegmentator.com/license-academic/"
_TOUCHED_ENV = ("TOTALSEG_WEIGHTS_PATH", "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


@dataclass(frozen=True)
class _Task:
    label_set: str  # our packaged mapping of the task's output labels
    download_name: str  # totalseg_download_weights -t <this>
    licence: bool = False


TASKS = {
    ("total", False): _Task("totalsegmentator_total", "total"),
    ("total", True): _Task("totalsegmentator_total", "total_fast"),
    ("appendicular_bones", False): _Task("totalsegmentator_appendicular_bones", "appendicular_bones", licence=True),
}


class TotalSegmentator:
    """TotalSegmentator ``task`` (``fast``: the 3 mm model of ``total``) as a segmentation source."""

    def __init__(
        self,
        task: str = "total",
        *,
        fast: bool = False,
        weights_dir: str | os.PathLike | None = None,
        licence_number: str | None = None,
        device: str | None = None,
    ):
        if (task, fast) not in TASKS:
            supported = ", ".join(f"{t}{' fast' if f else ''}" for t, f in TASKS)
            raise ValueError(f"TotalSegmentator task {task!r}{' with fast=True' if fast else ''} is not supported; use one of: {supported}")
        self.task = task
        self.fast = fast
        self.weights_dir = Path(weights_dir) if weights_dir is not None else None
        self.device = device
        self._spec = TASKS[(task, fast)]
        self._licence_number = licence_number
        self._label_set: LabelSet | None = None
        self.name = f"TotalSegmentator {task}" + (" fast" if fast else "")
        try:
            self.version = importlib.metadata.version("TotalSegmentator")
        except importlib.metadata.PackageNotFoundError:
            raise ModelUnavailableError(f"{self.name}: TotalSegmentator is not installed; pip install TotalSegmentator") from None

    def __repr__(self) -> str:
        return f"TotalSegmentator({self.task!r}, fast={self.fast}, version={self.version!r})"

    @property
    def vocabulary(self) -> frozenset[str]:
        """The schema structures this source can label (recorded in its SEGs; QC compares it there)."""
        return load_label_set(self._spec.label_set).emitted()

    def load(self) -> None:
        """Check licence, weights and label map, and switch usage statistics off; cheap when done."""
        if self._label_set is not None:
            return
        from models.torch_compat import register_torchvision_ops

        register_torchvision_ops()  # before TotalSegmentator imports nnU-Net, whose trainer lookup imports timm -> torchvision
        with self._environment():
            _disable_usage_stats()
            if self._spec.licence:
                self._store_and_check_licence()
            self._check_weights()
        self._label_set = self._checked_label_set()

    def predict(self, ct: CTSeries) -> Prediction:
        self.load()
        from totalsegmentator.python_api import totalsegmentator

        with self._environment():
            _disable_usage_stats()  # again: the config file may have been replaced since load()
            try:
                result = totalsegmentator(
                    ct.volume.to_nibabel(), None, ml=True, task=self.task, fast=self.fast, device=self._ts_device(),
                    quiet=True, nr_thr_resamp=1, nr_thr_saving=1, skip_saving=True,
                )
            except SystemExit as stop:
                raise ModelUnavailableError(f"{self.name}: TotalSegmentator stopped (exit status {stop.code}); its reason is printed above") from None
        return Prediction(hd.Volume.from_nibabel(result, frame_of_reference_uid=ct.frame_of_reference_uid), self._label_set)

    # --- checks made before TotalSegmentator runs ---

    def _environment(self):
        """``weights_dir`` as TOTALSEG_WEIGHTS_PATH for the duration; whatever TotalSegmentator sets is undone."""
        weights = str(self.weights_dir) if self.weights_dir is not None else None
        return restored_environment(_TOUCHED_ENV, TOTALSEG_WEIGHTS_PATH=weights)

    def _store_and_check_licence(self) -> None:
        from totalsegmentator.config import has_valid_license_offline, set_license_number

        if self._licence_number is not None:
            # as `totalseg_set_license -l KEY --skip_validation`; the weights server checks it on download
            set_license_number(self._licence_number, skip_validation=True)
        status, _ = has_valid_license_offline()
        if status != "yes":
            raise ModelUnavailableError(
                f"{self.name} needs a TotalSegmentator licence ({status.replace('_', ' ')}). A free licence for "
                f"non-commercial use: {LICENCE_URL}; then pass licence_number='aca_...' or run "
                "`totalseg_set_license -l aca_...` (commercial use: contact the TotalSegmentator authors)"
            )

    def _task_config(self) -> dict:
        from totalsegmentator.python_api import get_task_config

        return get_task_config(self.task, fast=self.fast, quiet=True, plans="nnUNetPlans")

    def _expected_checkpoints(self) -> list[Path]:
        """The checkpoint of every nnU-Net model the task runs, where TotalSegmentator will look for it."""
        from totalsegmentator.config import get_weights_dir
        from totalsegmentator.map_tasks_config import TASK_ID_WEIGHTS_CONFIGS

        config = self._task_config()
        task_ids = config["task_id"] if isinstance(config["task_id"], list) else [config["task_id"]]
        model = f"{config['trainer']}__{config['plans']}__{config['model']}"
        checkpoints = []
        for task_id in task_ids:
            entry = TASK_ID_WEIGHTS_CONFIGS[task_id]
            dataset = get_weights_dir() / entry.get("rel_path", "") / entry["foldername"]
            checkpoints += [dataset / model / f"fold_{fold}" / "checkpoint_final.pth" for fold in config["folds"]]
        return checkpoints

    def _check_weights(self) -> None:
        from totalsegmentator.config import get_weights_dir

        missing = [path for path in self._expected_checkpoints() if not path.is_file()]
        if missing:
            where = get_weights_dir()
            raise ModelUnavailableError(
                f"{self.name}: model weights missing under {where}: "
                + ", ".join(str(path.relative_to(where)) for path in missing)
                + f". Download them on a machine with internet access (`totalseg_download_weights -t {self._spec.download_name}`, "
                "into $TOTALSEG_WEIGHTS_PATH or ~/.totalsegmentator/nnunet/results) and pass that folder as weights_dir"
            )

    def _checked_label_set(self) -> LabelSet:
        """Our mapping must list TotalSegmentator's output labels exactly (catches a changed class map)."""
        from totalsegmentator.map_to_binary import class_map

        label_set = load_label_set(self._spec.label_set)
        outputs = class_map[self.task]
        listed = {value: label.name for value, label in label_set.labels.items()}
        if listed != outputs:
            differ = sorted(set(listed.items()) ^ set(outputs.items()))
            raise ModelOutputError(
                f"{self.name}: label set {label_set.name!r} does not match TotalSegmentator {self.version}'s "
                f"class map for {self.task!r}; differing (value, name): {differ[:10]}"
            )
        return label_set

    def _ts_device(self) -> str:
        """Our torch device name in TotalSegmentator's words (gpu, gpu:N, cpu, mps)."""
        device = torch_device(self.device)
        if device == "cuda" or device.startswith("cuda:"):
            return device.replace("cuda", "gpu")
        if device in ("cpu", "mps"):
            return device
        raise ValueError(f"{self.name}: device {device!r} is not one TotalSegmentator can use (cuda, cuda:N, cpu, mps)")


def _disable_usage_stats() -> None:
    """Create TotalSegmentator's config.json if needed and switch its usage statistics off."""
    from totalsegmentator.config import set_config_key, setup_totalseg

    setup_totalseg()
    set_config_key("send_usage_stats", False)
    set_config_key("statistics_disclaimer_shown", True)
