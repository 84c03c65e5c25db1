"""A stand-in MONAI Auto3DSeg work dir, made with MONAI's own generation code.

Real Auto3DSeg algorithm templates are downloaded from GitHub (not possible here), so this module
writes a tiny template of the same shape (``scripts/algo.py`` with a ``BundleAlgo`` subclass,
``scripts/infer.py`` with an ``InferClass``, ``configs/hyper_parameters.yaml``), lets MONAI's
``BundleGen`` copy it into a work dir and export one algorithm folder per fold (``algo_object.json``
included), then "trains" some folds: it saves hand-set weights and the ``progress.yaml`` from which
``BundleAlgo.get_score`` reads the validation score. Folds left untrained are what an interrupted
AutoRunner leaves behind.

Two templates share the scripts: in ``brightnet`` a 1x1x1 convolution on HU gives each voxel the
class of its own HU (below ``THRESHOLDS_HU[0]`` background, up to ``THRESHOLDS_HU[1]`` label 1,
above it label 2); ``blanknet`` answers background everywhere, so whether it was ensembled shows.
The inference script reorients to RAS and inverts that, as the real templates do, so a flip or
transposition anywhere between the CT and the adapter's output moves the labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

BRIGHT, BLANK = "brightnet", "blanknet"  # template names; blanknet says "background" everywhere
LABELS = {1: "medium", 2: "bright"}  # native value -> name
THRESHOLDS_HU = (200.0, 500.0)
_LOGIT_SCALE_HU = 25.0

_ALGO_PY = '''\
"""Stand-in Auto3DSeg algorithm: filling the template records the fold folder as bundle root."""

import os

from monai.apps.auto3dseg import BundleAlgo
from monai.bundle import ConfigParser


class ALGO_CLASS(BundleAlgo):
    def fill_template_config(self, data_stats_filename, output_path, **kwargs):
        config_file = os.path.join(output_path, "configs", "hyper_parameters.yaml")
        config = ConfigParser.load_config_file(config_file)
        config["bundle_root"] = output_path
        config["fold"] = kwargs.get("fold", 0)
        ConfigParser.export_config_file(config, config_file, fmt="yaml", default_flow_style=None)
        return {"hyper_parameters.yaml": {"bundle_root": output_path, "fold": config["fold"]}}
'''

_INFER_PY = '''\
"""Stand-in InferClass with the interface of the Auto3DSeg templates' scripts/infer.py."""

import torch
from monai.bundle import ConfigParser
from monai.data import decollate_batch, list_data_collate
from monai.transforms import Compose, EnsureTyped, Invertd, LoadImaged, Orientationd
from monai.utils import convert_to_dst_type


class InferClass:
    def __init__(self, config_file=None, **override):
        parser = ConfigParser()
        parser.read_config(config_file)
        parser.update(pairs=override)
        use_cuda = parser.get_parsed_content("cuda") and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.model = parser.get_parsed_content("network").to(self.device).eval()
        weights = torch.load(parser.get_parsed_content("infer#ckpt_name"), map_location=self.device)
        self.model.load_state_dict(weights)
        self.transforms = Compose([
            LoadImaged(keys="image", ensure_channel_first=True, image_only=True),
            EnsureTyped(keys="image", dtype=torch.float),
            Orientationd(keys="image", axcodes="RAS"),
        ])
        self.invert = Invertd(keys="pred", transform=self.transforms, orig_keys="image", nearest_interp=False)

    @torch.no_grad()
    def infer(self, image_file):
        """Class probabilities (C, X, Y, Z) on the input image's grid, as the ensembler expects."""
        batch = list_data_collate([self.transforms(image_file)])
        probabilities = torch.softmax(self.model(batch["image"].to(self.device)), dim=1).cpu()
        batch["pred"] = convert_to_dst_type(probabilities, batch["image"], dtype=probabilities.dtype)[0]
        return [self.invert(item)["pred"] for item in decollate_batch(batch)][0]
'''

_HYPER_PARAMETERS = f'''\
bundle_root: null
ckpt_path: $@bundle_root + '/model'
fold: 0
cuda: true
sigmoid: false
output_classes: {len(LABELS) + 1}
network:
  _target_: torch.nn.Conv3d
  in_channels: 1
  out_channels: '@output_classes'
  kernel_size: 1
infer:
  ckpt_name: $@ckpt_path + '/model.pt'
'''


def write_templates(folder: Path) -> Path:
    """Write both stand-in algorithm templates under ``folder``; returns ``folder``."""
    for name in (BRIGHT, BLANK):
        root = folder / name
        (root / "scripts").mkdir(parents=True)
        (root / "configs").mkdir()
        (root / "scripts" / "__init__.py").write_text("")
        # BundleGen expects the class <Name>Algo in <name>/scripts/algo.py
        (root / "scripts" / "algo.py").write_text(_ALGO_PY.replace("ALGO_CLASS", f"{name.capitalize()}Algo"))
        (root / "scripts" / "infer.py").write_text(_INFER_PY)
        (root / "configs" / "hyper_parameters.yaml").write_text(_HYPER_PARAMETERS)
    return folder


def build_work_dir(root: Path, scores: Mapping[str, Mapping[int, float]], num_fold: int = 3) -> Path:
    """An Auto3DSeg work dir under ``root``: both templates with ``num_fold`` folds each, of which
    ``scores`` (template -> fold -> best Dice) are trained.

    Every trained brightnet fold has the same decision thresholds at a different logit scale, so
    each one alone and their mean give the same labels.
    """
    import torch
    from monai.apps.auto3dseg import BundleGen
    from monai.bundle import ConfigParser

    work_dir = root / "work_dir"
    work_dir.mkdir(parents=True)
    generator = BundleGen(algo_path=str(work_dir), templates_path_or_url=str(write_templates(root / "templates")))
    generator.generate(str(work_dir), num_fold=num_fold)
    for name, folds in scores.items():
        for fold, score in folds.items():
            checkpoint = work_dir / f"{name}_{fold}" / "model"
            checkpoint.mkdir()
            weights = _bright_weights(scale=1.0 + fold / 2) if name == BRIGHT else _blank_weights()
            torch.save(weights, checkpoint / "model.pt")
            progress = [{"best_avg_dice_score": score, "epoch": 1}]
            ConfigParser.export_config_file(progress, str(checkpoint / "progress.yaml"), fmt="yaml")
    return work_dir


def _bright_weights(scale: float) -> dict:
    """Logits 0, (HU - t0)/s, 2 (HU - (t0 + t1)/2)/s: label 1 wins above t0, label 2 above t1."""
    import torch

    low, high = THRESHOLDS_HU
    slope = torch.tensor([0.0, 1.0, 2.0]) / _LOGIT_SCALE_HU
    offset = -torch.tensor([0.0, low, low + high]) / _LOGIT_SCALE_HU
    return {"weight": (scale * slope).reshape(3, 1, 1, 1, 1), "bias": scale * offset}


def _blank_weights() -> dict:
    """Background wins everywhere, whatever the HU."""
    import torch

    return {"weight": torch.zeros(3, 1, 1, 1, 1), "bias": torch.tensor([10.0, 0.0, 0.0])}


def write_mapping(path: Path, schema_names: Mapping[int, str]) -> Path:
    """A mapping CSV (labels/README.md format): native value -> schema name (empty: not a bone)."""
    rows = [f"{value},{LABELS.get(value, f'label_{value}')},{schema},\n" for value, schema in schema_names.items()]
    path.write_text("native_value,native_name,schema_name,split_by_side\n" + "".join(rows))
    return path
