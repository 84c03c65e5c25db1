"""``present_values`` in slabs on every core gives ``np.unique``'s answer; ``in_slabs`` covers its range once, in order."""

import numpy as np
import pytest

from labels import slabs
from labels.slabs import in_slabs, present_values


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_present_values_of_a_whole_body_sized_map_are_its_unique_values(dtype, monkeypatch):
    monkeypatch.setattr(slabs, "workers", lambda: 3)  # split even on a one-core machine
    rng = np.random.default_rng(7)
    label_map = np.zeros((64, 256, 256), dtype)
    label_map[40:44, 10:20, 10:20] = rng.choice([3, 90, 200], size=(4, 10, 10))
    label_map[-1, -1, -1] = 17  # in the last slab only
    assert np.array_equal(present_values(label_map), np.unique(label_map))
    transposed = label_map.transpose(2, 0, 1)  # not contiguous: read through a copy
    assert np.array_equal(present_values(transposed), np.unique(label_map))


def test_present_values_of_small_and_empty_maps_and_refusal_of_negative_values():
    assert present_values(np.array([[3, 0], [3, 1]], np.uint8)).tolist() == [0, 1, 3]
    assert present_values(np.zeros((0, 4), np.uint16)).size == 0
    with pytest.raises(ValueError, match="negative value -2"):
        present_values(np.array([1, -2], np.int16))


@pytest.mark.parametrize("count", [1, 5, slabs.MIN_VOXELS_PER_SLAB * 3 + 1])
def test_in_slabs_covers_the_range_once_in_order(count, monkeypatch):
    monkeypatch.setattr(slabs, "workers", lambda: 4)
    bounds = in_slabs(count, lambda start, stop: (start, stop))
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(stop == next_start for (_, stop), (next_start, _) in zip(bounds, bounds[1:]))
    assert len(bounds) == min(4, max(1, count // slabs.MIN_VOXELS_PER_SLAB))
