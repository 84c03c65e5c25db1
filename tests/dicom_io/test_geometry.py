"""Grid equality with one tolerance, and highdicom 0.28's grid matching only where it lands on the target grid."""

import highdicom as hd
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dicom_io.geometry import GRID_TOLERANCE_MM, match_grid, same_grid, same_region

DIRECTION = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()  # oblique
SHAPE, SPACING, POSITION = (12, 40, 48), (2.5, 0.8, 0.7), (-100.5, 30.25, 17.0)


def _grid(shape=SHAPE, spacing=SPACING, position=POSITION, direction=DIRECTION) -> hd.VolumeGeometry:
    array = np.zeros(shape, np.uint8)
    return hd.Volume.from_components(array, spacing=spacing, position=position, direction=direction,
                                     coordinate_system="PATIENT").get_geometry()


def _along(axis: int, distance_mm: float) -> np.ndarray:
    """A world offset of ``distance_mm`` along an array axis of the grid."""
    return np.asarray(POSITION) + DIRECTION[:, axis] * distance_mm


def test_a_grid_is_its_own_grid():
    assert same_grid(_grid(), _grid())


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_an_origin_within_the_tolerance_is_the_same_grid(axis):
    assert same_grid(_grid(), _grid(position=_along(axis, 0.5 * GRID_TOLERANCE_MM)))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_an_origin_off_by_more_than_the_tolerance_is_another_grid(axis):
    assert not same_grid(_grid(), _grid(position=_along(axis, 2 * GRID_TOLERANCE_MM)))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_spacing_is_compared_over_the_whole_grid(axis):
    """A spacing error adds up voxel after voxel: it is judged at the far corner, not per voxel."""
    steps = SHAPE[axis] - 1
    within, beyond = list(SPACING), list(SPACING)
    within[axis] += 0.5 * GRID_TOLERANCE_MM / steps
    beyond[axis] += 2 * GRID_TOLERANCE_MM / steps
    assert same_grid(_grid(), _grid(spacing=within))
    assert not same_grid(_grid(), _grid(spacing=beyond))


def test_direction_is_compared_at_the_far_corner():
    """A turn about the origin moves the last voxel most: by the angle times its distance from the first."""
    far = DIRECTION @ (np.subtract(SHAPE, 1) * SPACING)
    axis = np.cross(far, [0.0, 0.0, 1.0])
    axis /= np.linalg.norm(axis)
    for moved, same in ((0.5 * GRID_TOLERANCE_MM, True), (2 * GRID_TOLERANCE_MM, False)):
        turn = Rotation.from_rotvec(axis * moved / np.linalg.norm(far)).as_matrix()
        assert same_grid(_grid(), _grid(direction=turn @ DIRECTION)) is same


def test_another_shape_or_axis_order_is_another_grid():
    assert not same_grid(_grid(), _grid(shape=(12, 40, 47)))
    flipped = _grid().flip_spatial(axes=(1,))
    assert not same_grid(_grid(), flipped)
    assert same_region(_grid(), flipped) and same_region(_grid(), _grid().permute_spatial_axes([2, 0, 1]))
    assert not same_region(_grid(), _grid(shape=(12, 40, 47)))


def test_match_grid_reorders_and_pads_onto_the_grid():
    ct = _grid()
    labels = np.random.default_rng(0).integers(0, 5, SHAPE).astype(np.uint8)
    moved = ct.with_array(labels).flip_spatial(axes=(0, 2)).permute_spatial_axes([2, 0, 1])
    np.testing.assert_array_equal(match_grid(moved, ct).array, labels)
    part = ct.with_array(labels)[2:7]  # a SEG stores only its non-empty frames
    padded = match_grid(part, ct).array
    np.testing.assert_array_equal(padded[2:7], labels[2:7])
    assert not padded[:2].any() and not padded[7:].any()


@pytest.mark.parametrize("case", ["finer", "larger"])
def test_match_grid_refuses_what_highdicom_hands_back_unchanged(case):
    """highdicom 0.28 returns these unchanged instead of raising: neither is the target grid."""
    ct = _grid()
    if case == "finer":
        other = _grid(shape=tuple(2 * n for n in SHAPE), spacing=tuple(s / 2 for s in SPACING))
    else:
        other = _grid(shape=(SHAPE[0] + 4, *SHAPE[1:]))
    volume = other.with_array(np.ones(other.spatial_shape, np.uint8))
    assert volume.match_geometry(ct).spatial_shape == other.spatial_shape  # the flaw worked around
    assert match_grid(volume, ct) is None


def test_match_grid_refuses_a_shifted_grid():
    ct = _grid()
    shifted = _grid(position=_along(1, 0.4)).with_array(np.ones(SHAPE, np.uint8))  # half a voxel
    assert match_grid(shifted, ct) is None
