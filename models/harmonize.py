"""Native model output -> schema label map on the source CT grid.

This is where native labels stop: everything downstream speaks schema ids.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np

from dicom_io.ct_series import CTSeries
from dicom_io.label_images import onto_grid
from labels.label_sets import LabelSet
from labels.laterality import patient_left_mask
from models.base import Prediction


def harmonize_on_ct(native: hd.Volume, label_set: LabelSet, ct: CTSeries) -> np.ndarray:
    """Bring a native label volume onto the CT grid and translate it into schema ids.

    Labels without laterality get a side per connected component, by the body midline measured on this CT.
    """
    on_grid = onto_grid(native, ct.geometry, where=f"{label_set.name} label map")
    patient_left = None
    if label_set.split_values:
        patient_left = patient_left_mask(on_grid, label_set.split_values, ct.volume.array, ct.volume.affine)
    return label_set.harmonize(on_grid, patient_left)


def to_schema(prediction: Prediction, ct: CTSeries) -> np.ndarray:
    """A source's prediction as a schema-id map on the CT grid (the one place native labels end)."""
    if prediction.label_set is not None:
        return harmonize_on_ct(prediction.labels, prediction.label_set, ct)
    return onto_grid(prediction.labels, ct.geometry, where="schema label map")
