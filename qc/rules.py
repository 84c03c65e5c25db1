"""Rule checks: errors that agreement between sources cannot see, checked on one mask at a time.

From IDC's checks over ~9.5 M TotalSegmentator segments (arXiv 2406.14486) and the
known bone failure modes (docs/qc_method.md): cut off by the field of view, extra
connected components, wrong side, implausibly small, and vertebra levels out of
order or inconsistent with the ribs (whole runs labelled one level off agree
with themselves, so only anatomy can catch them).

Geometry: ``affine`` maps array indices (slice, row, col) to patient LPS mm, so
+x is the patient's left and +z is towards the head.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from labels.schema import BoneSchema

_ALL_NEIGHBOURS = np.ones((3, 3, 3), bool)
_VERTEBRA = re.compile(r"^vertebra_(C|T|L|S)(\d+)$")
_RIB = re.compile(r"^rib_(left|right)_(\d+)$")
# Ribs 1, 10, 11 and 12 articulate with their own vertebra only; the heads of ribs 2-9
# sit across the disc between vertebra k-1 and vertebra k (standard anatomy).
_SINGLE_FACET_RIBS = {1, 10, 11, 12}


def is_vertebra(name: str) -> bool:
    return bool(_VERTEBRA.match(name))


def is_rib(name: str) -> bool:
    return bool(_RIB.match(name))


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
    """Body midline (LPS x) from the structures that lie on it: vertebrae, sacrum, sternum."""
    xs = [float(c[0]) for name, c in centroids_lps.items()
          if schema[name].laterality is None and (_VERTEBRA.match(name) or name in ("sacrum_below_s1", "sternum"))]
    return float(np.median(xs)) if xs else None


def vertebral_order(centroids_lps: Mapping[str, np.ndarray], schema: BoneSchema) -> set[str]:
    """Vertebrae whose centre is not below the one above them (schema order C1 … L6, S1)."""
    present = sorted((schema[n].id, n) for n in centroids_lps if _VERTEBRA.match(n))
    flagged = set()
    for (_, upper), (_, lower) in zip(present, present[1:]):
        if centroids_lps[upper][2] <= centroids_lps[lower][2]:
            flagged |= {upper, lower}
    return flagged


def rib_vertebra_levels(rib_surfaces: Mapping[str, np.ndarray], vertebra_surfaces: Mapping[str, np.ndarray],
                        contact_mm: float) -> set[str]:
    """Ribs whose medial end meets a vertebra of the wrong level, and those vertebrae.

    Surfaces are point arrays in mm (one frame for all). The medial end is the 5 %
    of the rib's surface points nearest to any vertebra, of those within
    ``contact_mm`` (the search stops there, which keeps it fast); ribs that come no
    closer are not judged. Rib k must meet vertebra T k, or T k-1 for ribs 2-9.
    """
    vertebrae = [(name, points) for name, points in vertebra_surfaces.items() if len(points)]
    if not vertebrae:
        return set()
    tree = cKDTree(np.concatenate([points for _, points in vertebrae]))
    owner = np.repeat(np.arange(len(vertebrae)), [len(points) for _, points in vertebrae])
    flagged = set()
    for rib, points in rib_surfaces.items():
        match = _RIB.match(rib)
        if not match or not len(points):
            continue
        distance, index = tree.query(points, k=1, distance_upper_bound=contact_mm)
        near = np.flatnonzero(np.isfinite(distance))
        if not near.size:
            continue
        closest = near[np.argsort(distance[near], kind="stable")[:max(1, len(points) // 20)]]
        medial = owner[index[closest]]
        vertebra = vertebrae[int(np.bincount(medial).argmax())][0]
        level = int(match.group(2))
        allowed = {f"vertebra_T{level}"} | (set() if level in _SINGLE_FACET_RIBS else {f"vertebra_T{level - 1}"})
        if vertebra not in allowed:
            flagged |= {rib, vertebra}
    return flagged
