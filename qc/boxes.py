"""Bounding boxes on a voxel grid: of a mask, of every label of a label map, their union, grown and clipped.

QC compares each structure on the box around its masks (``qc.assess``), the
report's pictures show a bone with some context around it (``qc.snapshot``),
and review exports the box around every source's mask plus a margin
(``review.roi``). A box is one index slice per array axis, start included,
stop excluded, so ``array[box]`` is the crop and its origin is the starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

Box = tuple[slice, slice, slice]


def mask_box(mask: np.ndarray) -> Box | None:
    """Bounding box of one mask (None when empty): its slice range first, then rows and columns within that slab only.

    Projections with ``any`` are ~20x faster than ``scipy.ndimage.find_objects`` on 512x512x300.
    """
    filled = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if filled.size == 0:
        return None
    slab = mask[filled[0] : filled[-1] + 1]
    rows, cols = np.flatnonzero(slab.any(axis=(0, 2))), np.flatnonzero(slab.any(axis=(0, 1)))
    return _span(filled), _span(rows), _span(cols)


def label_boxes(label_map: np.ndarray) -> dict[int, Box]:
    """Bounding box of every label (> 0) in an integer label map, from one pass over it.

    The same boxes as ``scipy.ndimage.find_objects`` in well under half its time on
    a CT-sized map: the background (most of the volume) is skipped 8 bytes at a
    time, and the labelled voxels, grouped by label in scan order (a stable sort),
    give each label's slice range from its first and last voxel.
    """
    flat = np.ascontiguousarray(label_map).reshape(-1)
    labelled = _nonzero(flat)
    values = flat[labelled]
    keep = values > 0
    labelled, values = labelled[keep], values[keep]
    if not values.size:
        return {}
    order = np.argsort(values, kind="stable")
    labelled, values = labelled[order], values[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    lasts = np.r_[starts[1:], values.size] - 1
    slices, rest = np.divmod(labelled, label_map.shape[1] * label_map.shape[2])
    rows, cols = np.divmod(rest, label_map.shape[2])
    spans = [(np.minimum.reduceat(a, starts), np.maximum.reduceat(a, starts)) for a in (rows, cols)]
    return {int(values[s]): (slice(int(slices[s]), int(slices[e]) + 1),
                             *(slice(int(low[i]), int(high[i]) + 1) for low, high in spans))
            for i, (s, e) in enumerate(zip(starts, lasts))}


def _nonzero(flat: np.ndarray) -> np.ndarray:
    """Indices of the non-zero values of a 1-d array, found 8 bytes at a time where the size allows."""
    per_word = 8 // flat.itemsize if flat.itemsize in (1, 2, 4) else 0
    if not per_word or flat.size % per_word:
        return np.flatnonzero(flat)
    words = np.flatnonzero(flat.view(np.uint64))
    return (words[:, None] * per_word + np.arange(per_word)).reshape(-1)


def union_box(boxes: Iterable[Box]) -> Box | None:
    """The smallest box holding all ``boxes`` (None when there are none)."""
    boxes = list(boxes)
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))  # type: ignore[return-value]


def masks_box(masks: Iterable[np.ndarray]) -> Box | None:
    """Bounding box of all masks together (None when all are empty), without a full-size union array."""
    return union_box(box for box in map(mask_box, masks) if box is not None)


def grow_box(box: Box, voxels: Sequence[int], shape: Sequence[int]) -> Box:
    """``box`` grown by ``voxels[a]`` on both sides of each axis ``a``, clipped to a volume of ``shape``."""
    return tuple(slice(max(b.start - g, 0), min(b.stop + g, n)) for b, g, n in zip(box, voxels, shape))  # type: ignore[return-value]


def margin_voxels(spacing: Sequence[float], margin_mm: float) -> tuple[int, int, int]:
    """``margin_mm`` as whole voxels along each axis, rounded up so the context is at least that wide."""
    return tuple(math.ceil(margin_mm / s) for s in spacing)  # type: ignore[return-value]


def _span(indices: np.ndarray) -> slice:
    """From the first to past the last of sorted indices."""
    return slice(int(indices[0]), int(indices[-1]) + 1)
