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
Distances come from a search of the voxel offsets near each point
(``qc.grid_distance``); only points with nothing of the other surface within its
reach go to a KD-tree of that surface, built once per mask when first needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

from qc import grid_distance


@dataclass(frozen=True)
class PairMetrics:
    dice: float
    hd95_mm: float
    assd_mm: float
    nsd: float
    centroid_mm: float


class MaskSurface:
    """A mask on a crop with what the metrics need, each computed once: size, centroid, surface, its points, KD-tree.

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
    def _framed(self) -> np.ndarray:
        """The surface in a background frame wide enough for the offset search (``qc.grid_distance``)."""
        framed = np.zeros([n + 2 * p for n, p in zip(self.mask.shape, self._pad)], bool)
        _surface_into(self.mask, framed[self._inner])
        return framed

    @property
    def _pad(self) -> tuple[int, int, int]:
        return grid_distance.padding(tuple(self.spacing))

    @property
    def _inner(self) -> tuple[slice, slice, slice]:
        return tuple(slice(p, p + n) for p, n in zip(self._pad, self.mask.shape))  # type: ignore[return-value]

    @cached_property
    def _flat(self) -> np.ndarray:
        """Flat indices of the surface voxels in the framed array (C order, like ``np.argwhere``)."""
        return np.flatnonzero(self._framed)

    @property
    def surface(self) -> np.ndarray:
        """Surface voxels on the crop (bool)."""
        return self._framed[self._inner]

    @cached_property
    def surface_voxels(self) -> np.ndarray:
        """Indices (on the crop) of the surface voxels, C order like ``np.argwhere``."""
        return self._voxels_at(self._flat)

    @cached_property
    def points_mm(self) -> np.ndarray:
        return self._points_at(self._flat)

    @cached_property
    def tree(self) -> cKDTree:
        return cKDTree(self.points_mm)

    def near_count(self, other: MaskSurface, tolerance_mm: float) -> int:
        """How many of this surface's points lie within ``tolerance_mm`` of ``other``'s surface (same crop)."""
        spacing = tuple(self.spacing)
        found, far = grid_distance.nearest_on_grid(self._flat, other._framed, spacing, tolerance_mm)
        if far.size and tolerance_mm > grid_distance.reach_mm(spacing):  # beyond the search, not beyond the tolerance
            return found.size + int(np.count_nonzero(other.tree.query(self._points_at(far), k=1)[0] <= tolerance_mm))
        return found.size

    def distances_to(self, other: MaskSurface) -> np.ndarray:
        """Distance (mm) from each of this surface's points to the nearest point of ``other``'s surface (same crop).

        In no particular order. Masks compared on one crop share most surface
        voxels (0 mm apart) and the rest lie near the other surface, so the offset
        search finds nearly all; the few beyond its reach are looked up in ``other``'s KD-tree.
        """
        found, far = grid_distance.nearest_on_grid(self._flat, other._framed, tuple(self.spacing))
        if far.size:
            return np.concatenate([found, other.tree.query(self._points_at(far), k=1)[0]])
        return found

    def _voxels_at(self, flat: np.ndarray) -> np.ndarray:
        """Crop indices of voxels given by flat indices into the framed surface."""
        return np.column_stack(np.unravel_index(flat, self._framed.shape)) - np.array(self._pad)

    def _points_at(self, flat: np.ndarray) -> np.ndarray:
        """Points (mm, like ``points_mm``) of voxels given by flat indices into the framed surface."""
        return (self._voxels_at(flat) + self.origin) * self.spacing


@dataclass(frozen=True)
class Overlap:
    """Dice and NSD of two masks: all that a member's agreement needs (``qc.score.agreement``)."""

    dice: float
    nsd: float


def overlap(a: MaskSurface, b: MaskSurface, tolerance_mm: float) -> Overlap | None:
    """Dice and NSD@τ of two masks on the same crop (the numbers ``compare`` gives), looking no further than τ."""
    if _nothing_to_compare(a, b):
        return None
    if a.empty or b.empty:
        return Overlap(dice=0.0, nsd=0.0)
    near = a.near_count(b, tolerance_mm) + b.near_count(a, tolerance_mm)
    return Overlap(dice=_dice(a, b), nsd=float(near / (a._flat.size + b._flat.size)))


def compare(a: MaskSurface, b: MaskSurface, tolerance_mm: float) -> PairMetrics | None:
    """Metrics of two masks on the same crop; ``None`` when both are empty."""
    if _nothing_to_compare(a, b):
        return None
    if a.empty or b.empty:
        return PairMetrics(dice=0.0, hd95_mm=math.nan, assd_mm=math.nan, nsd=0.0, centroid_mm=math.nan)
    a_to_b, b_to_a = a.distances_to(b), b.distances_to(a)
    both = np.concatenate([a_to_b, b_to_a])
    return PairMetrics(
        dice=_dice(a, b),
        hd95_mm=float(max(percentile(a_to_b, 95), percentile(b_to_a, 95))),
        assd_mm=float(both.mean()),
        nsd=float(np.count_nonzero(both <= tolerance_mm) / both.size),
        centroid_mm=float(np.linalg.norm(a.centroid_mm - b.centroid_mm)),
    )


def _nothing_to_compare(a: MaskSurface, b: MaskSurface) -> bool:
    """Both masks empty; refuses masks on different crops."""
    if a.mask.shape != b.mask.shape or not np.array_equal(a.origin, b.origin):
        raise ValueError(f"masks on different crops: {a.mask.shape} at {a.origin} vs {b.mask.shape} at {b.origin}")
    return a.empty and b.empty


def _dice(a: MaskSurface, b: MaskSurface) -> float:
    return 2.0 * int(np.count_nonzero(a.mask & b.mask)) / (a.voxels + b.voxels)


def _surface_into(mask: np.ndarray, out: np.ndarray) -> None:
    """Write the surface of ``mask`` into ``out``: mask voxels with a 6-neighbour outside it or outside the crop.

    The same voxels as ``mask & ~binary_erosion(mask, 6-neighbour structure, border_value=0)``,
    by six shifted ANDs of the crop's core (every voxel on the crop's faces is surface).
    """
    out[...] = mask
    core = (slice(1, -1),) * 3
    inner = mask[core].copy()
    for axis in range(3):
        for part in (slice(None, -2), slice(2, None)):
            inner &= mask[tuple(part if a == axis else slice(1, -1) for a in range(3))]
    out[core] &= ~inner


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation, the same arithmetic) from a partition around just two ranks.

    numpy's own also partitions, but with a per-call overhead that its 4,000-odd
    calls per series notice.
    """
    share = q / 100.0
    index = (values.size - 1) * share
    low = min(max(math.floor(index), 0), values.size - 1)
    high = min(low + 1, values.size - 1)
    ranked = np.partition(values, (low, high))
    a, b, t = float(ranked[low]), float(ranked[high]), index - low
    return b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t
