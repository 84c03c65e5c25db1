"""MOOSE (moosez 3.2) bone models as a segmentation source.

moosez's ``moose()`` looks for models only in its own site-packages folder (``Model``'s
``base_directory`` default is bound when moosez is imported, so no global can redirect it), downloads
a model that is missing there or whose ``model_version.json`` names another URL (deleting the old
folder first), and copies a trainer file into nnunetv2's package on every first run. This adapter
therefore runs the two steps ``moose()`` runs for a single-step model itself, in-process on
SimpleITK images: ``moosez.models.Model(name, base_directory=<models_dir>)`` and
``moosez.workflows.inference`` (resample to the model spacing, nnU-Net on chunks, nearest-neighbour
back to the input grid). Like ``moose()`` for files, the CT is reoriented to RAS first (the models
were trained on RAS images); the result comes back on that grid with its affine, and
``models.harmonize`` maps it onto the CT grid.

Before moosez sees a model folder, ``load`` checks that it is there with the ``model_version.json``
moosez expects, so a missing or outdated model raises ``ModelUnavailableError`` instead of a
download (or a deletion). MOOSE's custom trainers are found through nnU-Net's ``nnUNet_extTrainer``
(pointed at moosez's ``nnUNet_custom_trainer`` folder during a prediction) instead of being copied
into nnunetv2. Importing moosez sets ``nnUNet_raw/preprocessed/results`` to empty strings: the
import and every call run inside a guard that restores nnU-Net's variables afterwards (the guard
changes ``os.environ``, so one process should not predict with MOOSE and nnU-Net in parallel threads).

Telemetry: moosez 3.2 sends nothing; its only network use is downloading models (``Model``) and the
ENHANCE training data (a command-line flag), both never reached from here.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import highdicom as hd

from dicom_io.ct_series import CTSeries
from labels.label_sets import LabelSet, LabelSetError, load_label_set
from models.base import Prediction
from models.device import torch_device
from models.environment import restored_environment
from models.errors import ModelOutputError, ModelUnavailableError
from models.torch_compat import register_torchvision_ops

MOOSE_MODELS = ("clin_ct_vertebrae", "clin_ct_ribs", "clin_ct_peripheral_bones")
"""The MOOSE models with a packaged label set ``moose_<model>``."""

MOOSEZ_REQUIREMENT = "moosez==3.2.2"
MODEL_VERSION_FILE = "model_version.json"  # moosez writes {"url": <zip it downloaded>} next to the model
_NNUNET_ENV = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer")
_MODELS_SUBDIR = ("models", "nnunet_trained_models")  # below moosez's package, and below `moosez -md-out DIR`


class Moose:
    """One MOOSE model (``clin_ct_vertebrae``, ``clin_ct_ribs``, ``clin_ct_peripheral_bones``).

    ``models_dir``: the folder ``moosez -md <model> -md-out <models_dir>`` downloads into; the models
    then lie in ``<models_dir>/models/nnunet_trained_models/<Dataset folder>`` (a ``models_dir`` that
    already ends in ``models/nnunet_trained_models`` is used as it is, as moosez does). Default:
    moosez's own folder in site-packages. ``version`` is the moosez version plus the model zip named
    in the installed ``model_version.json``.
    """

    def __init__(self, model_name: str, *, models_dir: str | os.PathLike | None = None, device: str | None = None):
        if model_name not in MOOSE_MODELS:
            raise ValueError(f"unknown MOOSE model {model_name!r}; this adapter runs {', '.join(MOOSE_MODELS)}")
        self.model_name = model_name
        self.name = f"MOOSE {model_name}"
        self.device = device
        moosez = _moosez()
        metadata = moosez.models.MODEL_METADATA[model_name]
        self.url: str = metadata[moosez.constants.KEY_URL]
        root = Path(models_dir) if models_dir is not None else Path(moosez.system.MOOSE_ROOT_PATH)
        self.models_dir = root if (root.parent.name, root.name) == _MODELS_SUBDIR else root.joinpath(*_MODELS_SUBDIR)
        self.model_folder = self.models_dir / metadata[moosez.constants.KEY_FOLDER_NAME]
        self.version = f"moosez {moosez.version}"
        if installed := _installed_url(self.model_folder):
            self.version += f" model {Path(installed).name.removesuffix('.zip')}"
        self._model = None
        self._label_set: LabelSet | None = None

    def __repr__(self) -> str:
        return f"Moose({self.model_name!r}, models_dir={str(self.models_dir)!r})"

    @property
    def vocabulary(self) -> frozenset[str]:
        """The schema structures this source can label (recorded in its SEGs; QC compares it there)."""
        return load_label_set(f"moose_{self.model_name}").emitted()

    def load(self) -> None:
        """Check the installed model and its labels against the mapping table, without any download."""
        if self._model is not None:
            return
        moosez = _moosez()
        self._check_installed(moosez)
        if self.model_name in moosez.workflows.WORKFLOW_REGISTRY:
            raise ModelUnavailableError(f"{self.name}: moosez {moosez.version} runs it as a multi-step workflow "
                                        f"({moosez.workflows.WORKFLOW_REGISTRY[self.model_name]}), which this adapter does not")
        with _nnunet_environment():
            try:
                model = moosez.models.Model(self.model_name, moosez.system.OutputManager(False, False),
                                            base_directory=str(self.models_dir))
            except ValueError as error:  # moosez: no trainer__plans__configuration folder, unreadable json
                raise ModelUnavailableError(f"{self.name}: incomplete model in {self.model_folder}: {error}; "
                                            f"{self._how_to_get()}") from error
        label_set = load_label_set(f"moose_{self.model_name}")
        _check_labels(model.dataset.get("labels", {}), label_set,
                      f"{self.name} ({Path(model.configuration_directory) / 'dataset.json'})")
        self._model, self._label_set = model, label_set

    def predict(self, ct: CTSeries) -> Prediction:
        self.load()
        moosez = _moosez()
        image = moosez.image_processing.image_reorient(ct.volume.to_simpleitk(), "RAS")
        output = moosez.system.OutputManager(False, False)
        with _nnunet_environment(ext_trainer=moosez.custom_trainers):
            labels = moosez.workflows.inference(image, self._model, torch_device(self.device), output,
                                                moosez.PerformanceObserver())
        volume = hd.Volume.from_simpleitk(labels, frame_of_reference_uid=ct.frame_of_reference_uid)
        if volume.array.dtype.kind not in "iu" or labels.GetSize() != image.GetSize():
            raise ModelOutputError(f"{self.name}: moosez returned a {volume.array.dtype} map of size {labels.GetSize()} "
                                   f"for an image of size {image.GetSize()}; expected integer labels on the input grid")
        return Prediction(volume, self._label_set)

    def _check_installed(self, moosez: SimpleNamespace) -> None:
        """What moosez needs to use the folder as it is; anything else would make it download (and delete)."""
        version_file = self.model_folder / MODEL_VERSION_FILE
        if not self.model_folder.is_dir():
            problem = f"no model folder {self.model_folder}"
        elif not version_file.is_file():
            problem = f"{self.model_folder} has no {MODEL_VERSION_FILE}, so moosez would delete it and download the model"
        elif (installed := _installed_url(self.model_folder)) != self.url:
            problem = (f"{version_file} names {installed!r} but moosez {moosez.version} expects {self.url!r}, so moosez "
                       "would delete the folder and download the model again")
        else:
            return
        raise ModelUnavailableError(f"{self.name}: {problem}; {self._how_to_get()}")

    def _how_to_get(self) -> str:
        target = self.models_dir.parent.parent
        return (f"get it with `moosez -md {self.model_name} -md-out {target}` on a machine with internet access "
                f"(or unzip {self.url} into {self.models_dir} and write {MODEL_VERSION_FILE} "
                f'{{"url": "{self.url}"}} into {self.model_folder})')


def _installed_url(model_folder: Path) -> str | None:
    """The URL moosez recorded when it installed the model, None when there is no readable record."""
    try:
        recorded = json.loads((model_folder / MODEL_VERSION_FILE).read_text()).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) else None


def _check_labels(model_labels: dict, label_set: LabelSet, where: str) -> None:
    """The model's dataset.json labels (name -> value) must be exactly the mapping table's native labels."""
    declared: dict[int, str] = {}
    for label_name, value in model_labels.items():
        if not isinstance(value, int):
            raise LabelSetError(f"{where}: label {label_name!r} has value {value!r}; only integer labels make one label map")
        if value:
            declared[value] = label_name
    mapped = {value: label.name for value, label in label_set.labels.items()}
    problems = [f"value {value} is {declared[value]!r} in the model but {mapped[value]!r} in the mapping"
                for value in sorted(declared.keys() & mapped.keys()) if declared[value] != mapped[value]]
    if only_model := sorted(declared.keys() - mapped.keys()):
        problems.append(f"only the model has {', '.join(f'{v} {declared[v]!r}' for v in only_model)}")
    if only_mapping := sorted(mapped.keys() - declared.keys()):
        problems.append(f"only the mapping has {', '.join(f'{v} {mapped[v]!r}' for v in only_mapping)}")
    if problems:
        raise LabelSetError(f"{where}: labels differ from mapping table {label_set.name!r} "
                            f"(labels/mappings/{label_set.name}.csv): {'; '.join(problems)}; "
                            "correct the mapping table to the model's dataset.json")


def _nnunet_environment(ext_trainer: str | None = None):
    """Restore nnU-Net's environment variables on exit; ``ext_trainer`` is searched for trainers meanwhile."""
    joined = os.pathsep.join(filter(None, (ext_trainer, os.environ.get("nnUNet_extTrainer")))) if ext_trainer else None
    return restored_environment(_NNUNET_ENV, nnUNet_extTrainer=joined)


@cache
def _moosez() -> SimpleNamespace:
    """moosez's modules, imported once with nnU-Net's environment restored afterwards."""
    register_torchvision_ops()  # nnU-Net's trainer lookup imports timm -> torchvision
    try:
        with _nnunet_environment():
            import moosez
            from moosez import constants, image_processing, models, system, workflows
            from moosez.benchmarking.benchmark import PerformanceObserver
    except ImportError as error:
        raise ModelUnavailableError(f"MOOSE: moosez cannot be imported ({error}); install {MOOSEZ_REQUIREMENT}") from error
    return SimpleNamespace(
        version=system.MOOSE_VERSION, constants=constants, image_processing=image_processing, models=models,
        system=system, workflows=workflows, PerformanceObserver=PerformanceObserver,
        custom_trainers=str(Path(moosez.__file__).parent / "nnUNet_custom_trainer"),
    )
