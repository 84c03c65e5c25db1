"""MONAI Auto3DSeg work directories as a segmentation source.

An Auto3DSeg run (``AutoRunner``) leaves a work dir with one folder per algorithm and fold
(``segresnet_0/``, ``dints_1/``, ...): the algorithm's scripts and configs, its checkpoint, and an
``algo_object.json`` (``algo_object.pkl`` before MONAI 1.6) from which MONAI's own
``import_bundle_algo_history`` rebuilds the ``BundleAlgo``. This adapter loads the trained
algorithms with that code, builds each one's ``InferClass`` once, and per CT runs them in-process on
a temporary NIfTI (the templates read images through MONAI's ``LoadImage``). Their class
probabilities are combined as MONAI's ``AlgoEnsemble`` does in its default "mean" mode: argmax of
the mean. By default the algorithms are those AutoRunner's default ensemble picks
(``AlgoEnsembleBestByFold``: the best validation score per fold).

Loading a work dir imports and runs its Python scripts: use work dirs you trust.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from dicom_io.ct_series import CTSeries
from labels.label_sets import LabelSet, LabelSetError, UnmappedLabelError, load_label_set
from models.base import Prediction
from models.device import torch_device
from models.errors import ModelOutputError, ModelUnavailableError

MONAI_REQUIREMENT = "monai==1.6.1"
# Where the Auto3DSeg templates declare their outputs in configs/hyper_parameters.yaml:
# segresnet/segresnet2d/swinunetr at the top level, dints under "training".
_OUTPUT_CLASSES_KEYS = ("output_classes", "training#output_classes")
_SIGMOID_KEYS = ("sigmoid",)  # true: multi-label outputs (segresnet)
_SOFTMAX_KEYS = ("softmax", "training#softmax")  # false: multi-label outputs (swinunetr, dints)
# segresnet's switch between GPU and CPU; the other templates take cuda:0 whenever a GPU is present.
_CUDA_OVERRIDE = "cuda"
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Keys of the entries import_bundle_algo_history returns (monai.utils.enums.AlgoKeys values).
_ID, _ALGO, _SCORE, _TRAINED = "identifier", "algo_instance", "best_metric", "is_trained"


class Auto3DSegModel:
    """A trained Auto3DSeg work dir plus a mapping CSV of its label ids into the bone schema.

    ``algorithms``: algorithm folder names (``segresnet_0``) or algorithm names (``segresnet``, every
    trained fold) to ensemble instead of the best per fold. ``version`` defaults to the chosen
    algorithms with their validation scores, read from the work dir when first asked for.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike,
        mapping: str | os.PathLike,
        *,
        name: str | None = None,
        version: str | None = None,
        algorithms: Sequence[str] | None = None,
        device: str | None = None,
    ):
        self.work_dir = Path(work_dir)
        self.mapping = mapping
        self.name = name or f"MONAI Auto3DSeg {self.work_dir.name}"
        self.algorithms = None if algorithms is None else tuple(algorithms)
        if self.algorithms is not None and not self.algorithms:
            raise ValueError(f"{self.name}: algorithms must name at least one algorithm, or be None for the best per fold")
        self.device = device
        self._version = version
        self._chosen: list[dict[Any, Any]] | None = None
        self._inferers: list[Any] | None = None
        self._label_set: LabelSet | None = None

    def __repr__(self) -> str:
        return f"Auto3DSegModel({str(self.work_dir)!r}, {str(self.mapping)!r}, algorithms={self.algorithms!r})"

    @property
    def version(self) -> str:
        """As given, else the chosen algorithms and their scores (reading it loads the work dir's algorithm list)."""
        if self._version is None:
            self._version = "+".join(f"{entry[_ID]}:{entry[_SCORE]:.4f}" for entry in self._choose())
        return self._version

    @property
    def algorithm_ids(self) -> list[str]:
        """The algorithm folders this source ensembles."""
        return [entry[_ID] for entry in self._choose()]

    @property
    def vocabulary(self) -> frozenset[str]:
        """The schema structures this source can label (recorded in its SEGs; QC compares it there)."""
        return load_label_set(self.mapping).emitted()

    def load(self) -> None:
        """Check the mapping against the algorithms' declared outputs and build their inferers once."""
        if self._inferers is not None:
            return
        label_set = load_label_set(self.mapping)
        chosen = self._choose()
        for entry in chosen:
            self._check_declared_outputs(entry, label_set)
        overrides = {_CUDA_OVERRIDE: torch_device(self.device).startswith("cuda")}
        inferers = []
        for entry in chosen:
            try:
                inferers.append(entry[_ALGO].get_inferer(**overrides))
            except (FileNotFoundError, ValueError) as error:
                raise ModelUnavailableError(
                    f"{self.name}: cannot load algorithm {entry[_ID]} from {self.work_dir}: {error}"
                ) from error
        self._label_set, self._inferers = label_set, inferers

    def predict(self, ct: CTSeries) -> Prediction:
        self.load()
        import torch

        device = torch_device(self.device)
        total, reference = None, None  # reference: the first algorithm's id and output grid
        with tempfile.TemporaryDirectory(prefix="bonehub-auto3dseg-") as folder:
            image = Path(folder) / "image.nii"
            sitk.WriteImage(ct.volume.to_simpleitk(), str(image))
            for algo_id, inferer in zip(self.algorithm_ids, self._inferers):
                probabilities = inferer.infer({"image": str(image)})
                grid = self._output_grid(algo_id, probabilities)
                if reference is None:
                    reference = (algo_id, grid)
                    total = torch.zeros(grid[0], dtype=torch.float32, device=device)
                elif grid[0] != reference[1][0] or not np.allclose(grid[1], reference[1][1], atol=1e-3):
                    raise ModelOutputError(
                        f"{self.name}: {algo_id} returned probabilities of shape {grid[0]} on another grid than "
                        f"{reference[0]} ({reference[1][0]}); ensembled algorithms must answer on the input image grid"
                    )
                total += torch.as_tensor(probabilities).as_subclass(torch.Tensor).to(device).float()
        _check_mapping(self._label_set, grid[0][0], f"{self.name} ({reference[0]})")
        # argmax of the sum = argmax of the mean (MONAI's MeanEnsemble + prob2class), without stacking all outputs
        labels = total.argmax(dim=0).to(torch.int32).cpu().numpy()
        volume = hd.Volume(labels, reference[1][1], "PATIENT", frame_of_reference_uid=ct.frame_of_reference_uid)
        return Prediction(volume, self._label_set)

    def _choose(self) -> list[dict[Any, Any]]:
        """The trained algorithms to ensemble (history entries of ``import_bundle_algo_history``)."""
        if self._chosen is None:
            trained = self._trained()
            self._chosen = _best_by_fold(trained, self.name) if self.algorithms is None else self._named(trained)
        return self._chosen

    def _trained(self) -> list[dict[Any, Any]]:
        utils = _monai_auto3dseg_utils(self.name)
        if not self.work_dir.is_dir():
            raise ModelUnavailableError(
                f"{self.name}: Auto3DSeg work dir {self.work_dir} does not exist; point work_dir at the folder "
                "MONAI's AutoRunner trained in (one folder per algorithm such as segresnet_0/ with algo_object.json)"
            )
        self._refuse_pickles()
        try:
            history = utils.import_bundle_algo_history(str(self.work_dir), only_trained=False)
        except (ValueError, ModuleNotFoundError) as error:
            raise ModelUnavailableError(
                f"{self.name}: MONAI cannot rebuild the algorithms in {self.work_dir} ({error}); the algorithm "
                "templates must be where the work dir says (its algorithm_templates/ folder)"
            ) from error
        trained = [entry for entry in history if entry[_TRAINED]]
        if not trained:
            found = [entry[_ID] for entry in history]
            raise ModelUnavailableError(
                f"{self.name}: no trained algorithm in {self.work_dir} (algorithm folders: {found or 'none'}); an algorithm "
                "counts as trained when progress.yaml with best_avg_dice_score is in its checkpoint folder "
                "(ckpt_path in configs/hyper_parameters.yaml): finish AutoRunner's training step"
            )
        return trained

    def _refuse_pickles(self) -> None:
        """Work dirs of MONAI < 1.6 store pickles, which MONAI 1.6 loads only when explicitly allowed."""
        from monai.utils.misc import MONAIEnvVars

        legacy = sorted(
            folder.name
            for folder in self.work_dir.iterdir()
            if (folder / "algo_object.pkl").is_file() and not (folder / "algo_object.json").is_file()
        )
        if legacy and not MONAIEnvVars.allow_pickle():
            raise ModelUnavailableError(
                f"{self.name}: algorithms {legacy} in {self.work_dir} are stored as algo_object.pkl (MONAI < 1.6); "
                "loading a pickle runs arbitrary code, so MONAI needs MONAI_ALLOW_PICKLE=1 for work dirs you trust "
                "(or re-save them once with monai.auto3dseg.algo_to_json)"
            )

    def _named(self, trained: list[dict[Any, Any]]) -> list[dict[Any, Any]]:
        from monai.apps.auto3dseg.utils import get_name_from_algo_id

        def names(entry: dict[Any, Any]) -> set[str]:
            return {entry[_ID], get_name_from_algo_id(entry[_ID])}

        if unknown := [wanted for wanted in self.algorithms if not any(wanted in names(entry) for entry in trained)]:
            raise ModelUnavailableError(
                f"{self.name}: no trained algorithm {unknown} in {self.work_dir}; "
                f"trained: {[entry[_ID] for entry in trained]}"
            )
        return [entry for entry in trained if names(entry) & set(self.algorithms)]

    def _check_declared_outputs(self, entry: dict[Any, Any], label_set: LabelSet) -> None:
        from monai.bundle import ConfigParser

        where = f"{self.name} ({entry[_ID]})"
        config_file = Path(entry[_ALGO].get_output_path()) / "configs" / "hyper_parameters.yaml"
        config = ConfigParser(ConfigParser.load_config_file(str(config_file)), globals=False)
        declared = {key: config.get(key) for key in _OUTPUT_CLASSES_KEYS + _SIGMOID_KEYS + _SOFTMAX_KEYS if key in config}
        if any(declared.get(key) is True for key in _SIGMOID_KEYS) or any(declared.get(key) is False for key in _SOFTMAX_KEYS):
            raise ModelOutputError(
                f"{where}: trained with sigmoid outputs (overlapping labels, {config_file}); only softmax "
                "models, whose classes exclude each other, make one label map"
            )
        classes = next((declared[key] for key in _OUTPUT_CLASSES_KEYS if isinstance(declared.get(key), int)), None)
        if classes is not None:
            _check_mapping(label_set, classes, where)

    def _output_grid(self, algo_id: str, probabilities: Any) -> tuple[tuple[int, ...], np.ndarray]:
        """Shape (C, X, Y, Z) and LPS affine of one algorithm's class probabilities."""
        if getattr(probabilities, "ndim", None) != 4 or not hasattr(probabilities, "affine"):
            raise ModelOutputError(
                f"{self.name}: {algo_id}'s InferClass.infer returned {type(probabilities).__name__} of shape "
                f"{tuple(getattr(probabilities, 'shape', ()))}; expected a MONAI MetaTensor of class probabilities (C, X, Y, Z)"
            )
        return tuple(probabilities.shape), _lps_affine(probabilities)


def _best_by_fold(trained: list[dict[Any, Any]], name: str) -> list[dict[Any, Any]]:
    """AutoRunner's default choice: per fold the algorithm with the best validation score."""
    from monai.apps.auto3dseg import AlgoEnsembleBestByFold

    try:
        folds = [int(entry[_ID].split("_")[1]) for entry in trained]
    except (IndexError, ValueError):
        raise ModelUnavailableError(
            f"{name}: algorithm folders {[entry[_ID] for entry in trained]} are not named <algorithm>_<fold>, "
            "so the best per fold is undefined; name the algorithms to ensemble (algorithms=...)"
        ) from None
    ensemble = AlgoEnsembleBestByFold(n_fold=max(folds) + 1)
    ensemble.set_algos(trained)
    ensemble.collect_algos()
    best = {entry[_ID] for entry in ensemble.get_algo_ensemble() if entry is not None}
    return [entry for entry in trained if entry[_ID] in best]


def _check_mapping(label_set: LabelSet, classes: int, where: str) -> None:
    """The mapping must list exactly the model's foreground labels 1..classes-1 (0 is background)."""
    outputs = set(range(1, classes))
    if missing := sorted(outputs - set(label_set.labels)):
        raise UnmappedLabelError(
            f"{where} outputs {classes} classes (background and labels 1..{classes - 1}), but mapping "
            f"{label_set.name!r} has no row for label value(s) {missing}; add them (schema_name empty if not a bone)"
        )
    if extra := sorted(set(label_set.labels) - outputs):
        raise LabelSetError(
            f"{where} outputs {classes} classes (background and labels 1..{classes - 1}), but mapping "
            f"{label_set.name!r} lists label value(s) {extra} it cannot produce: is it the mapping of another model?"
        )


def _lps_affine(tensor: Any) -> np.ndarray:
    """The voxel-to-patient (LPS) affine of a MONAI MetaTensor; MONAI's readers default to RAS."""
    affine = np.asarray(tensor.affine, dtype=np.float64)
    return affine if str(tensor.meta.get("space", "RAS")) == "LPS" else _RAS_TO_LPS @ affine


def _monai_auto3dseg_utils(name: str) -> Any:
    try:
        from monai.apps.auto3dseg import utils
    except ImportError as error:
        raise ModelUnavailableError(
            f"{name}: MONAI is not installed ({error}); install it with pip install '{MONAI_REQUIREMENT}'"
        ) from error
    return utils
