"""One source on one CT under one augmentation: augment → predict → harmonize → invert.

The result is always a schema-id map on the source CT grid, whatever the source,
its native labels, its output grid or the augmentation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from dicom_io.ct_series import CTSeries
from models import augment
from models.base import SegmentationModel
from models.harmonize import to_schema


def sees_pixels(model: SegmentationModel) -> bool:
    """False for sources that ignore the CT pixels (precomputed results): augmenting them means nothing."""
    return bool(getattr(model, "sees_pixels", True))


def augmented_ct(ct: CTSeries, augmentation: augment.Augmentation) -> CTSeries:
    """The CT as a model sees it under ``augmentation`` (``ct`` itself for none); share it across sources."""
    if isinstance(augmentation, augment.Identity):
        return ct
    return dataclasses.replace(ct, volume=augment.apply(augmentation, ct.volume, ct.series_instance_uid))


@dataclass(frozen=True)
class SchemaLabels:
    """One source's result on the CT grid: schema ids, and the provenance it vouched per structure."""

    labels: np.ndarray
    statuses: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # see ``Prediction.statuses``


def segment_ct(ct: CTSeries, model: SegmentationModel, augmentation: augment.Augmentation,
               seen: CTSeries | None = None) -> SchemaLabels:
    """Schema-id map on ``ct``'s grid from ``model`` run on ``ct`` as seen under ``augmentation``, with its provenance.

    ``seen``: ``augmented_ct(ct, augmentation)`` when the caller already made it (one per
    series and augmentation, whatever the number of sources). Harmonizing happens on
    the augmented CT (the left/right split of unsided labels measures the body midline
    where the labels are), then spatial augmentations are inverted with nearest neighbour.
    """
    if not isinstance(augmentation, augment.Identity) and not sees_pixels(model):
        raise ValueError(f"{model.name} does not look at the CT, so augmentation {augmentation} cannot apply to it")
    seen = seen if seen is not None else augmented_ct(ct, augmentation)
    prediction = model.predict(seen)
    return SchemaLabels(augment.invert(augmentation, to_schema(prediction, seen), ct.volume), prediction.statuses)
