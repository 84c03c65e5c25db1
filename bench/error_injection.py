"""Known errors put into a schema label map, so QC can be judged against a truth it did not see.

Why: Stage 2 has no ground truth, so the only way to measure whether it finds
bad bones is to damage chosen bones of one segmentation on purpose and check
that QC sends exactly those to review and names that segmentation. The errors
are the failure modes seen in real bone segmentations (docs/qc_method.md): too small
or too large masks, a bone out of place, a missed bone, two neighbouring
vertebrae or ribs mixed up, a whole run labelled one level off.

Label maps hold schema ids (uint16), array axes (slice, row, col); ``affine``
maps indices to patient LPS mm. Every function leaves its input untouched and
returns an ``Injury``: the new map and the bones whose masks it changed.

``boundary_noise`` and ``translate`` are not errors: they make the small
disagreements that separate real sources and augmented runs (benchmark members).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from labels.schema import default_schema
from qc import levels

PATIENT_AXES = "xyz"  # LPS: x towards the patient's left, y posterior, z head


@dataclass(frozen=True)
class Injury:
    """A damaged label map, the bones whose masks changed, and what was done in words."""

    label_map: np.ndarray
    damaged: frozenset[str]
    description: str


def _id(bone: str) -> int:
    return default_schema()[bone].id


def _box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``pad`` voxels (clipped to the volume): distance work stays local."""
    found = ndimage.find_objects(mask.astype(np.uint8))
    if not found:
        raise ValueError("the bone is not in the label map")
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(found[0], mask.shape))


def _present(label_map: np.ndarray, bone: str) -> np.ndarray:
    mask = label_map == _id(bone)
    if not mask.any():
        raise ValueError(f"{bone} is not in the label map: nothing to damage")
    return mask


def erode(label_map: np.ndarray, bone: str, voxels: int) -> Injury:
    """Peel ``voxels`` voxels (Euclidean, in voxel units) off the bone's surface; the volume's faces do not erode."""
    mask = _present(label_map, bone)
    box = _box(mask, 1)
    inner = ndimage.distance_transform_edt(mask[box]) > voxels
    out = label_map.copy()
    out[box][mask[box] & ~inner] = 0
    return Injury(out, frozenset({bone}), f"{bone} eroded by {voxels} voxels")


def dilate(label_map: np.ndarray, bone: str, voxels: int) -> Injury:
    """Grow the bone by ``voxels`` voxels (Euclidean, in voxel units), only into background: neighbours keep theirs."""
    mask = _present(label_map, bone)
    box = _box(mask, voxels)
    near = ndimage.distance_transform_edt(~mask[box]) <= voxels
    out = label_map.copy()
    out[box][near & (label_map[box] == 0)] = _id(bone)
    return Injury(out, frozenset({bone}), f"{bone} dilated by {voxels} voxels into background")


def voxel_shift(mm: float, affine: np.ndarray, axis: str) -> tuple[int, int, float]:
    """The array axis that runs along patient ``axis``, the whole voxels nearest to ``mm`` along it, and their mm.

    Returns (array axis, signed voxel steps, actual signed shift in mm); the grid
    must have one array axis along each patient axis (an axial, coronal or sagittal series).
    """
    if axis not in PATIENT_AXES:
        raise ValueError(f"patient axis must be one of {PATIENT_AXES!r}, got {axis!r}")
    columns = np.asarray(affine, dtype=float)[:3, :3]
    row = columns[PATIENT_AXES.index(axis)]
    array_axis = int(np.argmax(np.abs(row)))
    spacing = float(np.linalg.norm(columns[:, array_axis]))
    if not np.isclose(abs(row[array_axis]), spacing):
        raise ValueError(f"no array axis runs along patient {axis}: the grid is oblique")
    steps = int(np.rint(mm / row[array_axis]))
    return array_axis, steps, steps * float(row[array_axis])


def shift(label_map: np.ndarray, bone: str, mm: float, affine: np.ndarray, axis: str = "z") -> Injury:
    """Move the bone by ``mm`` along patient ``axis`` (rounded to whole voxels), into background only.

    The description states the shift actually made; ``voxel_shift`` gives it as numbers.
    """
    mask = _present(label_map, bone)
    array_axis, steps, actual = voxel_shift(mm, affine, axis)
    if steps == 0:
        raise ValueError(f"a shift of {mm} mm along {axis} rounds to no voxel on this grid")
    offset = [0, 0, 0]
    offset[array_axis] = steps
    moved = translate(mask, offset)
    out = label_map.copy()
    out[mask] = 0
    out[moved & (out == 0)] = _id(bone)
    return Injury(out, frozenset({bone}), f"{bone} moved {actual:+g} mm along {axis} (asked {mm:+g} mm)")


def delete(label_map: np.ndarray, bone: str) -> Injury:
    """The bone is missed entirely."""
    mask = _present(label_map, bone)
    out = label_map.copy()
    out[mask] = 0
    return Injury(out, frozenset({bone}), f"{bone} deleted")


def swap(label_map: np.ndarray, bone_a: str, bone_b: str) -> Injury:
    """Two bones exchange labels (neighbouring vertebrae or ribs mixed up)."""
    a, b = _present(label_map, bone_a), _present(label_map, bone_b)
    out = label_map.copy()
    out[a], out[b] = _id(bone_b), _id(bone_a)
    return Injury(out, frozenset({bone_a, bone_b}), f"{bone_a} and {bone_b} swapped")


def swap_sides(label_map: np.ndarray, bones: Sequence[str]) -> Injury:
    """Left and right exchanged for every bone of ``bones`` and its mirror twin (e.g. all ribs labelled on the wrong side)."""
    schema = default_schema()
    out = label_map.copy()
    damaged = set()
    for bone in bones:
        structure = schema[bone]
        if structure.laterality != "left":
            continue
        twin = schema.find_by_code(structure.type, "right")
        if twin is None:
            raise ValueError(f"{bone} has no right-side twin in the schema")
        left, right = label_map == structure.id, label_map == twin.id
        out[left], out[right] = twin.id, structure.id
        damaged |= {bone, twin.name}
    if not damaged:
        raise ValueError(f"no left-sided bone among {list(bones)}")
    return Injury(out, frozenset(damaged), f"left and right swapped for {len(damaged) // 2} pair(s)")


def level_after(bone: str, by: int) -> str:
    """The vertebra (or same-side rib) ``by`` levels below ``bone`` in schema order (negative: above)."""
    schema = default_schema()
    target_id = schema[bone].id + by
    target = schema[target_id].name if target_id in schema else None
    same_kind = target is not None and (
        (levels.is_vertebra(bone) and levels.is_vertebra(target))
        or (levels.is_rib(bone) and levels.is_rib(target) and bone.rsplit("_", 1)[0] == target.rsplit("_", 1)[0])
    )
    if not same_kind:
        raise ValueError(f"{bone} has no vertebra or same-side rib {by:+d} level(s) away")
    return target


def shift_levels(label_map: np.ndarray, bones: Sequence[str], by: int = 1) -> Injury:
    """A whole run labelled ``by`` levels off: each bone of the consecutive run takes the label ``by`` levels below it.

    ``bones`` is an ordered run of consecutive vertebrae (or same-side ribs). The
    damaged bones are the run and the labels it now uses (e.g. T12, L1, L2 -> L1, L2, L3).
    """
    ids = [_id(b) for b in bones]
    if not bones or any(b - a != 1 for a, b in zip(ids, ids[1:])):
        raise ValueError(f"shift_levels needs an ordered run of consecutive levels, got {list(bones)}")
    targets = [level_after(b, by) for b in bones]
    masks = [_present(label_map, b) for b in bones]
    out = label_map.copy()
    for mask, target in zip(masks, targets):
        out[mask] = _id(target)
    return Injury(out, frozenset(bones) | frozenset(targets), f"{', '.join(bones)} labelled {by:+d} level(s) off")


def translate(label_map: np.ndarray, voxels: Sequence[int]) -> np.ndarray:
    """The whole map moved by whole voxels per array axis (what a small registration offset does); 0 fills in."""
    source = tuple(slice(0, -step) if step > 0 else slice(-step, None) for step in voxels)
    target = tuple(slice(step, None) if step > 0 else slice(0, step or None) for step in voxels)
    out = np.zeros_like(label_map)
    out[target] = label_map[source]
    return out


def boundary_noise(label_map: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Voxels on a label boundary take a 6-neighbour's label with probability ``share`` per face.

    Boundary jitter of the kind two models or two augmented runs disagree on: bone
    voxels next to background drop out, background next to bone joins it, and
    neighbouring bones trade voxels. Seeded, so reruns give the same map.
    """
    rng = np.random.default_rng(seed)
    out = label_map.copy()
    for axis in range(3):
        for step in (1, -1):
            here = [slice(None)] * 3
            there = [slice(None)] * 3
            here[axis], there[axis] = (slice(0, -1), slice(1, None)) if step > 0 else (slice(1, None), slice(0, -1))
            mine, theirs = label_map[tuple(here)], label_map[tuple(there)]
            chosen = mine != theirs
            chosen[chosen] = rng.random(int(np.count_nonzero(chosen))) < share
            out[tuple(here)][chosen] = theirs[chosen]
    return out
