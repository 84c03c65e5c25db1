"""Rule checks on one mask at a time: errors that agreement between sources cannot see.

From IDC's checks over ~9.5 M TotalSegmentator segments (arXiv 2406.14486) and the
known bone failure modes (docs/qc_method.md): cut off by the field of view, extra
connected components, wrong side of the body midline, implausibly small. The
rules that need the whole spine (levels, order, rib pairing) are in ``qc.levels``.

Geometry: ``affine`` maps array indices (slice, row, col) to patient LPS mm, so
+x is the patient's left and +z is towards the head.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from labels.schema import BoneSchema
from qc.levels import is_vertebra

_ALL_NEIGHBOURS = np.ones((3, 3, 3), bool)


def touches_volume_border(box: tuple[slice, ...], mask: np.ndarray, volume_shape: tuple[int, ...]) -> bool:
    """Whether the mask (on the crop ``box`` of the volume) reaches a face of the imaged volume."""
    for axis, (part, size) in enumerate(zip(box, volume_shape)):
        if part.start == 0 and np.take(mask, 0, axis=axis).any():
            return True
        if part.stop == size and np.take(mask, -1, axis=axis).any():
            return True
    return False


def extra_components(mask: np.ndarray, voxel_ml: float, min_ml: float) -> int:
    """Connected components (26-connected) besides the largest that are at least ``min_ml`` large."""
    labels, count = ndimage.label(mask, structure=_ALL_NEIGHBOURS)
    if count < 2:
        return 0
    sizes = np.bincount(labels.ravel())[1:] * voxel_ml
    return int(np.count_nonzero(sizes >= min_ml)) - int(sizes.max() >= min_ml)


def wrong_side(centroid_lps: np.ndarray, laterality: str | None, midline_x: float | None) -> bool:
    """A left structure whose centre lies right of the body midline, or the reverse."""
    if laterality is None or midline_x is None:
        return False
    offset = float(centroid_lps[0]) - midline_x  # > 0: patient's left
    return offset < 0 if laterality == "left" else offset > 0


def midline_x(centroids_lps: Mapping[str, np.ndarray], schema: BoneSchema) -> float | None:
    """Body midline (LPS x) from the structures that lie on it: vertebrae, sacrum, coccyx, sternum."""
    xs = [float(c[0]) for name, c in centroids_lps.items()
          if schema[name].laterality is None and (is_vertebra(name) or name in ("sacrum_below_s1", "coccyx", "sternum"))]
    return float(np.median(xs)) if xs else None
