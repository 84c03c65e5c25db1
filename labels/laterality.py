"""Which side a label without laterality is on (TotalSegmentator ``appendicular_bones``).

Method: the body is every voxel above -500 HU; the midline is the median
patient-x (LPS: +x points to the patient's left) of the body; each connected
component of a label gets one side, by its centroid. Whole components, not
voxels, so a bone lying across the midline is never cut in two. This assumes
the field of view holds both sides of the body (whole-body and trunk CT); on a
single-limb scan the midline runs through the limb, and the side must come
from elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

BODY_THRESHOLD_HU = -500.0
_BODY_STEP = (2, 4, 4)  # subsampling for the midline: the median needs few voxels


def world_x(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """Patient x (mm, LPS) of every voxel centre of a volume with this 4x4 index->LPS affine."""
    i, j, k = (np.arange(n, dtype=np.float32) for n in shape)
    row = affine[0].astype(np.float32)
    return row[0] * i[:, None, None] + row[1] * j[None, :, None] + row[2] * k[None, None, :] + row[3]


def body_midline_x(ct_hu: np.ndarray, affine: np.ndarray) -> float:
    """Median patient-x of body voxels; the centre of the volume when no body is found."""
    step = np.array(_BODY_STEP)
    body = np.argwhere(ct_hu[:: step[0], :: step[1], :: step[2]] > BODY_THRESHOLD_HU) * step
    if len(body) == 0:
        body = (np.array(ct_hu.shape) - 1)[None, :] / 2
    return float(np.median(body @ affine[0, :3] + affine[0, 3]))


def patient_left_mask(native: np.ndarray, split_values: Iterable[int], ct_hu: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """True on every connected component of the ``split_values`` labels whose centroid is left of the midline."""
    midline = body_midline_x(ct_hu, affine)
    left = np.zeros(native.shape, bool)
    for value in split_values:
        components, count = ndimage.label(native == value)
        if count == 0:
            continue
        centroids = np.array(ndimage.center_of_mass(np.ones_like(components), components, range(1, count + 1)))
        on_left = np.flatnonzero(centroids @ affine[0, :3] + affine[0, 3] > midline) + 1
        left |= np.isin(components, on_left)
    return left
