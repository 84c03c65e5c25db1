"""Any trained nnU-Net v2 model folder as a segmentation source (e.g. a custom tarsal-bones model).

The folder is nnU-Net's ``<Trainer>__<Plans>__<configuration>`` results folder (``dataset.json``,
``plans.json``, ``fold_*/checkpoint_final.pth``); a mapping CSV (``labels/README.md`` format) says
what each of its labels is in the bone schema. Prediction runs in this process on the CT array: no
temporary files, no worker processes.

Axis order: nnU-Net works on voxel arrays and never looks at the direction matrix. Its SimpleITK
reader hands it ``GetArrayFromImage`` (slice, row, column) with the spacing reversed to match. A
CT series read by SimpleITK, or a NIfTI written from it by SimpleITK, gives exactly the highdicom
Volume's array and spacing, so that is what the model gets by default, and its output lies on the
CT grid. Models trained with a reorienting reader (``NibabelIOWithReorient``,
``SimpleITKIOWithReorient``: RAS) get the CT turned to that orientation first; the labels come
back on the turned grid, which is still patient space. ``orientation`` overrides both.

Version (when not given): ``sha256-`` + 12 hex digits of a SHA-256 over ``dataset.json``,
``plans.json`` and the checkpoint of every fold used, in fold order: the same weights give the
same version on every machine, and any change of weights, labels or plans changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from dicom_io.ct_series import CTSeries
from labels.label_sets import LabelSet, LabelSetError, load_label_set
from models.base import Prediction
from models.device import torch_device
from models.errors import ModelUnavailableError

REORIENTING_READERS = {"NibabelIOWithReorient": "HAR", "SimpleITKIOWithReorient": "HAR"}
"""nnU-Net readers that turn images to RAS; as array axes (slice, row, column) that is head, anterior, right."""


class NnUNetModel:
    """A trained nnU-Net v2 model folder plus a mapping of its labels into the bone schema.

    ``folds``: fold names (``"0"``, ``"all"``); default: the numbered folds that hold
    ``checkpoint``, else ``all`` (nnU-Net's ensemble convention). ``orientation``: the voxel axis
    directions the model was trained in, as highdicom patient-orientation letters (e.g. ``"HAR"``);
    default: from the model's image reader (see the module docstring). Test-time mirroring is off:
    several times faster, and the result does not depend on the device.
    """

    def __init__(
        self,
        model_folder: str | os.PathLike,
        mapping: str | os.PathLike,
        *,
        name: str | None = None,
        version: str | None = None,
        folds: tuple[str, ...] | None = None,
        checkpoint: str = "checkpoint_final.pth",
        device: str | None = None,
        orientation: str | None = None,
    ):
        self.model_folder = Path(model_folder)
        self.mapping = mapping
        self.checkpoint = checkpoint
        self.device = device
        self.orientation = orientation
        self._folds = tuple(str(f) for f in folds) if folds is not None else None
        self._label_set: LabelSet | None = None
        self._predictor = None
        self.name = name or f"nnU-Net {self._plans()['dataset_name']}"
        self.version = version or self._content_version()

    def __repr__(self) -> str:
        return f"NnUNetModel({str(self.model_folder)!r}, {self.name!r}, {self.version!r})"

    @property
    def folds(self) -> tuple[str, ...]:
        if self._folds is None:
            self._folds = self._default_folds()
        for fold in self._folds:
            self._require(self.model_folder / f"fold_{fold}" / self.checkpoint, f"checkpoint of fold {fold}")
        return self._folds

    @property
    def vocabulary(self) -> frozenset[str]:
        """The schema structures this source can label (recorded in its SEGs; QC compares it there)."""
        return load_label_set(self.mapping).emitted()

    def load(self) -> None:
        """Check the folder and the mapping, then build nnU-Net's predictor once."""
        if self._predictor is not None:
            return
        self._label_set = self._checked_label_set()
        self.orientation = self.orientation or REORIENTING_READERS.get(self._plans().get("image_reader_writer", ""))
        self._predictor = self._make_predictor()

    def predict(self, ct: CTSeries) -> Prediction:
        self.load()
        volume = ct.volume
        if self.orientation:
            volume = volume.to_patient_orientation(self.orientation)
        image = np.ascontiguousarray(volume.array, dtype=np.float32)[None]
        segmentation = self._predictor.predict_single_npy_array(image, {"spacing": [float(s) for s in volume.spacing]})
        return Prediction(volume.with_array(np.asarray(segmentation)), self._label_set)

    # --- checks ---

    def _checked_label_set(self) -> LabelSet:
        """The mapping, after checking that it lists every label the model can output, under the same name."""
        dataset = self._json("dataset.json")
        if len(dataset.get("channel_names", {})) != 1:
            raise ModelUnavailableError(
                f"{self.name}: {self.model_folder / 'dataset.json'} declares input channels "
                f"{dataset.get('channel_names')}; only single-channel (CT) models are supported"
            )
        label_set = load_label_set(self.mapping)
        outputs = _output_labels(dataset, f"{self.name} ({self.model_folder})")
        missing = {v: n for v, n in outputs.items() if v not in label_set.labels}
        renamed = {v: (n, label_set.labels[v].name) for v, n in outputs.items()
                   if v in label_set.labels and label_set.labels[v].name != n}
        if missing or renamed:
            problems = [f"not listed: {', '.join(f'{v} {n!r}' for v, n in sorted(missing.items()))}"] if missing else []
            problems += [f"value {v} is {n!r} in the model but {m!r} in the mapping" for v, (n, m) in sorted(renamed.items())]
            raise LabelSetError(
                f"{self.name}: mapping {self.mapping} does not match the labels of {self.model_folder / 'dataset.json'}; "
                + "; ".join(problems)
            )
        return label_set

    def _default_folds(self) -> tuple[str, ...]:
        self._require(self.model_folder, "model folder")
        present = [p.name.removeprefix("fold_") for p in self.model_folder.glob("fold_*") if (p / self.checkpoint).is_file()]
        numbered = sorted((f for f in present if f.isdigit()), key=int)
        if numbered or "all" in present:
            return tuple(numbered) or ("all",)
        raise ModelUnavailableError(
            f"nnU-Net model: no fold_*/{self.checkpoint} in {self.model_folder}; expected a trained model folder "
            "<Trainer>__<Plans>__<configuration> as written by nnUNetv2_train (or unpacked from its export zip)"
        )

    def _require(self, path: Path, what: str) -> None:
        if not path.exists():
            raise ModelUnavailableError(
                f"nnU-Net model: {what} not found at {path}; expected a trained nnU-Net v2 model folder "
                "<Trainer>__<Plans>__<configuration> holding dataset.json, plans.json and "
                f"fold_<f>/{self.checkpoint} (as written by nnUNetv2_train, or unpacked from its export zip)"
            )

    def _json(self, name: str) -> dict:
        path = self.model_folder / name
        self._require(path, name)
        return json.loads(path.read_text())

    def _plans(self) -> dict:
        return self._json("plans.json")

    def _content_version(self) -> str:
        digest = hashlib.sha256()
        files = [self.model_folder / "dataset.json", self.model_folder / "plans.json"]
        files += [self.model_folder / f"fold_{fold}" / self.checkpoint for fold in self.folds]
        for path in files:
            self._require(path, path.name)
            with open(path, "rb") as stream:
                while block := stream.read(1 << 20):
                    digest.update(block)
        return f"sha256-{digest.hexdigest()[:12]}"

    # --- nnU-Net ---

    def _make_predictor(self):
        from models.torch_compat import register_torchvision_ops

        register_torchvision_ops()  # trainer lookup imports timm -> torchvision
        try:
            import torch
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        except ImportError as error:
            raise ModelUnavailableError(f"{self.name}: nnU-Net v2 is not installed ({error}); pip install nnunetv2") from error
        device = torch.device(torch_device(self.device))
        predictor = nnUNetPredictor(
            tile_step_size=0.5,
            use_gaussian=True,
            use_mirroring=False,
            perform_everything_on_device=device.type == "cuda",
            device=device,
            allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(str(self.model_folder), self.folds, checkpoint_name=self.checkpoint)
        return predictor


def _output_labels(dataset: dict, where: str) -> dict[int, str]:
    """Values the model writes into its label map (background and nnU-Net's ``ignore`` label excluded) -> names."""
    labels = {name: value for name, value in dataset["labels"].items() if name != "ignore"}
    if any(isinstance(value, (list, tuple)) for value in labels.values()):
        raise ModelUnavailableError(f"{where}: a region-based nnU-Net model (overlapping label regions) is not supported")
    return {int(value): name for name, value in labels.items() if int(value) != 0}
