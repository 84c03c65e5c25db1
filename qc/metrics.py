"""Overlap and surface-distance metrics between two masks, in mm, by one pinned convention.

Convention (docs/qc_method.md; MONAI / DeepMind surface-distance style):

- surface = mask voxels with at least one 6-neighbour outside the mask (voxels on
  the volume border count as surface); distances are between voxel centres, in mm
  with the voxel spacing;
- Dice = 2|A∩B| / (|A| + |B|);
- HD95 = max of the two directed 95th percentiles (numpy's linear interpolation)
  of the distances from each surface to the other;
- ASSD = mean of all those distances, both directions pooled;
- NSD@τ = share of the surface voxels of both masks within τ mm of the other surface;
- centroid distance = distance between the masks' centres of mass.

Empty masks: both empty → nothing to compare (``None``: callers skip the pair);
one empty → Dice 0 and NSD 0, distances NaN (undefined, never inf).

Masks are compared on a crop: distances between surfaces inside a box are the
same as in the full volume as long as the box keeps one voxel of background
around both masks (or reaches the volume border, where the full volume ends too).
Surface points go into a KD-tree once per mask and are reused for every pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

_SIX_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class PairMetrics:
    dice: float
    hd95_mm: float
    assd_mm: float
    nsd: float
    centroid_mm: float


class MaskSurface:
    """A mask on a crop with what the metrics need, each computed once: size, centroid, surface points, KD-tree.

    ``at_volume_border``: per axis (low, high), whether that face of the crop is the
    volume's own border (there the mask ends with the volume, so its voxels are surface).
    """

    def __init__(self, mask: np.ndarray, spacing: tuple[float, float, float], origin: np.ndarray | None = None):
        self.mask = mask
        self.spacing = np.asarray(spacing, dtype=np.float64)
        self.origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)  # crop offset, voxels
        self.voxels = int(np.count_nonzero(mask))

    @property
    def empty(self) -> bool:
        return self.voxels == 0

    @cached_property
    def centroid_mm(self) -> np.ndarray:
        """Centre of mass in mm from the volume's first voxel (array axes), from the three projections."""
        index = [np.dot(np.count_nonzero(self.mask, axis=tuple(a for a in range(3) if a != axis)),
                        np.arange(self.mask.shape[axis])) / self.voxels for axis in range(3)]
        return (np.array(index) + self.origin) * self.spacing

    @cached_property
    def surface(self) -> np.ndarray:
        """Surface voxels on the crop (bool)."""
        return self.mask & ~ndimage.binary_erosion(self.mask, structure=_SIX_NEIGHBOURS, border_value=0)

    @cached_property
    def surface_voxels(self) -> np.ndarray:
        return np.argwhere(self.surface)

    @cached_property
    def points_mm(self) -> np.ndarray:
        return (self.surface_voxels + self.origin) * self.spacing

    @cached_property
    def tree(self) -> cKDTree:
        return cKDTree(self.points_mm)

    def distances_to(self, other: MaskSurface) -> np.ndarray:
        """Distance (mm) from each of this surface's points to the nearest point of ``other``'s surface.

        Masks compared on one crop share most surface voxels; those are 0 mm apart
        and skip the KD-tree (the same number it would return), which is most of the work saved.
        """
        distances = np.zeros(len(self.surface_voxels))
        elsewhere = ~other.surface[tuple(self.surface_voxels.T)]
        if elsewhere.any():
            distances[elsewhere] = other.tree.query(self.points_mm[elsewhere], k=1)[0]
        return distances


def compare(a: MaskSurface, b: MaskSurface, tolerance_mm: float) -> PairMetrics | None:
    """Metrics of two masks on the same crop; ``None`` when both are empty."""
    if a.mask.shape != b.mask.shape or not np.array_equal(a.origin, b.origin):
        raise ValueError(f"masks on different crops: {a.mask.shape} at {a.origin} vs {b.mask.shape} at {b.origin}")
    if a.empty and b.empty:
        return None
    if a.empty or b.empty:
        return PairMetrics(dice=0.0, hd95_mm=math.nan, assd_mm=math.nan, nsd=0.0, centroid_mm=math.nan)
    overlap = int(np.count_nonzero(a.mask & b.mask))
    a_to_b, b_to_a = a.distances_to(b), b.distances_to(a)
    both = np.concatenate([a_to_b, b_to_a])
    return PairMetrics(
        dice=2.0 * overlap / (a.voxels + b.voxels),
        hd95_mm=float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95))),
        assd_mm=float(both.mean()),
        nsd=float(np.count_nonzero(both <= tolerance_mm) / both.size),
        centroid_mm=float(np.linalg.norm(a.centroid_mm - b.centroid_mm)),
    )
