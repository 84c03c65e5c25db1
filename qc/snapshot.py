"""One picture per bone for the QC report: the axial slice where the segmentations disagree most.

Pure numpy so a Stage 2 worker takes it next to the metrics, while the
volumes are in memory. The result is cropped to the bone (+ a margin) and kept
as float32/bool, so it stays small when Beam moves it between workers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from qc import boxes
from qc.results import BoneResult

AXIAL = "axial"  # array axis 0 of a CT series' Volume: one image per acquired slice
MARGIN_MM = 15.0  # context around a bone in the report's pictures


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Snapshot:
    """A 2-D view of one bone of one series: a CT crop and every member's mask on it."""

    series_uid: str
    bone: str
    score: float
    status: str
    outlier_source: str
    slice_axis: str  # name of the volume axis the slice is taken across
    slice_index: int  # index along that axis in the full CT volume
    crop_origin: tuple[int, int]  # (row, col) of the crop's first pixel in the full slice
    pixel_spacing: tuple[float, float]  # (row mm, col mm)
    ct: np.ndarray  # 2-D float32 HU
    masks: dict[str, np.ndarray]  # member name -> 2-D bool, same shape as ct, in the result's member order

    def __post_init__(self) -> None:
        if self.ct.ndim != 2 or self.ct.dtype != np.float32:
            raise ValueError(f"snapshot of {self.bone!r}: ct must be 2-D float32, got {self.ct.ndim}-D {self.ct.dtype}")
        for name, mask in self.masks.items():
            if mask.shape != self.ct.shape or mask.dtype != bool:
                raise ValueError(
                    f"snapshot of {self.bone!r}: mask of {name!r} must be bool {self.ct.shape}, got {mask.dtype} {mask.shape}"
                )


def take_snapshot(
    ct: np.ndarray,
    spacing: tuple[float, float, float],
    masks: Mapping[str, np.ndarray],
    result: BoneResult,
    *,
    margin_mm: float = MARGIN_MM,
) -> Snapshot | None:
    """The slice (array axis 0) with most voxels where the present members disagree, cropped around the bone.

    Where all present members agree on every voxel, the slice nearest the consensus centroid is taken.
    ``masks`` holds one bool volume per member of ``result`` (same shape as ``ct``). Returns None when
    every mask is empty: there is nothing to look at.
    """
    _check_inputs(ct, spacing, masks, result, margin_mm)
    box = boxes.masks_box(masks.values())
    if box is None:
        return None
    slices, rows, cols = box
    present = np.stack([crop for crop in (masks[name][box] for name in result.members) if crop.any()])
    slice_index = slices.start + _pick_slice(present)
    _, rows, cols = boxes.grow_box(box, (0, *margin_voxels(spacing, margin_mm)[1:]), ct.shape)
    return Snapshot(
        series_uid=result.series_uid,
        bone=result.bone,
        score=float(result.score),
        status=result.status,
        outlier_source=result.outlier_source,
        slice_axis=AXIAL,
        slice_index=slice_index,
        crop_origin=(rows.start, cols.start),
        pixel_spacing=(float(spacing[1]), float(spacing[2])),
        ct=np.array(ct[slice_index, rows, cols], dtype=np.float32),  # a copy: must not keep the volume alive
        masks={name: np.array(masks[name][slice_index, rows, cols], dtype=bool) for name in result.members},
    )


def margin_voxels(spacing: tuple[float, float, float], margin_mm: float = MARGIN_MM) -> tuple[int, int, int]:
    """The pictures' context (``MARGIN_MM`` unless given) as whole voxels along each array axis, rounded up."""
    return boxes.margin_voxels(spacing, margin_mm)


def _check_inputs(
    ct: np.ndarray, spacing: tuple[float, float, float], masks: Mapping[str, np.ndarray], result: BoneResult, margin_mm: float
) -> None:
    where = f"snapshot of {result.bone!r} in series {result.series_uid}"
    if ct.ndim != 3:
        raise ValueError(f"{where}: ct must be 3-D (slice, row, col), got shape {ct.shape}")
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"{where}: spacing must be three positive mm values, got {spacing}")
    if not (math.isfinite(margin_mm) and margin_mm >= 0):
        raise ValueError(f"{where}: margin_mm must be >= 0, got {margin_mm}")
    if set(masks) != set(result.members):
        raise ValueError(f"{where}: masks are given for {sorted(masks)}, but the result's members are {list(result.members)}")
    for name, mask in masks.items():
        if mask.dtype != bool:
            raise TypeError(f"{where}: mask of {name!r} must be bool, got {mask.dtype}")
        if mask.shape != ct.shape:
            raise ValueError(f"{where}: mask of {name!r} has shape {mask.shape}, the CT has {ct.shape}")


def _pick_slice(present: np.ndarray) -> int:
    """Index (in the crop) of the slice with most disagreement, else the non-empty slice nearest the centroid."""
    disagreement = (present.any(axis=0) & ~present.all(axis=0)).sum(axis=(1, 2))
    if disagreement.max() > 0:
        return int(np.argmax(disagreement))
    area = present[0].sum(axis=(1, 2))  # all present members are identical here: any one is the consensus
    centroid = float(np.dot(np.arange(area.size), area) / area.sum())
    filled = np.flatnonzero(area)
    return int(filled[np.argmin(np.abs(filled - centroid))])
