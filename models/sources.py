"""Segmentation sources named by a one-line spec, as the command line and the Beam job pass them.

A spec is ``kind[:target][?key=value&key=value]``, for example::

    totalsegmentator:total            totalsegmentator:total-fast      totalsegmentator:appendicular_bones
    moose:clin_ct_vertebrae           baseline
    nnunet:/models/Dataset501_Tarsals/nnUNetTrainer__nnUNetPlans__3d_fullres?mapping=/models/tarsals.csv
    auto3dseg:/models/auto3dseg_work_dir?mapping=/models/labels.csv
    precomputed:/results/ts?label_set=totalsegmentator_total&pattern={series_uid}.nii.gz&name=TotalSegmentator total
    idc-seg:totalsegmentator_ct_segmentations            (SEGs an IDC analysis result published for the series)
    store-seg:https://host/dicom-web?algorithm_name=TotalSegmentator&name=TotalSegmentator&version=1.5.6
    bonehub:/data/BoneHub-Dataset                        (a BoneHub-Dataset's own masks, by the CT's BoneHub
                                                          subject id; optional name=, version=)
    plugin:my_package.my_module:MyModel?key=value

Specs are small strings, so they travel through the job graph and each worker
builds (and once loads) its own adapter. Each kind's library is imported only
when a spec of that kind is built, so one adapter's imports never affect another
(moosez rewrites nnU-Net's environment variables on import).
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from dicom_io.cache import IDC_SEGS, default_cache_dir
from dicom_io.ct_series import CTSeries
from labels.errors import BoneHubInputError
from models.base import SegmentationModel


class SourceSpecError(BoneHubInputError):
    """A source spec that cannot be understood; the message names the spec and what is wrong."""


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    target: str
    params: dict[str, str]
    text: str  # as given: the identity of the source within a run

    def take(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if required and key not in self.params:
            raise SourceSpecError(f"source {self.text!r}: parameter {key!r} is required")
        return self.params.get(key, default)


def parse_source_spec(text: str) -> SourceSpec:
    text = text.strip()
    head, _, query = text.partition("?")
    kind, _, target = head.partition(":")
    kind = kind.strip().lower()
    if kind not in _BUILDERS:
        raise SourceSpecError(f"source {text!r}: unknown kind {kind!r}; known: {', '.join(sorted(_BUILDERS))}")
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as error:
        raise SourceSpecError(f"source {text!r}: bad parameters after '?': {error}") from None
    return SourceSpec(kind, target.strip(), params, text)


def build_source(text: str) -> SegmentationModel:
    """The adapter a spec names, constructed but not loaded (``load()`` does the heavy part)."""
    spec = parse_source_spec(text)
    try:
        model = _BUILDERS[spec.kind](spec)
    except SourceSpecError as error:
        if spec.text in str(error):
            raise
        raise SourceSpecError(f"source {spec.text!r}: {error}") from None
    except BoneHubInputError:
        raise
    except ValueError as error:  # an adapter refusing its task or parameters is a bad spec too
        raise SourceSpecError(f"source {spec.text!r}: {error}") from None
    unknown = set(spec.params) - _consumed(spec)
    if unknown:
        raise SourceSpecError(f"source {text!r}: unknown parameter(s) {', '.join(sorted(unknown))}")
    return model


def _consumed(spec: SourceSpec) -> set[str]:
    return set(_PARAMS[spec.kind]) if spec.kind != "plugin" else set(spec.params)


def _totalsegmentator(spec: SourceSpec) -> SegmentationModel:
    from models.totalsegmentator import TotalSegmentator

    task, fast = spec.target, False
    if task.endswith("-fast"):
        task, fast = task.removesuffix("-fast"), True
    return TotalSegmentator(task or "total", fast=fast, weights_dir=spec.take("weights"), device=spec.take("device"))


def _moose(spec: SourceSpec) -> SegmentationModel:
    from models.moose import Moose

    if not spec.target:
        raise SourceSpecError(f"source {spec.text!r}: name the MOOSE model, e.g. moose:clin_ct_vertebrae")
    return Moose(spec.target, models_dir=spec.take("models_dir"), device=spec.take("device"))


def _nnunet(spec: SourceSpec) -> SegmentationModel:
    mapping, folds = spec.take("mapping", required=True), spec.take("folds")
    from models.nnunet import NnUNetModel

    return NnUNetModel(spec.target, mapping, name=spec.take("name"),
                       version=spec.take("version"), folds=tuple(folds.split(",")) if folds else None,
                       device=spec.take("device"))


def _auto3dseg(spec: SourceSpec) -> SegmentationModel:
    mapping = spec.take("mapping", required=True)
    from models.monai_auto3dseg import Auto3DSegModel

    return Auto3DSegModel(spec.target, mapping, name=spec.take("name"),
                          version=spec.take("version"), device=spec.take("device"))


def _precomputed(spec: SourceSpec) -> SegmentationModel:
    """A folder of files named by series UID (``pattern``), or a CSV table ``series_uid,path``."""
    from models.precomputed import PrecomputedSegmentation

    label_set = spec.take("label_set")
    pattern = spec.take("pattern", "{series_uid}.nii.gz" if label_set else "{series_uid}.dcm")
    locate = _TableLocator(Path(spec.target)) if spec.target.lower().endswith(".csv") else spec.target
    return PrecomputedSegmentation(spec.take("name", required=True), spec.take("version", required=True),
                                   label_set, locate, pattern)


class _TableLocator:
    """``CT series -> file`` from a CSV with columns ``series_uid,path`` (paths relative to the CSV); picklable."""

    def __init__(self, table: Path):
        try:
            with table.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as error:
            raise SourceSpecError(f"precomputed table {table}: {error.strerror or error}") from None
        if rows and not {"series_uid", "path"} <= set(rows[0]):
            raise SourceSpecError(f"precomputed table {table}: needs columns series_uid,path; has {', '.join(rows[0])}")
        uids = [row["series_uid"].strip() for row in rows]
        if repeated := sorted({uid for uid in uids if uids.count(uid) > 1}):  # the last row must not win silently
            raise SourceSpecError(f"precomputed table {table}: series listed more than once: {', '.join(repeated)}")
        self.table = table
        self.files = {uid: table.parent / row["path"].strip() for uid, row in zip(uids, rows)}

    def __call__(self, ct: CTSeries) -> Path:
        uid = ct.series_instance_uid
        return self.files.get(uid, self.table.parent / f"<no row for {uid} in {self.table.name}>")


def _idc_seg(spec: SourceSpec) -> SegmentationModel:
    from models.precomputed import PrecomputedSegmentation

    if not spec.target:
        raise SourceSpecError(f"source {spec.text!r}: name the IDC analysis result, e.g. idc-seg:totalsegmentator_ct_segmentations")
    cache = spec.take("cache_dir") or str(default_cache_dir(IDC_SEGS))
    return PrecomputedSegmentation.from_idc(spec.target, cache, endpoint_url=spec.take("endpoint"),
                                            name=spec.take("name"), version=spec.take("version"))


def _store_seg(spec: SourceSpec) -> SegmentationModel:
    from models.precomputed import PrecomputedSegmentation

    include_own = spec.take("include_own", "false").lower()
    if include_own not in ("true", "false"):
        raise SourceSpecError(f"source {spec.text!r}: include_own must be true or false")
    return PrecomputedSegmentation.from_store(
        spec.target, spec.take("name", required=True), spec.take("version", required=True),
        series_description=spec.take("series_description"), algorithm_name=spec.take("algorithm_name"),
        include_own=include_own == "true")


def _bonehub(spec: SourceSpec) -> SegmentationModel:
    """A BoneHub-Dataset folder: each CT's subject masks, statuses as provenance (``models.bonehub_dataset``)."""
    from models.bonehub_dataset import SOURCE_NAME, BoneHubDatasetSource

    if not spec.target:
        raise SourceSpecError(f"source {spec.text!r}: name the BoneHub-Dataset folder, e.g. bonehub:/data/BoneHub-Dataset")
    return BoneHubDatasetSource(spec.target, name=spec.take("name", SOURCE_NAME), version=spec.take("version"))


def _baseline(spec: SourceSpec) -> SegmentationModel:
    from models.baseline import BoneThresholdBaseline

    return BoneThresholdBaseline()


def _plugin(spec: SourceSpec) -> SegmentationModel:
    """Any importable class with the ``SegmentationModel`` interface; parameters become keyword arguments."""
    module_name, _, class_name = spec.target.partition(":")
    if not module_name or not class_name:
        raise SourceSpecError(f"source {spec.text!r}: plugin target must be 'package.module:ClassName'")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise SourceSpecError(f"source {spec.text!r}: cannot import {spec.target}: {error}") from None
    return cls(**spec.params)


_BUILDERS: dict[str, Callable[[SourceSpec], SegmentationModel]] = {
    "totalsegmentator": _totalsegmentator,
    "moose": _moose,
    "nnunet": _nnunet,
    "auto3dseg": _auto3dseg,
    "precomputed": _precomputed,
    "idc-seg": _idc_seg,
    "store-seg": _store_seg,
    "bonehub": _bonehub,
    "baseline": _baseline,
    "plugin": _plugin,
}
_PARAMS: dict[str, tuple[str, ...]] = {
    "totalsegmentator": ("weights", "device"),
    "moose": ("models_dir", "device"),
    "nnunet": ("mapping", "name", "version", "folds", "device"),
    "auto3dseg": ("mapping", "name", "version", "device"),
    "precomputed": ("label_set", "pattern", "name", "version"),
    "idc-seg": ("cache_dir", "endpoint", "name", "version"),
    "store-seg": ("name", "version", "series_description", "algorithm_name", "include_own"),
    "bonehub": ("name", "version"),
    "baseline": (),
}
