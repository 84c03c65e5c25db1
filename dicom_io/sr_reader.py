"""A BoneHub QC SR (``sr_writer``) -> one plain dict per measurement group, for Stage 3's worklist.

The content tree is walked directly with pydicom: highdicom's template classes
deep-copy every group and take about 3 s for a whole-skeleton report (131
groups), the walk about 0.5 s. The concepts are the same JSON the writer
uses, so reader and writer cannot drift apart. Any object that is not a
BoneHub QC report is refused with ``NotQCReportError`` rather than read as empty.
"""

from __future__ import annotations

import math
import os

import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import Comprehensive3DSRStorage

from dicom_io.errors import DicomInputError
from dicom_io.sr_writer import CodedItem, qc_concepts


class NotQCReportError(DicomInputError):
    """An object that is not a BoneHub QC Structured Report (or is damaged)."""


def read_qc_sr(sr: Dataset | str | os.PathLike) -> list[dict[str, object]]:
    """One dict per measurement group, in document order.

    Keys: bone, status, score, dice_mean, dice_min, hd95_mm, nsd, volume_ml,
    n_sources, flags (rule ids), outlier_source, consensus_segment (0 when the
    group references no segment), referenced_seg_sop_uid. A metric the SR does
    not hold is NaN, a missing text "".
    """
    ds = _load(sr)
    where = f"SR {ds.get('SOPInstanceUID', '<no SOPInstanceUID>')}"
    if _name(ds) != _key(codes.DCM.ImagingMeasurementReport):
        raise NotQCReportError(f"{where}: the document is not an Imaging Measurement Report (TID 1500), so not a BoneHub QC SR")
    containers = _children(ds, "CONTAINER", _key(codes.DCM.ImagingMeasurements))
    groups = [group for container in containers for group in _children(container, "CONTAINER", _key(codes.DCM.MeasurementGroup))]
    if not groups:
        raise NotQCReportError(f"{where}: no measurement group, so not a BoneHub QC SR")
    return [_read_group(group, where) for group in groups]


def find_content_item(sr: Dataset, value_type: str, code_value: str) -> Dataset | None:
    """The first content item anywhere in the tree with this value type and concept name code value, or None."""
    pending = list(sr.get("ContentSequence", []))
    while pending:
        item = pending.pop(0)
        concept = item.get("ConceptNameCodeSequence")
        if item.get("ValueType") == value_type and concept and concept[0].CodeValue == code_value:
            return item
        pending.extend(item.get("ContentSequence", []))
    return None


def _load(sr: Dataset | str | os.PathLike) -> Dataset:
    if not isinstance(sr, Dataset):
        try:
            sr = pydicom.dcmread(sr)
        except Exception as error:  # pydicom raises many types for unreadable files
            raise NotQCReportError(f"{sr}: not a readable DICOM file ({error})") from error
    if sr.get("SOPClassUID") != Comprehensive3DSRStorage:
        where = f"SOP instance {sr.get('SOPInstanceUID', '<no SOPInstanceUID>')}"
        raise NotQCReportError(f"{where}: SOP class {sr.get('SOPClassUID')} is not Comprehensive 3D SR, so not a BoneHub QC SR")
    return sr


def _key(code: Code | Dataset) -> tuple[str, str]:
    """(scheme, value) of a pydicom Code or a code sequence item."""
    if isinstance(code, Dataset):
        return (str(code.get("CodingSchemeDesignator", "")), str(code.get("CodeValue", "")))
    return (code.scheme_designator, code.value)


def _name(item: Dataset) -> tuple[str, str] | None:
    names = item.get("ConceptNameCodeSequence")
    return _key(names[0]) if names else None


def _children(item: Dataset, value_type: str, name: tuple[str, str]) -> list[Dataset]:
    return [c for c in item.get("ContentSequence", []) if c.get("ValueType") == value_type and _name(c) == name]


def _read_group(group: Dataset, where: str) -> dict[str, object]:
    concepts = qc_concepts()
    tracking = [str(c.TextValue) for c in _children(group, "TEXT", _key(codes.DCM.TrackingIdentifier))]
    if not tracking:
        raise NotQCReportError(f"{where}: a measurement group has no tracking identifier, so it names no bone")
    bone = tracking[0]
    where = f"{where}, group {bone!r}"
    statuses = _decode(concepts.status, group, where)
    if len(statuses) != 1:
        raise NotQCReportError(f"{where}: {len(statuses)} '{concepts.status.code.meaning}' items (expected 1), so not a BoneHub QC SR")
    texts = [str(c.TextValue) for c in _children(group, "TEXT", concepts.outlier_source.key)]
    segments = [c.ReferencedSOPSequence[0] for c in _children(group, "IMAGE", _key(codes.DCM.ReferencedSegment))]
    return {
        "bone": bone,
        "status": statuses[0],
        **_measurements(group, where),
        "flags": tuple(_decode(concepts.failed_rule, group, where)),
        "outlier_source": texts[0] if texts else "",
        "consensus_segment": int(segments[0].ReferencedSegmentNumber) if segments else 0,
        "referenced_seg_sop_uid": str(segments[0].ReferencedSOPInstanceUID) if segments else "",
    }


def _decode(item: CodedItem, group: Dataset, where: str) -> list[str]:
    """The BoneResult names (status, rule ids) of the values of one CODE concept, in document order."""
    names = {code.key: name for name, code in item.values.items()}
    found = [c.ConceptCodeSequence[0] for c in _children(group, "CODE", item.code.key)]
    unknown = [f"{_key(c)} {c.get('CodeMeaning', '')!r}" for c in found if _key(c) not in names]
    if unknown:
        raise NotQCReportError(f"{where}: unknown value(s) for '{item.code.meaning}': {unknown}")
    return [names[_key(c)] for c in found]


def _measurements(group: Dataset, where: str) -> dict[str, float | int]:
    """Each NUM concept's value in the BoneResult unit (NaN when absent); the unit must be the concept's."""
    values: dict[str, float | int] = {}
    for concept in qc_concepts().measurements:
        found = [c.MeasuredValueSequence[0] for c in _children(group, "NUM", concept.code.key) if c.get("MeasuredValueSequence")]
        if not found:
            values[concept.field] = math.nan
            continue
        measured = found[0]
        unit = measured.MeasurementUnitsCodeSequence[0]
        if _key(unit) != concept.unit.key:
            raise NotQCReportError(f"{where}: '{concept.code.meaning}' is in {unit.CodeValue}, expected {concept.unit.value}")
        value = float(measured.get("FloatingPointValue", measured.NumericValue)) / concept.scale
        values[concept.field] = round(value) if concept.integer else value
    return values
