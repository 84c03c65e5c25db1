"""What the BoneHubReview Slicer module decides, kept free of Slicer so that pytest can check it.

Reads the folder ``bonehub review export`` writes (``worklist``: ``worklist.json``,
``<series_uid>/<bone>/item.json``), plans how an item's ROI CT and mask are loaded (``loading``: the
exported NRRD files, or the ROI DICOM series from a DICOMweb store), and writes the reviewer's
correction (``corrected.nrrd`` + ``correction.json``) that ``bonehub review import`` reads, but only
after checking that the label map lies on the ROI grid (``geometry``, ``nrrd``) and holds one label:
that last step, Accept, is here. This module is the one namespace ``BoneHubReview.py`` and ``scene.py``
call, so it also offers the names of its sibling modules (``verdicts``: Accept as is, Reject, Missing).
Standard library and numpy only: both exist in 3D Slicer's Python.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .formats import (
    CORRECTED_FILE,
    CORRECTION_FILE,
    CORRECTION_FORMAT,
    ITEM_FILE,
    ITEM_FORMAT,
    PARTIAL_FILE,
    VERDICT_FILE,
    VERDICT_FORMAT,
    WORKLIST_FILE,
    WORKLIST_FORMAT,
    ReviewError,
    atomic_write_text,
    checked_reviewer,
    utc_now,
)
from .geometry import GEOMETRY_TOLERANCE_MM, Grid, grid_mismatch, ijk_to_ras, roi_grid
from .loading import (
    DicomWebRequest,
    LoadPlan,
    SeriesRef,
    auth_headers,
    check_dicomweb,
    dicomweb_request,
    normalize_endpoint,
    normalize_token,
    plan_load,
    reference_grid,
)
from .nrrd import NrrdHeader, nrrd_grid, read_nrrd_array, read_nrrd_header
from .verdicts import ACCEPTED, MISSING, REJECTED, VERDICT_TOOL, verdict_state, write_missing, write_verdict
from .worklist import (
    CORRECTED,
    EXPORTED,
    PENDING,
    TABLE_COLUMNS,
    ItemStatus,
    WorklistEntry,
    bone_label,
    find_worklist,
    item_folder,
    item_state,
    list_items,
    next_item_id,
    read_item,
    read_worklist,
    table_row,
)

__all__ = [
    "WORKLIST_FORMAT",
    "ITEM_FORMAT",
    "CORRECTION_FORMAT",
    "VERDICT_FORMAT",
    "VERDICT_FILE",
    "ACCEPTED",
    "REJECTED",
    "MISSING",
    "VERDICT_TOOL",
    "write_verdict",
    "write_missing",
    "verdict_state",
    "WORKLIST_FILE",
    "ITEM_FILE",
    "CORRECTED_FILE",
    "CORRECTION_FILE",
    "PARTIAL_FILE",
    "PENDING",
    "EXPORTED",
    "CORRECTED",
    "TOOL_BY_METHOD",
    "GEOMETRY_TOLERANCE_MM",
    "TABLE_COLUMNS",
    "ReviewError",
    "WorklistEntry",
    "ItemStatus",
    "find_worklist",
    "read_worklist",
    "item_folder",
    "item_state",
    "list_items",
    "next_item_id",
    "table_row",
    "read_item",
    "bone_label",
    "Grid",
    "roi_grid",
    "grid_mismatch",
    "ijk_to_ras",
    "NrrdHeader",
    "read_nrrd_header",
    "nrrd_grid",
    "read_nrrd_array",
    "SeriesRef",
    "DicomWebRequest",
    "LoadPlan",
    "normalize_endpoint",
    "normalize_token",
    "auth_headers",
    "dicomweb_request",
    "plan_load",
    "reference_grid",
    "check_dicomweb",
    "utc_now",
    "atomic_write_text",
    "validate_corrected_labelmap",
    "write_correction",
    "finalize_correction",
]

TOOL_BY_METHOD = {"semiautomatic": "SlicerNNInteractive", "manual": "3D Slicer Segment Editor"}


def _reviewer(name: str) -> str:
    return checked_reviewer(name, "Accept")


def _method(method: str) -> str:
    if method not in TOOL_BY_METHOD:
        raise ReviewError(f"method {method!r} is not one of {sorted(TOOL_BY_METHOD)}")
    return method


def validate_corrected_labelmap(path: str | os.PathLike, item: dict) -> tuple[int, int]:
    """(label, voxel count) of a saved correction; refused unless on the ROI grid with exactly one label."""
    path = Path(path)
    header = read_nrrd_header(path)
    mismatch = grid_mismatch(nrrd_grid(header), roi_grid(item))
    if mismatch:
        raise ReviewError(f"the saved label map is not on the ROI grid: {mismatch}; "
                          "export the segment with the ROI CT as reference geometry")
    data = read_nrrd_array(header)
    if not np.issubdtype(data.dtype, np.integer):
        raise ReviewError(f"{path.name}: voxel type {data.dtype} is not a label map (integers)")
    labels, counts = np.unique(data, return_counts=True)
    nonzero = labels != 0
    if not nonzero.any():
        raise ReviewError("the corrected segment is empty; nothing was saved")
    if nonzero.sum() > 1:
        raise ReviewError(f"the label map holds {int(nonzero.sum())} labels {labels[nonzero].tolist()}; "
                          "a correction holds exactly one (the bone)")
    return int(labels[nonzero][0]), int(counts[nonzero][0])


def write_correction(folder: Path, item: dict, reviewer: str, method: str, saved_at: str | None = None) -> Path:
    """``correction.json`` for ``bonehub review import``, written atomically."""
    record = {
        "format": CORRECTION_FORMAT,
        "item_id": item["item_id"],
        "reviewer": _reviewer(reviewer),
        "method": _method(method),
        "tool": TOOL_BY_METHOD[method],
        "mask": CORRECTED_FILE,
        "saved_at": saved_at or utc_now(),
    }
    path = Path(folder) / CORRECTION_FILE
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def finalize_correction(folder: Path, item: dict, saved_path: Path, reviewer: str, method: str) -> Path:
    """Check the saved label map, make it ``corrected.nrrd``, then write ``correction.json`` (last).

    The old correction.json goes first, so a correction.json on disk always names a complete,
    checked corrected.nrrd, even when a second Accept is interrupted halfway.
    """
    folder = Path(folder)
    _reviewer(reviewer)  # refuse a missing name or method before any file changes
    _method(method)
    validate_corrected_labelmap(saved_path, item)
    (folder / CORRECTION_FILE).unlink(missing_ok=True)
    (folder / VERDICT_FILE).unlink(missing_ok=True)  # the last decision counts: a verdict saved before is replaced
    os.replace(saved_path, folder / CORRECTED_FILE)
    return write_correction(folder, item, reviewer, method)
