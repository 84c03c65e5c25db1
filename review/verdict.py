"""A reviewer's verdict besides a correction: accepted as is, rejected (with a reason), or missing.

Stored like a correction, but with no new SEG (the mask does not change): a
revised QC SR in which the structure carries the verdict's status, replacing the
series' latest SR, and a row in the corrections log (``verdict`` column). Rules:

- accept / reject name an exported item (``EXPORT/SERIES_UID/structure``): the
  structure in the head SEG must still be what was exported, or what this item's
  own correction made of it (so a reviewer may reject their correction), else
  the item is stale;
- missing names a series and a structure that QC has no mask of (absent,
  insufficient sources without a mask, or not in the QC table): the head SEG
  must hold none of its voxels;
- the same verdict as the structure's latest one is a no-op; any other verdict
  or a correction later wins (``review.provenance``).

The Slicer module writes ``verdict.json`` into the item folder; ``bonehub review
import`` reads it there as it reads ``correction.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labels.errors import BoneHubInputError
from labels.schema import default_schema
from qc.results import ACCEPT, REVIEW
from review.export import owned_ids, read_item
from review.revision import check_fresh, head_view, revised_results, revised_sr
from review.series import SeriesLoader
from review.state import (ReviewInputError, ReviewPlace, SegRef, StaleItemError, Verdict, bone_rows, corrections, head,
                          qc_tables, record_correction, series_row)
from review.writeback import ImportOutcome

log = logging.getLogger("bonehub.review")

VERDICT_FORMAT = "bonehub-verdict/1"
VERDICT_FILE = "verdict.json"
COMMAND_TOOL = "bonehub review verdict"


@dataclass(frozen=True)
class VerdictRequest:
    """Who says what about one structure, and why (a reason is required to reject)."""

    verdict: Verdict  # given as a Verdict or its text; corrected is not a verdict here (import a mask)
    reviewer: str
    reason: str = ""
    tool: str = COMMAND_TOOL

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "verdict", Verdict(self.verdict))
        except BoneHubInputError as error:
            raise ReviewInputError(f"verdict: {error}") from None
        object.__setattr__(self, "reason", " ".join(str(self.reason or "").split()))
        if self.verdict == Verdict.CORRECTED:
            raise ReviewInputError("a correction is imported with its mask (`bonehub review import`), not as a verdict")
        if not self.reviewer.strip() or not self.reviewer.isprintable():
            raise ReviewInputError("a verdict needs the reviewer's name (one line)")
        if self.verdict == Verdict.REJECTED and not self.reason:
            raise ReviewInputError("a rejection needs a reason (why is the mask unusable?)")


def read_verdict_file(folder: str | Path, reviewer: str | None = None) -> tuple[VerdictRequest, str, str]:
    """(request, series UID, structure) of an item folder's ``verdict.json`` (as the Slicer module writes it).

    ``reviewer`` given wins over the file's. A missing structure's folder has no ``item.json``.
    """
    path = Path(folder) / VERDICT_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReviewInputError(f"{path}: not a readable verdict ({error})") from None
    if not isinstance(data, dict) or data.get("format") != VERDICT_FORMAT:
        raise ReviewInputError(f"{path}: not a {VERDICT_FORMAT} file")
    series_uid, bone = str(data.get("series_uid", "")), str(data.get("bone", ""))
    if (Path(folder).parent.name, Path(folder).name) != (series_uid, bone):
        raise ReviewInputError(f"{path}: describes {series_uid}/{bone} but lies in {Path(folder).parent.name}/"
                               f"{Path(folder).name}")
    request = VerdictRequest(str(data.get("verdict", "")), reviewer or str(data.get("reviewer", "")),
                             str(data.get("reason", "")), str(data.get("tool") or COMMAND_TOOL))
    return request, series_uid, bone


def record_item_verdict(place: ReviewPlace, folder: str | Path, request: VerdictRequest, *,
                        loader: SeriesLoader | None = None) -> ImportOutcome:
    """Accept or reject an exported item (see the module docstring)."""
    if request.verdict == Verdict.MISSING:
        raise ReviewInputError(f"{folder}: missing names a series and a structure (--series-uid, --structure), not an "
                               "exported item: an exported structure has a mask")
    loader = loader or SeriesLoader(place)
    record = read_item(folder)
    series_uid, bone = record["series_uid"], record["bone"]
    log_table = corrections(place)
    if (earlier := _same_as_latest(log_table, series_uid, bone, request)) is not None:
        return earlier
    table, series_table = qc_tables(place)
    qc_row = _qc_row(table, series_uid, bone)
    if qc_row is None or qc_row["status"] not in (ACCEPT, REVIEW):
        found = "not in the current QC results" if qc_row is None else f"QC now says {qc_row['status']!r}"
        raise StaleItemError(f"{series_uid}/{bone}: {found} (QC was rerun?); make a new worklist")
    seg_ref, sr_ref = head(series_row(series_table, series_uid), log_table)
    view = head_view(record, seg_ref, loader)
    own = bone_rows(log_table, series_uid, bone)
    own = own[(own["verdict"] == Verdict.CORRECTED) & (own["base_digest"] == record["base"]["digest"])]
    check_fresh(view, record, seg_ref, [record["base"]["digest"], *own["roi_digest"]])
    return _store(place, loader, table, log_table, record["study_uid"], series_uid, bone, request, seg_ref, sr_ref,
                  view.label_map, qc_row, record["base"]["digest"], view.digest)


def record_missing(place: ReviewPlace, series_uid: str, structure: str, request: VerdictRequest, *,
                   loader: SeriesLoader | None = None) -> ImportOutcome:
    """Record that ``structure`` is in the image of ``series_uid`` but no source labelled it."""
    if request.verdict != Verdict.MISSING:
        raise ReviewInputError(f"{series_uid}/{structure}: only missing is given by series and structure; accept or "
                               "reject an exported item (EXPORT/SERIES_UID/structure)")
    schema = default_schema()
    if structure not in schema:
        raise ReviewInputError(f"{series_uid}/{structure}: {structure!r} is not a structure of the bone schema")
    loader = loader or SeriesLoader(place)
    log_table = corrections(place)
    table, series_table = qc_tables(place)
    series = series_row(series_table, series_uid)
    if (earlier := _same_as_latest(log_table, series_uid, structure, request)) is not None:
        return earlier
    qc_row = _qc_row(table, series_uid, structure)
    if qc_row is not None and qc_row["status"] in (ACCEPT, REVIEW):
        raise ReviewInputError(f"{series_uid}/{structure}: QC has a mask of it (status {qc_row['status']!r}); export it "
                               "and correct or reject it instead")
    seg_ref, sr_ref = head(series, log_table)
    study_uid = str(series["study_uid"])
    label_map = loader.label_map(seg_ref, loader.ct(series_uid, study_uid))
    voxels = int(np.isin(label_map, owned_ids(schema[structure], schema)).sum())
    if voxels:
        raise StaleItemError(f"{series_uid}/{structure}: the stored SEG {seg_ref.sop_uid} labels {voxels} voxels of it; "
                             "export it and correct or reject it instead")
    return _store(place, loader, table, log_table, study_uid, series_uid, structure, request, seg_ref, sr_ref, label_map,
                  qc_row, "", "")


def _qc_row(table: pd.DataFrame, series_uid: str, bone: str) -> pd.Series | None:
    rows = table[(table["series_uid"] == series_uid) & (table["bone"] == bone)]
    return rows.iloc[-1] if len(rows) else None


def _same_as_latest(log_table: pd.DataFrame, series_uid: str, bone: str, request: VerdictRequest) -> ImportOutcome | None:
    """The structure's latest log row when it already says this verdict (then nothing is written)."""
    mine = bone_rows(log_table, series_uid, bone)
    if len(mine) and mine.iloc[-1]["verdict"] == request.verdict:
        last = mine.iloc[-1]
        log.info("%s/%s: already %s by %s at %s", series_uid, bone, request.verdict, last["reviewer"], last["imported_at"])
        return ImportOutcome(last.to_dict(), already_imported=True)
    return None


def _store(place: ReviewPlace, loader: SeriesLoader, table: pd.DataFrame, log_table: pd.DataFrame, study_uid: str,
           series_uid: str, bone: str, request: VerdictRequest, seg_ref: SegRef, sr_ref: SegRef,
           label_map: np.ndarray, qc_row: pd.Series | None, base_digest: str, roi_digest: str) -> ImportOutcome:
    """The revised SR (head SEG unchanged) in the store, then the log row."""
    store = loader.store
    ct = loader.ct(series_uid, study_uid)
    row = {
        "series_uid": series_uid, "study_uid": study_uid, "bone": bone, "reviewer": request.reviewer.strip(),
        "method": "", "tool": request.tool, "policy": "", "imported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_seg_series_uid": seg_ref.series_uid, "base_seg_sop_uid": seg_ref.sop_uid, "base_digest": base_digest,
        "corrected_digest": "", "seg_series_uid": seg_ref.series_uid, "seg_sop_uid": seg_ref.sop_uid,
        "sr_series_uid": "", "sr_sop_uid": "", "added": 0, "removed": 0, "contested": 0, "taken": 0,
        "verdict": str(request.verdict), "reason": request.reason,
        "qc_status": "" if qc_row is None else str(qc_row["status"]),
        "score": float("nan") if qc_row is None else float(qc_row["score"]), "dice": float("nan"), "roi_digest": roi_digest,
    }
    with_row = pd.concat([log_table, pd.DataFrame([row])], ignore_index=True)
    results = revised_results(table, with_row, series_uid, study_uid, label_map, ct.volume.voxel_volume / 1000.0)
    seg = store.get(seg_ref.study_uid, seg_ref.series_uid, seg_ref.sop_uid)
    base_sr = store.get(sr_ref.study_uid, sr_ref.series_uid, sr_ref.sop_uid)
    key = (series_uid, sr_ref.sop_uid, bone, str(request.verdict), request.reason)
    sr = revised_sr(results, seg, ct, base_sr, key)
    store.put(sr)
    row["sr_series_uid"], row["sr_sop_uid"] = str(sr.SeriesInstanceUID), str(sr.SOPInstanceUID)
    record_correction(place, row)
    log.info("%s/%s: %s, revised SR %s", series_uid, bone, request.verdict, sr.SOPInstanceUID)
    return ImportOutcome(row, already_imported=False)
