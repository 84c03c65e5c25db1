"""A reviewer's correction → a new corrected SEG and a revised QC SR; originals untouched.

Order matters, so a bad or repeated import writes nothing:

1. read ``item.json`` and the corrected mask, and check them (``review.correction``);
2. the same correction imported before (same item, same mask) is a no-op;
3. the structure in the current head SEG must still be what was exported
   (digest), else the item is stale: QC was rerun or someone corrected it since;
4. paste into the head label map (``review.roi.paste_correction``), store the
   corrected SEG (new series; the corrected segment SEMIAUTOMATIC or MANUAL with
   the reviewer as content creator; it references the SEG it was made from),
   then the revised SR (this structure "corrected"; the SR it replaces is its
   predecessor), then append to the corrections log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dicom_io.geometry import same_grid
from dicom_io.provenance import SegmentationSource, derived_uid
from dicom_io.seg_writer import SOFTWARE_VERSION
from labels.coded_values import CodedValue
from labels.errors import BoneHubInputError
from labels.schema import default_schema
from qc.results import CORRECTED, BoneResult, result_from_row
from results.members import CONSENSUS_NAME
from review.correction import grids, load_corrected_mask
from review.export import owned_ids, read_item
from review.series import SeriesLoader
from review.roi import KEEP, box_from_json, mask_digest, paste_correction
from review.state import (ReviewInputError, ReviewPlace, SegRef, StaleItemError, corrections, head, qc_tables,
                          record_correction, series_row)

log = logging.getLogger("bonehub.review")

CORRECTION_FORMAT = "bonehub-correction/1"
CORRECTION_FILE = "correction.json"
CORRECTED_NAME = "BoneHub corrected"
CORRECTED_SEG_SERIES_NUMBER, CORRECTED_SR_SERIES_NUMBER = 360, 410


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
                        & (log_table["base_digest"] == record["base"]["digest"])
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
    from dicom_io.seg_reader import read_seg

    label_map = read_seg(base_seg, ct, strict=True).volume.array
    box = box_from_json(record["roi"], ct.volume.spatial_shape)
    if not same_grid(ct.volume[box], grids(record)[0]):
        raise StaleItemError(f"{item_id}: the CT grid no longer matches the exported ROI; export the item again")
    schema = default_schema()
    structure = schema[record["bone"]]
    ids = owned_ids(structure, schema)
    if mask_digest(np.isin(label_map[box], ids)) != record["base"]["digest"]:
        raise StaleItemError(f"{item_id}: {structure.name} in the stored SEG {seg_ref.sop_uid} changed since the item was "
                             "exported (QC rerun or another correction); export it again")

    pasted = paste_correction(label_map, box, mask, structure.id, ids, policy)
    provenance = _corrected_sources(log_table, record["series_uid"]) | {structure.name: _source(reviewer)}
    seg = _corrected_seg(pasted.label_map, ct, base_seg, seg_ref, structure.name, corrected_digest, provenance, reviewer)
    base_sr = store.get(sr_ref.study_uid, sr_ref.series_uid, sr_ref.sop_uid)
    results = _revised_results(table, record["series_uid"], pasted.label_map, ct.volume.voxel_volume / 1000.0,
                               {*provenance}, schema)
    sr = _revised_sr(results, seg, ct, base_sr)
    store.put(seg)
    store.put(sr)
    row = {
        "series_uid": record["series_uid"], "study_uid": record["study_uid"], "bone": structure.name,
        "reviewer": reviewer.name, "method": reviewer.method, "tool": reviewer.tool, "policy": policy,
        "imported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_seg_series_uid": seg_ref.series_uid, "base_seg_sop_uid": seg_ref.sop_uid,
        "base_digest": record["base"]["digest"], "corrected_digest": corrected_digest,
        "seg_series_uid": str(seg.SeriesInstanceUID), "seg_sop_uid": str(seg.SOPInstanceUID),
        "sr_series_uid": str(sr.SeriesInstanceUID), "sr_sop_uid": str(sr.SOPInstanceUID),
        "added": pasted.added, "removed": pasted.removed, "contested": pasted.contested, "taken": pasted.taken,
    }
    record_correction(place, row)
    log.info("%s: corrected SEG %s (+%d / -%d voxels, %d contested)", item_id, seg.SOPInstanceUID, pasted.added,
             pasted.removed, pasted.contested)
    return ImportOutcome(row, already_imported=False)


def _source(reviewer: Reviewer) -> SegmentationSource:
    return SegmentationSource(reviewer.tool, "unspecified", algorithm_type=reviewer.method.upper())


def _corrected_sources(log_table: pd.DataFrame, series_uid: str) -> dict[str, SegmentationSource]:
    """Structures corrected before in this series keep their reviewer provenance in the next corrected SEG."""
    mine = log_table[log_table["series_uid"] == series_uid]
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


def _revised_results(table: pd.DataFrame, series_uid: str, label_map: np.ndarray, voxel_ml: float,
                     corrected: set[str], schema) -> list[BoneResult]:
    """The series' QC results with every corrected structure marked so, its volume and segment numbers renewed."""
    present = np.unique(label_map)
    numbers = {int(v): n for n, v in enumerate(present[present > 0], start=1)}
    results = []
    for _, row in table[table["series_uid"] == series_uid].iterrows():
        result = result_from_row(row)
        segment = numbers.get(schema[result.bone].id, 0)
        if result.bone in corrected:
            volume = float(np.isin(label_map, [schema[result.bone].id, *(s.id for s in schema.descendants(result.bone))]).sum()) * voxel_ml
            result = replace(result, status=CORRECTED, volume_ml=volume)
        results.append(replace(result, consensus_segment=segment))
    return results


def _revised_sr(results: list[BoneResult], seg, ct, base_sr: Dataset):
    from dicom_io.sr_writer import write_qc_sr

    key = (ct.series_instance_uid, str(seg.SOPInstanceUID))
    settings = _settings_text(base_sr)
    return write_qc_sr(results, seg, ct.series_instance_uid, ct.study_instance_uid, settings_text=settings,
                       series_number=CORRECTED_SR_SERIES_NUMBER, previous_versions=[base_sr],
                       uids=(derived_uid(*key, "revised sr series"), derived_uid(*key, "revised sr instance")))


def _settings_text(sr: Dataset) -> str:
    """The QC settings text (Algorithm Parameters, DCM 111002) of the report it replaces: the verdicts' basis."""
    from dicom_io.sr_reader import find_content_item

    item = find_content_item(sr, "TEXT", "111002")
    return "" if item is None else str(item.TextValue)
