"""Voxel grids: the ROI an item names, whether a label map lies on it (in any axis order), Slicer's IJK-to-RAS.

Standard library and numpy only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import permutations, product

import numpy as np

from .formats import ReviewError

GEOMETRY_TOLERANCE_MM = 1e-3

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``affine`` maps an index along (axis 0, 1, 2) to LPS mm.

    item.json's axes are (slice, row, column); a NRRD's are its own (``bonehub review export``
    writes the same order, highdicom's ``to_simpleitk``; SimpleITK's ``GetImageFromArray`` the reverse).
    """

    affine: np.ndarray
    shape: tuple[int, int, int]

    def box_corners(self) -> np.ndarray:
        """LPS corners of the voxels' outer box (index -0.5 and n - 0.5): the 8 points fix the affine."""
        index = np.array([[a, b, c, 1.0] for a in (-0.5, self.shape[0] - 0.5)
                          for b in (-0.5, self.shape[1] - 0.5) for c in (-0.5, self.shape[2] - 0.5)])
        return (index @ self.affine.T)[:, :3]

    def reindexed(self) -> Iterator[Grid]:
        """The same voxels indexed in every axis order and direction (48 ways)."""
        for order in permutations(range(3)):
            for flips in product((False, True), repeat=3):
                affine = np.eye(4)
                affine[:3, 3] = self.affine[:3, 3]
                for new, (old, flip) in enumerate(zip(order, flips)):
                    step = self.affine[:3, old]
                    if flip:
                        affine[:3, 3] += (self.shape[old] - 1) * step
                    affine[:3, new] = -step if flip else step
                yield Grid(affine, tuple(self.shape[old] for old in order))


def roi_grid(item: dict) -> Grid:
    """The ROI grid of an item (``roi.affine`` and ``roi.shape``), refused if malformed."""
    roi = item.get("roi")
    where = f"item {item.get('item_id', '?')}: roi"
    if not isinstance(roi, dict):
        raise ReviewError(f"{where} must be an object")
    shape = roi.get("shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise ReviewError(f"{where}.shape must be three positive integers, got {shape!r}")
    try:
        affine = np.array(roi.get("affine"), dtype=float)
    except (TypeError, ValueError):
        raise ReviewError(f"{where}.affine must be a 4x4 list of numbers") from None
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or not np.allclose(affine[3], [0, 0, 0, 1]):
        raise ReviewError(f"{where}.affine must be a 4x4 affine matrix (last row 0 0 0 1)")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ReviewError(f"{where}.affine is singular")
    return Grid(affine, (shape[0], shape[1], shape[2]))


def grid_mismatch(actual: Grid, expected: Grid, tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> str | None:
    """Why ``actual`` does not hold the voxels of ``expected`` (in any axis order), or None when it does.

    Axis order and direction are free, as for ``bonehub review import`` (highdicom's match_geometry):
    a label map exported against a CT that Slicer loaded from DICOM may run its slices the other way.
    """
    offsets = [float(np.max(np.linalg.norm(variant.box_corners() - expected.box_corners(), axis=1)))
               for variant in actual.reindexed() if variant.shape == tuple(expected.shape)]
    if not offsets:
        return (f"its size {'x'.join(map(str, actual.shape))} voxels does not match the ROI's "
                f"{'x'.join(map(str, expected.shape))} in any axis order")
    if min(offsets) > tolerance_mm:
        return f"its grid is up to {min(offsets):.4g} mm off the ROI grid (tolerance {tolerance_mm:g} mm)"
    return None


def ijk_to_ras(grid: Grid) -> np.ndarray:
    """Slicer's IJK-to-RAS matrix of a grid (I = axis 0), as Slicer sets it when it loads such a NRRD."""
    return _LPS_RAS @ grid.affine
