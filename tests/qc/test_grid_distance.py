"""The fast surface distances give the numbers of the plain method: erosion surfaces, KD-tree distances, numpy percentiles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from qc import grid_distance
from qc.metrics import MaskSurface, compare, overlap, percentile

SPACINGS = [(5.0, 0.9, 0.9), (1.0, 1.0, 1.0), (2.0, 0.7, 1.3)]


def _blobs(seed: int, shape=(12, 30, 30)) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping irregular masks, the second with a far-away piece (beyond the offset search's reach)."""
    rng = np.random.default_rng(seed)
    a = ndimage.binary_opening(rng.random(shape) < 0.55, iterations=1)
    b = a.copy()
    b[:, 2:] = a[:, :-2]  # moved two columns
    b[rng.random(shape) < 0.03] ^= True  # noise
    b[-3:, -4:, -4:] = True  # a piece in a corner, touching the crop's faces
    a[:, -12:, -12:] = False
    return a, b


def _plain_surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)


@pytest.mark.parametrize("seed", range(4))
def test_surface_is_the_six_neighbour_erosion_surface(seed):
    a, b = _blobs(seed)
    for mask in (a, b, np.ones((1, 4, 5), bool), np.ones((3, 3, 3), bool)):
        assert np.array_equal(MaskSurface(mask, (1.0, 1.0, 1.0)).surface, _plain_surface(mask))
        voxels = MaskSurface(mask, (5.0, 0.9, 0.9)).surface_voxels
        assert np.array_equal(voxels, np.argwhere(_plain_surface(mask)))


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("seed", range(3))
def test_distances_equal_a_kd_tree_of_the_other_surface(spacing, seed):
    a, b = _blobs(seed)
    sa, sb = MaskSurface(a, spacing), MaskSurface(b, spacing)
    points_a = np.argwhere(_plain_surface(a)) * np.asarray(spacing)
    points_b = np.argwhere(_plain_surface(b)) * np.asarray(spacing)
    expected = np.sort(cKDTree(points_b).query(points_a, k=1)[0])  # distances come in no particular order
    np.testing.assert_allclose(np.sort(sa.distances_to(sb)), expected, rtol=0, atol=1e-12)
    found = sb.distances_to(sa)
    assert found.max() > grid_distance.reach_mm(spacing)  # some points went past the offset search
    np.testing.assert_allclose(np.sort(found), np.sort(cKDTree(points_a).query(points_b, k=1)[0]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("tolerance", [0.0, 0.9, 2.0, 4.5, 30.0])
def test_overlap_gives_the_dice_and_nsd_of_compare(spacing, tolerance):
    a, b = _blobs(7)
    sa, sb = MaskSurface(a, spacing), MaskSurface(b, spacing)
    full, fast = compare(sa, sb, tolerance), overlap(sa, sb, tolerance)
    assert (fast.dice, fast.nsd) == (full.dice, full.nsd)
    empty = MaskSurface(np.zeros_like(a), spacing)
    assert overlap(empty, empty, tolerance) is None
    assert (overlap(sa, empty, tolerance).dice, overlap(sa, empty, tolerance).nsd) == (0.0, 0.0)


def test_offsets_run_shortest_first_and_hold_every_shorter_one():
    spacing = (5.0, 0.9, 0.9)
    steps, lengths = grid_distance._offsets(spacing)
    assert np.all(np.diff(lengths) >= 0) and lengths[0] == 0
    assert lengths[-1] <= grid_distance.reach_mm(spacing)
    pad = np.array(grid_distance.padding(spacing))
    box = np.stack(np.meshgrid(*[np.arange(-p - 1, p + 2) for p in pad], indexing="ij"), -1).reshape(-1, 3)
    inside = np.sqrt(((box * spacing) ** 2).sum(1)) <= lengths[-1]
    assert {tuple(s) for s in box[inside]} == {tuple(s) for s in steps}


def test_percentile_is_numpys():
    rng = np.random.default_rng(3)
    for size in [1, 2, 3, 7, 20, 101, 5000]:
        values = rng.choice([0.0, 0.9, 1.27, 5.0, 5.08, 7.3], size=size)
        for q in (0, 3, 50, 95, 99.9, 100):
            assert percentile(values, q) == np.percentile(values, q)
