"""One worklist item → a folder 3D Slicer opens directly: the ROI as a DICOM CT series and a SEG, and as NRRD.

The ROI is the box around the union of every source's mask of the structure
(and the current consensus), plus a margin, clipped to the volume. The ROI CT
is a derived series of the same study and frame of reference with new UIDs
(derived from the source series, the structure and the box, so exporting again
gives the same series); each slice references its source slice. ``item.json``
records the box, the grid and a digest of the structure in the current
consensus, which is how ``bonehub review import`` knows a correction still
applies to what is stored.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import pydicom

from dicom_io.geometry import same_grid
from dicom_io.provenance import SegmentationSource, derived_uid
from dicom_io.stores import Store, open_store
from labels.schema import BoneSchema, Structure, default_schema
from qc.boxes import Box
from review.series import SeriesLoader
from review.roi import box_to_json, mask_digest, roi_box
from review.state import (ReviewInputError, ReviewPlace, SegRef, StaleItemError, corrections, head, qc_tables,
                          safe_name, series_row)
from review.worklist import WorklistItem

log = logging.getLogger("bonehub.review")

ITEM_FORMAT = "bonehub-review-item/1"
ITEM_FILE = "item.json"
DEFAULT_MARGIN_MM = 10.0
ROI_SERIES_NUMBER = 900
FILES = {"ct": "ct_roi.nrrd", "mask": "mask_roi.nrrd", "ct_dicom": "dicom/ct", "seg_dicom": "dicom/roi_seg.dcm"}


def owned_ids(structure: Structure, schema: BoneSchema) -> list[int]:
    """Ids that count as this structure in a label map: itself and every structure under it."""
    return [structure.id, *(s.id for s in schema.descendants(structure.name))]


def export_item(place: ReviewPlace, item: WorklistItem, out_dir: str | Path, *, margin_mm: float = DEFAULT_MARGIN_MM,
                mask_source: str | None = None, send_to: str | None = None, loader: SeriesLoader | None = None) -> Path:
    """Write the item's folder under ``out_dir`` (and its DICOM to ``send_to``); returns the folder."""
    loader = loader or SeriesLoader(place)
    schema = default_schema()
    structure = _structure(item, schema)
    table, series_table = qc_tables(place)
    log_table = corrections(place)
    _check_current(item, table, log_table)
    seg_ref, _ = head(series_row(series_table, item.series_uid), log_table)

    ct = loader.ct(item.series_uid, item.study_uid)
    members, label_maps = loader.members(item.series_uid, item.study_uid)
    consensus = loader.label_map(seg_ref, ct)

    ids = owned_ids(structure, schema)
    masks = {m.name: np.isin(label_map, ids) for m, label_map in zip(members, label_maps)}
    current = np.isin(consensus, ids)
    try:
        box = roi_box([*masks.values(), current], ct.volume.spacing, margin_mm)
    except ValueError as error:
        raise StaleItemError(f"{item.item_id}: {error}") from None
    if mask_source is None:
        start, start_name = current, "consensus"
    elif mask_source in masks:
        start, start_name = masks[mask_source], mask_source
    else:
        raise ReviewInputError(f"{item.item_id}: no source named {mask_source!r}; the series has {sorted(masks)}")

    folder = Path(out_dir) / safe_name(item.series_uid, "series UID") / safe_name(item.bone, "structure name")
    written = _write_roi(folder, ct, box, start[box], structure, item, start_name)
    record = _item_record(item, structure, start_name, box, written, seg_ref, mask_digest(current[box]), send_to)
    record["ct_grid"] = {"shape": list(ct.volume.spatial_shape), "affine": ct.volume.affine.tolist()}
    if send_to:
        _send(written, open_store(send_to))
    partial = folder / f"{ITEM_FILE}.partial"
    partial.write_text(json.dumps(record, indent=1))
    partial.replace(folder / ITEM_FILE)
    log.info("%s: exported ROI %s to %s", item.item_id, box_to_json(box), folder)
    return folder


def _structure(item: WorklistItem, schema: BoneSchema) -> Structure:
    if item.bone not in schema:
        raise ReviewInputError(f"{item.item_id}: {item.bone!r} is not a structure of the bone schema")
    return schema[item.bone]


def _check_current(item: WorklistItem, table, log_table) -> None:
    """The item must still be what QC says now: under review and not decided on since (corrected or a verdict)."""
    rows = table[(table["series_uid"] == item.series_uid) & (table["bone"] == item.bone)]
    if rows.empty:
        raise StaleItemError(f"{item.item_id}: not in the current QC results (QC was rerun?); make a new worklist")
    if rows.iloc[-1]["status"] != "review":
        raise StaleItemError(f"{item.item_id}: QC now says {rows.iloc[-1]['status']!r}, not review; make a new worklist")
    done = log_table[(log_table["series_uid"] == item.series_uid) & (log_table["bone"] == item.bone)]
    if len(done):
        last = done.iloc[-1]
        raise StaleItemError(f"{item.item_id}: already {last['verdict']} by {last['reviewer']} at {last['imported_at']} "
                             f"(SEG {last['seg_sop_uid']}, SR {last['sr_sop_uid']}); make a new worklist")


def _write_roi(folder: Path, ct, box: Box, start: np.ndarray, structure: Structure, item: WorklistItem,
               start_name: str) -> dict[str, object]:
    """The ROI CT (DICOM + NRRD) and the start mask (SEG + NRRD); returns their UIDs."""
    from dicom_io.ct_series import read_ct_series
    from dicom_io.ct_writer import write_ct_series
    from dicom_io.label_images import write_label_image
    from dicom_io.seg_writer import SOFTWARE_VERSION, EmptySegmentationError, write_seg

    roi = ct.volume[box]
    first = ct.datasets[0]
    series_uid = derived_uid(ct.series_instance_uid, item.bone, json.dumps(box_to_json(box)), "roi ct")
    ct_folder = folder / FILES["ct_dicom"]
    for stale in ct_folder.glob("*.dcm"):  # a re-export replaces the series whole
        stale.unlink()
    write_ct_series(
        roi, ct_folder, study_instance_uid=ct.study_instance_uid, series_instance_uid=series_uid,
        frame_of_reference_uid=ct.frame_of_reference_uid, patient_name=str(first.get("PatientName", "")),
        patient_id=str(first.get("PatientID", "")), study_date=str(first.get("StudyDate", "")),
        study_time=str(first.get("StudyTime", "")), series_number=ROI_SERIES_NUMBER, source_series=ct.datasets,
        series_description=f"BoneHub ROI {item.bone}"[:64],
    )
    roi_ct = read_ct_series(ct_folder, series_uid)
    if not same_grid(roi_ct.volume, roi):
        raise RuntimeError(f"{item.item_id}: the ROI CT series does not read back on the ROI grid")  # a writer bug, never input
    write_label_image(roi.with_array(np.asarray(roi.array).round().astype(np.int16)), folder / FILES["ct"])
    write_label_image(roi.with_array(start.astype(np.uint8)), folder / FILES["mask"])

    seg_path = folder / FILES["seg_dicom"]
    seg_path.unlink(missing_ok=True)
    source = SegmentationSource(f"BoneHub ROI {start_name}", SOFTWARE_VERSION)
    try:  # BINARY: 3D Slicer's SEG reader (dcmqi) and OHIF both load it; the ROI is small
        seg = write_seg(start.astype(np.uint16) * structure.id, roi_ct, source, seg_type="binary", series_number=ROI_SERIES_NUMBER + 1)
    except EmptySegmentationError:  # the chosen source has nothing here: the reviewer starts from an empty mask
        return {"roi_ct": roi_ct, "seg": None, "folder": folder}
    seg.save_as(seg_path, enforce_file_format=True)
    return {"roi_ct": roi_ct, "seg": seg, "folder": folder}


def _item_record(item: WorklistItem, structure: Structure, start_name: str, box: Box, written: dict, base: SegRef,
                 digest: str, send_to: str | None) -> dict[str, object]:
    roi_ct, seg = written["roi_ct"], written["seg"]
    return item.as_json() | {
        "format": ITEM_FORMAT,
        "bone_meaning": structure.display_name,
        "mask_source": start_name,
        "roi": box_to_json(box) | {"shape": list(roi_ct.volume.spatial_shape), "affine": roi_ct.volume.affine.tolist()},
        "roi_ct": {"study_uid": roi_ct.study_instance_uid, "series_uid": roi_ct.series_instance_uid,
                   "frame_of_reference_uid": roi_ct.frame_of_reference_uid},
        "roi_seg": None if seg is None else {"study_uid": str(seg.StudyInstanceUID), "series_uid": str(seg.SeriesInstanceUID),
                                             "sop_uid": str(seg.SOPInstanceUID)},
        "base": {"study_uid": base.study_uid, "series_uid": base.series_uid, "sop_uid": base.sop_uid, "digest": digest},
        "store": send_to or "",
        "files": dict(FILES) | ({} if seg is not None else {"seg_dicom": None}),
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _send(written: dict, store: Store) -> None:
    """The ROI CT series and SEG into a store (e.g. the DICOMweb server reviewers' Slicer talks to)."""
    instances = [pydicom.dcmread(path) for path in sorted((written["folder"] / FILES["ct_dicom"]).glob("*.dcm"))]
    store.put_many(instances + ([written["seg"]] if written["seg"] is not None else []))


def read_item(folder: str | Path) -> dict:
    """``item.json`` of an exported item folder, checked for the fields import relies on."""
    path = Path(folder) / ITEM_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReviewInputError(f"{path}: not a readable review item ({error})") from None
    if not isinstance(record, dict) or record.get("format") != ITEM_FORMAT:
        raise ReviewInputError(f"{path}: not a {ITEM_FORMAT} file")
    missing = [k for k in ("series_uid", "study_uid", "bone", "roi", "roi_ct", "base", "ct_grid") if k not in record]
    if missing:
        raise ReviewInputError(f"{path}: missing {missing}")
    return record
