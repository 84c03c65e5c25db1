"""A series' next revision: an item checked against the stored head, and the revised QC SR that records it.

Corrections and verdicts (``review.writeback``, ``review.verdict``) both start
from the series' head (latest corrected SEG and SR, else QC's), refuse an item
whose structure changed since it was exported, and end with a revised SR in
which every structure a reviewer decided on carries the status of its
provenance state (``review.provenance``), the rest QC's status, the SR it
replaces as its predecessor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset

from dicom_io.geometry import same_grid
from dicom_io.provenance import derived_uid
from labels.schema import Structure, default_schema
from qc.results import MISSING, BoneResult, result_from_row
from review.correction import grids
from review.export import owned_ids
from review.provenance import SR_STATUS, series_states
from review.roi import box_from_json, mask_digest
from review.series import SeriesLoader
from review.state import SegRef, StaleItemError

CORRECTED_SR_SERIES_NUMBER = 410


@dataclass(frozen=True)
class HeadView:
    """An exported item seen in the series' current head: its label map, the ROI box and the structure's digest."""

    label_map: np.ndarray
    box: tuple[slice, ...]
    structure: Structure
    ids: list[int]
    digest: str  # of the structure inside the ROI box, as ``item.json``'s base digest is


def head_view(record: dict, seg_ref: SegRef, loader: SeriesLoader) -> HeadView:
    """The head SEG's label map on the CT, with the item's ROI checked against the CT grid."""
    ct = loader.ct(record["series_uid"], record["study_uid"])
    label_map = loader.label_map(seg_ref, ct)
    box = box_from_json(record["roi"], ct.volume.spatial_shape)
    if not same_grid(ct.volume[box], grids(record)[0]):
        raise StaleItemError(f"{record['series_uid']}/{record['bone']}: the CT grid no longer matches the exported ROI; "
                             "export the item again")
    schema = default_schema()
    structure = schema[record["bone"]]
    ids = owned_ids(structure, schema)
    return HeadView(label_map, box, structure, ids, mask_digest(np.isin(label_map[box], ids)))


def check_fresh(view: HeadView, record: dict, seg_ref: SegRef, known: Iterable[str]) -> None:
    """Refuse the item unless the structure in the head is one of the ``known`` states (digests) of it."""
    if view.digest not in set(known):
        raise StaleItemError(f"{record['series_uid']}/{record['bone']}: {view.structure.name} in the stored SEG "
                             f"{seg_ref.sop_uid} changed since the item was exported (QC rerun or another correction); "
                             "export it again")


def revised_results(table: pd.DataFrame, log: pd.DataFrame, series_uid: str, study_uid: str, label_map: np.ndarray,
                    voxel_ml: float) -> list[BoneResult]:
    """The series' QC results, each structure reviewers decided on with its state's status.

    ``log`` already holds the new row. A corrected structure's volume comes from
    ``label_map`` (the head); every consensus segment number is renewed from it;
    a structure only reviewers name (missing) gets a result with no metrics.
    """
    schema = default_schema()
    present = np.unique(label_map)
    numbers = {int(v): n for n, v in enumerate(present[present > 0], start=1)}
    states = series_states(table, log, series_uid)
    rows = {row["bone"]: result_from_row(row) for _, row in table[table["series_uid"] == series_uid].iterrows()}
    corrected = set(log.loc[(log["series_uid"] == series_uid) & (log["verdict"] == "corrected"), "bone"])
    results = []
    for bone in [*rows, *(b for b in states if b not in rows)]:  # QC's order, then structures only reviewers name
        state = states[bone]
        result = rows[bone] if bone in rows else _unsegmented(series_uid, study_uid, bone)
        segment = numbers.get(schema[bone].id, 0)
        if state in SR_STATUS:
            result = replace(result, status=SR_STATUS[state])
            if bone in corrected:
                ids = [schema[bone].id, *(s.id for s in schema.descendants(bone))]
                result = replace(result, volume_ml=float(np.isin(label_map, ids).sum()) * voxel_ml)
        results.append(replace(result, consensus_segment=segment))
    return results


def _unsegmented(series_uid: str, study_uid: str, bone: str) -> BoneResult:
    """A structure no segmentation labelled (a reviewer's "missing"): no metrics, no segment."""
    nan = float("nan")
    return BoneResult(series_uid, study_uid, bone, str(default_schema()[bone].level), (), 0, 0, nan, nan, nan, nan, nan,
                      nan, 0.0, nan, nan, MISSING, (), "", ())


def revised_sr(results: list[BoneResult], seg: Dataset, ct, base_sr: Dataset, key: tuple[str, ...]):
    """The revised QC SR of ``results`` on ``seg``, replacing ``base_sr``; UIDs derived from ``key``."""
    from dicom_io.sr_reader import find_content_item
    from dicom_io.sr_writer import write_qc_sr

    item = find_content_item(base_sr, "TEXT", "111002")  # the QC settings (Algorithm Parameters): the verdicts' basis
    settings = "" if item is None else str(item.TextValue)
    return write_qc_sr(results, seg, ct.series_instance_uid, ct.study_instance_uid, settings_text=settings,
                       series_number=CORRECTED_SR_SERIES_NUMBER, previous_versions=[base_sr],
                       uids=(derived_uid(*key, "revised sr series"), derived_uid(*key, "revised sr instance")))

