"""One source on one CT under one augmentation: augment → predict → harmonize → invert.

The result is always a schema-id map on the source CT grid, whatever the source,
its native labels, its output grid or the augmentation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dicom_io.ct_series import CTSeries
from models import augment
from models.base import SegmentationModel
from models.harmonize import to_schema


def sees_pixels(model: SegmentationModel) -> bool:
    """False for sources that ignore the CT pixels (precomputed results): augmenting them means nothing."""
    return bool(getattr(model, "sees_pixels", True))


def segment_ct(ct: CTSeries, model: SegmentationModel, augmentation: augment.Augmentation) -> np.ndarray:
    """Schema-id map on ``ct``'s grid from ``model`` run on ``ct`` as seen under ``augmentation``.

    Harmonizing happens on the augmented CT (the left/right split of unsided
    labels measures the body midline where the labels are), then spatial
    augmentations are inverted with nearest neighbour.
    """
    if not isinstance(augmentation, augment.Identity) and not sees_pixels(model):
        raise ValueError(f"{model.name} does not look at the CT, so augmentation {augmentation} cannot apply to it")
    seen = ct
    if not isinstance(augmentation, augment.Identity):
        seen = dataclasses.replace(ct, volume=augment.apply(augmentation, ct.volume, ct.series_instance_uid))
    schema_map = to_schema(model.predict(seen), seen)
    return augment.invert(augmentation, schema_map, ct.volume)
