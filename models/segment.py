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
from models.base import Prediction, SegmentationModel
from models.harmonize import to_schema


def sees_pixels(model: SegmentationModel) -> bool:
    """False for sources that ignore the CT pixels (precomputed results): augmenting them means nothing."""
    return bool(getattr(model, "sees_pixels", True))


@dataclass(frozen=True)
class AugmentedCT:
    """A CT as the sources see it under one augmentation, and the way back onto the source grid.

    Make one per series and augmentation (``augmented_ct``) and share it across the sources:
    the augmented CT is made once, whatever the number of sources.
    """

    augmentation: augment.Augmentation
    ct: CTSeries  # as the sources see it (the source CT itself for none); augmentations keep the grid

    def inverse(self, labels: np.ndarray) -> np.ndarray:
        """A label map on this augmented CT brought back onto the source CT's grid (``augment.invert``)."""
        return augment.invert(self.augmentation, labels, self.ct.volume)


def augmented_ct(ct: CTSeries, augmentation: augment.Augmentation) -> AugmentedCT:
    """The CT as a model sees it under ``augmentation``; share it across sources."""
    seen = ct
    if not isinstance(augmentation, augment.Identity):
        seen = dataclasses.replace(ct, volume=augment.apply(augmentation, ct.volume, ct.series_instance_uid))
    return AugmentedCT(augmentation, seen)


@dataclass(frozen=True)
class SchemaLabels:
    """One source's result on the CT grid: schema ids, and the provenance it vouched per structure."""

    labels: np.ndarray
    statuses: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # see ``Prediction.statuses``


def predict(model: SegmentationModel, seen: AugmentedCT) -> Prediction:
    """``model``'s prediction on the CT as seen under ``seen.augmentation``; raises what the source raises."""
    if not isinstance(seen.augmentation, augment.Identity) and not sees_pixels(model):
        raise ValueError(f"{model.name} does not look at the CT, so augmentation {seen.augmentation} cannot apply to it")
    return model.predict(seen.ct)


def schema_labels(prediction: Prediction, seen: AugmentedCT) -> SchemaLabels:
    """A prediction on the augmented CT as schema ids on the source grid, with its provenance.

    Harmonizing happens on the augmented CT (the left/right split of unsided labels
    measures the body midline where the labels are), then spatial augmentations are
    inverted with nearest neighbour. Thread-safe: a series' outputs may finish side by side.
    """
    return SchemaLabels(seen.inverse(to_schema(prediction, seen.ct)), prediction.statuses)


def segment_ct(ct: CTSeries, model: SegmentationModel, augmentation: augment.Augmentation,
               seen: AugmentedCT | None = None) -> SchemaLabels:
    """Schema-id map on ``ct``'s grid from ``model`` run on ``ct`` as seen under ``augmentation``, with its provenance.

    ``seen``: ``augmented_ct(ct, augmentation)`` when the caller already made it (one per
    series and augmentation, whatever the number of sources).
    """
    seen = seen if seen is not None else augmented_ct(ct, augmentation)
    if seen.augmentation != augmentation:
        raise ValueError(f"the augmented CT shared for {seen.augmentation} was passed for {augmentation}")
    return schema_labels(predict(model, seen), seen)
