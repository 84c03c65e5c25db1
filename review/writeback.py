"""A reviewer's correction → a new corrected SEG and a revised QC SR; originals untouched.

Order matters, so a bad or repeated import writes nothing:

1. read ``item.json`` and the corrected mask, and check them (``review.correction``);
2. the same correction imported before (same item, same mask) is a no-op;
3. the structure in the current head SEG must still be what was exported
   (digest), else the item is stale: QC was rerun or someone corrected it since;
4. paste into the head label map (``review.roi.paste_correction``), store the
   corrected SEG (new series; the corrected segment SEMIAUTOMATIC or MANUAL with
   the reviewer as content creator; it references the SEG it was made from),
   then the revised SR (this structure "corrected", every structure decided on
   before with its state's status, ``review.revision``; the SR it replaces is its
   predecessor), then append to the corrections log, with the Dice of the
   structure before and after (what ``bonehub review feedback`` reports).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dicom_io.provenance import SegmentationSource, derived_uid
from dicom_io.seg_writer import SOFTWARE_VERSION
from labels.coded_values import CodedValue
from labels.errors import BoneHubInputError
from results.members import CONSENSUS_NAME
from review.correction import load_corrected_mask
from review.export import read_item
from review.revision import check_fresh, head_view, revised_results, revised_sr
from review.series import SeriesLoader
from review.roi import KEEP, mask_digest, paste_correction
from review.state import (ReviewInputError, ReviewPlace, SegRef, Verdict, corrections, head, qc_tables, record_correction,
                          series_row)

log = logging.getLogger("bonehub.review")

CORRECTION_FORMAT = "bonehub-correction/1"
CORRECTION_FILE = "correction.json"
CORRECTED_NAME = "BoneHub corrected"
CORRECTED_SEG_SERIES_NUMBER = 360


class CorrectionMethod(CodedValue):
    """How a reviewer corrected; the corrected segment's Segment Algorithm Type is the text in upper case."""

    SEMIAUTOMATIC = "semiautomatic"  # an interactive AI tool
    MANUAL = "manual"


@dataclass(frozen=True)
class Reviewer:
    """Who corrected, and how (as the Slicer module's ``correction.json`` or the command line says)."""

    name: str
    method: CorrectionMethod = CorrectionMethod.SEMIAUTOMATIC  # given as a CorrectionMethod or its text
    tool: str = "SlicerNNInteractive"
    mask: str = "corrected.nrrd"

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ReviewInputError("a correction needs the reviewer's name")
        try:
            object.__setattr__(self, "method", CorrectionMethod(self.method))
        except BoneHubInputError as error:
            raise ReviewInputError(f"correction method: {error}") from None


@dataclass(frozen=True)
class ImportOutcome:
    """What an import did: the corrections-log row, and whether it was already there."""

    row: dict[str, object]
    already_imported: bool


def reviewer_from_folder(folder: str | Path, **overrides: str | None) -> Reviewer:
    """``correction.json`` of an item folder (as the Slicer module writes it), command-line values winning."""
    path = Path(folder) / CORRECTION_FILE
    values: dict[str, str] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ReviewInputError(f"{path}: not readable JSON ({error})") from None
        if data.get("format") != CORRECTION_FORMAT:
            raise ReviewInputError(f"{path}: not a {CORRECTION_FORMAT} file")
        values = {k: str(data[k]) for k in ("method", "tool", "mask") if data.get(k)}
        values["name"] = str(data.get("reviewer", ""))
    values |= {k: v for k, v in overrides.items() if v}
    if "name" not in values:
        raise ReviewInputError(f"{folder}: no {CORRECTION_FILE} and no --reviewer: who made this correction?")
    return Reviewer(**values)


def import_correction(place: ReviewPlace, folder: str | Path, reviewer: Reviewer, *, mask_path: str | Path | None = None,
                      policy: str = KEEP, loader: SeriesLoader | None = None) -> ImportOutcome:
    """Write one item's correction back (see the module docstring); returns what was done."""
    loader = loader or SeriesLoader(place)
    folder = Path(folder)
    record = read_item(folder)
    item_id = f"{record['series_uid']}/{record['bone']}"
    mask_path = Path(mask_path) if mask_path else folder / reviewer.mask
    if not mask_path.is_file():
        raise ReviewInputError(f"{item_id}: no corrected mask at {mask_path}")
    mask = load_corrected_mask(mask_path, record)
    corrected_digest = mask_digest(mask)

    log_table = corrections(place)
    earlier = log_table[(log_table["series_uid"] == record["series_uid"]) & (log_table["bone"] == record["bone"])
                        & (log_table["verdict"] == Verdict.CORRECTED) & (log_table["base_digest"] == record["base"]["digest"])
                        & (log_table["corrected_digest"] == corrected_digest)]
    if len(earlier):
        log.info("%s: this correction was imported already (SEG %s)", item_id, earlier.iloc[-1]["seg_sop_uid"])
        return ImportOutcome(earlier.iloc[-1].to_dict(), already_imported=True)

    table, series_table = qc_tables(place)
    series = series_row(series_table, record["series_uid"])
    seg_ref, sr_ref = head(series, log_table)
    store = loader.store
    ct = loader.ct(record["series_uid"], record["study_uid"])
    base_seg = store.get(seg_ref.study_uid, seg_ref.series_uid, seg_ref.sop_uid)
    view = head_view(record, seg_ref, loader)
    check_fresh(view, record, seg_ref, [record["base"]["digest"]])
    label_map, box, structure, ids = view.label_map, view.box, view.structure, view.ids

    pasted = paste_correction(label_map, box, mask, structure.id, ids, policy)
    provenance = _corrected_sources(log_table, record["series_uid"]) | {structure.name: _source(reviewer)}
    seg = _corrected_seg(pasted.label_map, ct, base_seg, seg_ref, structure.name, corrected_digest, provenance, reviewer)
    base_sr = store.get(sr_ref.study_uid, sr_ref.series_uid, sr_ref.sop_uid)
    qc_row = table[(table["series_uid"] == record["series_uid"]) & (table["bone"] == structure.name)]
    row = {
        "series_uid": record["series_uid"], "study_uid": record["study_uid"], "bone": structure.name,
        "reviewer": reviewer.name, "method": reviewer.method, "tool": reviewer.tool, "policy": policy,
        "imported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_seg_series_uid": seg_ref.series_uid, "base_seg_sop_uid": seg_ref.sop_uid,
        "base_digest": record["base"]["digest"], "corrected_digest": corrected_digest,
        "seg_series_uid": str(seg.SeriesInstanceUID), "seg_sop_uid": str(seg.SOPInstanceUID),
        "sr_series_uid": "", "sr_sop_uid": "",
        "added": pasted.added, "removed": pasted.removed, "contested": pasted.contested, "taken": pasted.taken,
        "verdict": str(Verdict.CORRECTED), "reason": "",
        "qc_status": str(qc_row.iloc[-1]["status"]) if len(qc_row) else "",
        "score": float(qc_row.iloc[-1]["score"]) if len(qc_row) else float("nan"),
        "dice": dice(np.isin(label_map, ids), np.isin(pasted.label_map, ids)),
        "roi_digest": mask_digest(np.isin(pasted.label_map[box], ids)),
    }
    with_row = pd.concat([log_table, pd.DataFrame([row])], ignore_index=True)
    results = revised_results(table, with_row, record["series_uid"], record["study_uid"], pasted.label_map,
                              ct.volume.voxel_volume / 1000.0)
    sr = revised_sr(results, seg, ct, base_sr, (ct.series_instance_uid, str(seg.SOPInstanceUID)))
    store.put(seg)
    store.put(sr)
    row["sr_series_uid"], row["sr_sop_uid"] = str(sr.SeriesInstanceUID), str(sr.SOPInstanceUID)
    record_correction(place, row)
    log.info("%s: corrected SEG %s (+%d / -%d voxels, %d contested)", item_id, seg.SOPInstanceUID, pasted.added,
             pasted.removed, pasted.contested)
    return ImportOutcome(row, already_imported=False)


def _source(reviewer: Reviewer) -> SegmentationSource:
    return SegmentationSource(reviewer.tool, "unspecified", algorithm_type=reviewer.method.upper())


def _corrected_sources(log_table: pd.DataFrame, series_uid: str) -> dict[str, SegmentationSource]:
    """Structures corrected before in this series keep their reviewer provenance in the next corrected SEG."""
    mine = log_table[(log_table["series_uid"] == series_uid) & (log_table["verdict"] == Verdict.CORRECTED)]
    return {row["bone"]: _source(Reviewer(row["reviewer"], row["method"], row["tool"])) for _, row in mine.iterrows()}


def _corrected_seg(label_map: np.ndarray, ct, base_seg: Dataset, base: SegRef, bone: str, digest: str,
                   provenance: dict[str, SegmentationSource], reviewer: Reviewer):
    """A new SEG series holding the corrected label map, made from (and referencing) ``base_seg``."""
    from dicom_io.seg_writer import write_seg

    key = (ct.series_instance_uid, base.sop_uid, bone, digest)
    seg_type = "labelmap" if "LABELMAP" in str(base_seg.get("SegmentationType", "")) else "binary"
    seg = write_seg(label_map, ct, SegmentationSource(CONSENSUS_NAME, SOFTWARE_VERSION), seg_type=seg_type,
                    series_number=CORRECTED_SEG_SERIES_NUMBER, segment_sources=provenance,
                    uids=(derived_uid(*key, "corrected seg series"), derived_uid(*key, "corrected seg instance")),
                    content_creator=reviewer.name)
    seg.SeriesDescription = f"{CORRECTED_NAME} ({bone})"[:64]
    seg.ContentLabel = "CORRECTED"
    seg.ReferencedInstanceSequence = DicomSequence([_instance_reference(base_seg)])
    return seg


def _instance_reference(ds: Dataset) -> Dataset:
    """The SEG a correction was made from (General Reference module, Referenced Instance Sequence)."""
    from pydicom.sr.codedict import codes

    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    purpose = Dataset()
    code = codes.DCM.SourceImageForImageProcessingOperation
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = code.value, code.scheme_designator, code.meaning
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    return item


def dice(before: np.ndarray, after: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty): how much a correction changed the structure."""
    total = int(before.sum()) + int(after.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(before, after).sum()) / total
