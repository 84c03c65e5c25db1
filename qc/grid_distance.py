"""Exact distances from surface voxels to the nearest voxel of another surface on the same grid, mostly without a KD-tree.

The masks QC compares are a source, another source, or a majority of sources
of one bone: their surfaces lie mostly on each other or a voxel or two apart.
So instead of a KD-tree per surface (built for every leave-one-out consensus,
queried for every point), each point looks at the other surface along the voxel
offsets within ``reach_mm``, shortest first: the first offset that hits is the
nearest surface voxel, so its length is the exact distance (the same number a
KD-tree gives). Points with no hit within the reach are left to the caller (a
KD-tree query on just those). The surface is stored in a background frame as wide as
the reach, so no offset leaves the array.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

Spacing = tuple[float, float, float]


def reach_mm(spacing: Spacing) -> float:
    """How far the offset search looks: three of the finest voxels, and at least to the next slice one voxel aside."""
    return max(3.0 * min(spacing), math.hypot(max(spacing), min(spacing)))


@lru_cache(maxsize=16)
def padding(spacing: Spacing) -> tuple[int, int, int]:
    """Voxels per axis that every offset within the reach stays inside."""
    reach = reach_mm(spacing)
    return tuple(math.ceil(reach / s) for s in spacing)  # type: ignore[return-value]


@lru_cache(maxsize=16)
def _offsets(spacing: Spacing) -> tuple[np.ndarray, np.ndarray]:
    """Every voxel offset (k x 3) no longer than the reach, shortest first, and its length in mm.

    The box of ``padding`` holds every offset within the reach, so the list holds
    every offset shorter than any it holds: the first hit along it is the nearest.
    """
    pad = padding(spacing)
    axes = [np.arange(-p, p + 1) for p in pad]
    steps = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    lengths = np.sqrt(((steps * np.asarray(spacing)) ** 2).sum(axis=1))
    keep = lengths <= reach_mm(spacing)
    order = np.argsort(lengths[keep], kind="stable")
    return steps[keep][order], lengths[keep][order]


def nearest_on_grid(sources: np.ndarray, target: np.ndarray, spacing: Spacing,
                    limit_mm: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from source voxels to the nearest ``True`` voxel of ``target``, and the sources left over.

    ``sources``: flat indices into ``target``, a surface on the same crop in a
    background frame of ``padding(spacing)`` voxels, all inside the frame. Only
    offsets up to ``limit_mm`` (and the reach) are searched. Returns the distances
    found, shortest first and not in the sources' order (the metrics need only
    their distribution), and the flat indices of the sources with no target voxel that near.
    """
    steps, lengths = _offsets(spacing)
    count = int(np.searchsorted(lengths, limit_mm, side="right"))
    strides = np.array([target.shape[1] * target.shape[2], target.shape[2], 1])
    flat_target = target.ravel()
    found, hits = [], []
    at = np.asarray(sources)
    for step, length in zip(steps[:count] @ strides, lengths[:count]):
        if not at.size:
            break
        hit = flat_target[at + step]
        if number := int(np.count_nonzero(hit)):
            found.append(length)
            hits.append(number)
            at = at[~hit]
    return np.repeat(np.array(found, dtype=np.float64), hits), at
