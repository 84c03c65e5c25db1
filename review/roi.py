"""The region a reviewer sees and the only region a correction may change: geometry and the paste rule.

The ROI is an index box on the CT grid, so its voxels are exactly CT voxels: a
crop of the CT volume keeps the direction and spacing and moves the origin to
the box corner (``highdicom.Volume`` slicing does the affine), and pasting back
is plain array indexing, exact for any direction and origin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from labels.coded_values import CodedValue
from qc.boxes import Box, grow_box, margin_voxels, masks_box



class NeighbourPolicy(CodedValue):
    """Who gets a voxel that the correction marks but another structure holds."""

    KEEP = "keep"  # the other structure: the reviewer corrected one bone and may not have looked at its neighbour
    OVERWRITE = "overwrite"  # the corrected structure


KEEP, OVERWRITE = NeighbourPolicy.KEEP, NeighbourPolicy.OVERWRITE


def roi_box(masks: Iterable[np.ndarray], spacing: tuple[float, float, float], margin_mm: float) -> Box:
    """The box around the union of ``masks`` grown by ``margin_mm`` on every side, clipped to the volume.

    The margin is rounded up to whole voxels per axis, so the reviewer always
    sees at least ``margin_mm`` of context where the volume has it.
    """
    masks = list(masks)
    box = masks_box(masks)
    if box is None:
        raise ValueError("no source labels this structure: there is nothing to review")
    grow = margin_voxels(spacing, margin_mm) if margin_mm > 0 else (0, 0, 0)
    return grow_box(box, grow, masks[0].shape)


def box_to_json(box: Box) -> dict[str, list[int]]:
    return {"start": [s.start for s in box], "stop": [s.stop for s in box]}


def box_from_json(data: dict, shape: tuple[int, int, int]) -> Box:
    """The box an item recorded, checked against the CT grid it must lie in."""
    start, stop = [int(v) for v in data["start"]], [int(v) for v in data["stop"]]
    if len(start) != 3 or len(stop) != 3 or any(not 0 <= a < b <= n for a, b, n in zip(start, stop, shape)):
        raise ValueError(f"ROI {start}..{stop} does not lie inside the CT grid {shape}")
    return tuple(slice(a, b) for a, b in zip(start, stop))


def mask_digest(mask: np.ndarray) -> str:
    """SHA-256 of a boolean mask and its shape: what a correction was made against, compared by value."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    return hashlib.sha256(repr(mask.shape).encode() + np.packbits(mask).tobytes()).hexdigest()


@dataclass(frozen=True)
class PasteResult:
    """The corrected full label map and what the correction did (voxel counts)."""

    label_map: np.ndarray
    added: int  # voxels that became the structure
    removed: int  # voxels of the structure that became background
    contested: int  # voxels the correction claims that another structure holds
    taken: int  # of those, voxels the structure took (policy overwrite); the rest were kept by their owner


def paste_correction(label_map: np.ndarray, box: Box, corrected: np.ndarray, structure_id: int,
                     owned_ids: Iterable[int], policy: NeighbourPolicy | str = KEEP) -> PasteResult:
    """``corrected`` (boolean, on ``box``) written into a copy of ``label_map`` for one structure.

    Inside the box, voxels whose id is in ``owned_ids`` (the structure and the
    structures under it) that the correction leaves out become background;
    background voxels it marks become ``structure_id``. Voxels another structure
    holds are that structure's under ``keep`` (the reviewer corrected one bone
    and may not have looked at its neighbour) and become ``structure_id`` under
    ``overwrite``. Outside the box nothing changes.
    """
    policy = NeighbourPolicy(policy)  # raises on text that is not a policy
    region = label_map[box]
    if corrected.shape != region.shape:
        raise ValueError(f"correction of shape {corrected.shape} does not fit the ROI {region.shape}")
    owned = np.isin(region, np.fromiter(owned_ids, dtype=np.int64))
    removed = owned & ~corrected
    claimed = corrected & ~owned
    background = claimed & (region == 0)
    contested = claimed & (region != 0)
    take = background | contested if policy == OVERWRITE else background
    out = label_map.copy()
    patch = out[box]
    patch[removed] = 0
    patch[take] = structure_id
    return PasteResult(out, int(take.sum()), int(removed.sum()), int(contested.sum()),
                       int(contested.sum()) if policy == OVERWRITE else 0)
