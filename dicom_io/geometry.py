"""Whether two voxel grids are the same grid, with one tolerance, and highdicom's grid matching made safe.

A SEG, a label file or a reviewer's mask is only pasted onto a CT when its
voxels are the CT's voxels; anything else must be refused or resampled, never
shifted. ``same_grid`` is that test: same shape, and every voxel centre within
``GRID_TOLERANCE_MM`` of its counterpart (comparing the 8 corner voxels is
enough: the difference of two affine maps is largest at a corner of the box).

``GRID_TOLERANCE_MM`` is 1 µm. It must absorb what storing a grid rounds away:
NIfTI keeps its affine in float32 (about 7 digits: some 0.03 µm at 500 mm from
the origin, a little more after a quaternion), DICOM keeps positions and
spacings as decimal strings of at most 16 characters. It must stay far below
anything that moves a voxel: the finest CT voxels are some 300 µm wide, so a
grid off by more than 1 µm is another grid (a crop of another region, another
reconstruction, a resampled export). The checks this replaces used 0.1 µm for
SEGs and 1 µm for label files and corrections on the affine's entries; 1 µm is
the one that float32 label files need, and is just as safe for SEGs.

highdicom 0.28's ``Volume.match_geometry`` (permute, flip, crop, pad onto
another grid) cannot be trusted alone: an aligned grid that is larger than the
target and starts at its first voxel comes back uncropped, and a grid an integer
factor finer comes back unchanged (its crop test compares with the target's
shape and ignores the step); its frame-of-reference check compares a volume
with itself. ``match_grid`` therefore accepts its result only when it is the
target grid itself. highdicom's own tolerance counts voxels (offsets) or is a
ratio (directions, spacings), so it is given 1 µm in voxels of the finer grid:
it only pre-filters, ``same_grid`` decides.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np

GRID_TOLERANCE_MM = 1e-3

Grid = hd.Volume | hd.VolumeGeometry


def corners(grid: Grid) -> np.ndarray:
    """World coordinates (mm) of the grid's 8 corner voxel centres, in index order."""
    shape = grid.spatial_shape
    indices = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    return grid.map_indices_to_reference(indices)


def same_grid(a: Grid, b: Grid) -> bool:
    """Same shape, same axis order and every voxel centre within ``GRID_TOLERANCE_MM`` of its counterpart."""
    if tuple(a.spatial_shape) != tuple(b.spatial_shape):
        return False
    return bool(np.linalg.norm(corners(a) - corners(b), axis=1).max() <= GRID_TOLERANCE_MM)


def same_region(a: Grid, b: Grid) -> bool:
    """The same voxels in any axis order and direction: shapes alike up to order, corner voxel centres alike as sets."""
    if sorted(a.spatial_shape) != sorted(b.spatial_shape):
        return False
    distances = np.linalg.norm(corners(a)[:, None, :] - corners(b)[None, :, :], axis=2)
    return bool((distances.min(axis=1) <= GRID_TOLERANCE_MM).all() and (distances.min(axis=0) <= GRID_TOLERANCE_MM).all())


def match_grid(volume: hd.Volume, grid: Grid) -> hd.Volume | None:
    """``volume`` permuted, flipped, cropped or padded (with 0) onto ``grid`` when aligned with it, else None."""
    tol = GRID_TOLERANCE_MM / min(*volume.spacing, *grid.spacing)
    try:
        matched = volume.match_geometry(grid, tol=tol)
    except (ValueError, RuntimeError):
        return None
    return matched if same_grid(matched, grid) else None


def describe_grid(grid: Grid) -> str:
    """Shape, origin and spacing of a grid, for error messages."""
    return (f"{tuple(grid.spatial_shape)} voxels, origin {np.round(grid.position, 3).tolist()} mm, "
            f"spacing {np.round(grid.spacing, 4).tolist()} mm")
