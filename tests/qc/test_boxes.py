"""Bounding boxes: of a mask, of every label, their union, grown and clipped; checked against np.argwhere."""

import numpy as np
import pytest
from scipy import ndimage

from qc.boxes import grow_box, label_boxes, margin_voxels, mask_box, masks_box, union_box


def _reference_box(mask: np.ndarray):
    found = np.argwhere(mask)
    if found.size == 0:
        return None
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(found.min(axis=0), found.max(axis=0)))


@pytest.fixture
def masks():
    rng = np.random.default_rng(3)
    out = []
    for _ in range(4):
        mask = np.zeros((17, 23, 19), bool)
        lo = rng.integers(0, 10, 3)
        hi = lo + rng.integers(1, 8, 3)
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = rng.random(tuple(hi - lo)) < 0.3
        mask[tuple(lo)] = True  # at least one voxel
        out.append(mask)
    return out


def test_mask_box_is_the_bounding_box(masks):
    for mask in masks:
        assert mask_box(mask) == _reference_box(mask)
    assert mask_box(np.zeros((4, 5, 6), bool)) is None


def test_union_of_boxes_is_the_box_of_the_union(masks):
    union = np.logical_or.reduce(masks)
    assert union_box([mask_box(m) for m in masks]) == _reference_box(union)
    assert masks_box(masks) == _reference_box(union)
    assert masks_box([np.zeros((4, 5, 6), bool)] * 2) is None
    assert union_box([]) is None


def test_label_boxes_finds_every_label(masks):
    label_map = np.zeros(masks[0].shape, np.uint16)
    for value, mask in zip((3, 7, 8), masks):
        label_map[mask] = value
    boxes = label_boxes(label_map)
    assert sorted(boxes) == [3, 7, 8]
    for value, box in boxes.items():
        assert box == _reference_box(label_map == value)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.int64])
@pytest.mark.parametrize("shape", [(17, 23, 19), (6, 8, 16), (1, 1, 8)])
def test_label_boxes_are_those_of_find_objects(dtype, shape):
    """Every integer type, sizes read by words or not, a map in a non-C memory order; only labels > 0 count."""
    rng = np.random.default_rng(sum(shape))
    label_map = rng.choice(np.array([0, 0, 0, 1, 2, 5, 300 % np.iinfo(dtype).max], dtype=dtype), size=shape)
    if np.issubdtype(dtype, np.signedinteger):
        label_map[0, 0, :2] = -4
    expected = {i + 1: b for i, b in enumerate(ndimage.find_objects(np.where(label_map > 0, label_map, 0))) if b}
    assert label_boxes(label_map) == expected
    assert label_boxes(np.asfortranarray(label_map)) == expected
    assert label_boxes(np.zeros(shape, dtype)) == {}


def test_grow_box_is_clipped_to_the_volume():
    box = (slice(1, 4), slice(5, 9), slice(0, 10))
    assert grow_box(box, (2, 3, 1), (20, 10, 10)) == (slice(0, 6), slice(2, 10), slice(0, 10))
    assert grow_box(box, (0, 0, 0), (20, 10, 10)) == box


def test_margin_in_mm_is_rounded_up_to_whole_voxels():
    assert margin_voxels((2.5, 0.7, 1.0), 10.0) == (4, 15, 10)
    assert margin_voxels((2.5, 0.7, 1.0), 0.0) == (0, 0, 0)
