"""Stage 2 QC verdicts -> one Comprehensive 3D SR (TID 1500 Imaging Measurement Report) per CT series.

One measurement group per compared structure, so IDC-style tools (dcmqi,
Slicer QuantitativeReporting, IDC's BigQuery flattening) read the QC as they
read any segment measurements. A structure with a consensus segment gets a
TID 1411 group that references that segment and the CT series; one without
(absent, or present in a minority of sources) gets a plain TID 1501 group.
Which items a group holds, and their codes and units, come from
``sr_templates/qc_concepts.json`` only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from labels.schema import PRIVATE_SCHEME_DESIGNATOR, BoneSchema, Code, Structure, default_schema
from dicom_io.errors import DicomInputError
from dicom_io.provenance import derived_uid
from dicom_io.seg_writer import MANUFACTURER, SOFTWARE_VERSION
from dicom_io.segment_codes import coded, private_scheme_item
from dicom_io.uids import validate_uid

if TYPE_CHECKING:  # dicom_io does not import qc at run time (docs/architecture.md: arrows point one way)
    from qc.results import BoneResult

QC_NAME = "BoneHub QC"
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")  # BINARY/FRACTIONAL, LABELMAP


@dataclass(frozen=True)
class NumConcept:
    """A NUM item: which BoneResult field, under which code, in which unit (``scale``: field unit -> SR unit)."""

    field: str
    code: Code
    unit: Code
    scale: float = 1.0
    integer: bool = False  # a count: stored and read back as int


@dataclass(frozen=True)
class CodedItem:
    """A CODE item and its value codes, keyed by the name used in BoneResult (status, rule id)."""

    code: Code
    values: dict[str, Code]

    def value_for(self, key: str, where: str) -> Code:
        if key not in self.values:
            raise ValueError(f"{where}: {key!r} has no code for {self.code.meaning!r}; known: {sorted(self.values)}")
        return self.values[key]


@dataclass(frozen=True)
class QCConcepts:
    """The concepts of ``sr_templates/qc_concepts.json``."""

    measurements: tuple[NumConcept, ...]
    status: CodedItem
    failed_rule: CodedItem
    outlier_source: Code


def _code(entry: dict[str, str]) -> Code:
    """A JSON code; one without a scheme is the project's private scheme, whose designator lives in labels.schema."""
    return Code(entry.get("scheme", PRIVATE_SCHEME_DESIGNATOR), entry["value"], entry["meaning"])


def _num_concept(entry: dict) -> NumConcept:
    return NumConcept(entry["field"], _code(entry["code"]), _code(entry["unit"]), float(entry.get("scale", 1)), bool(entry.get("integer", False)))


def _coded_item(entry: dict) -> CodedItem:
    return CodedItem(_code(entry["code"]), {key: _code(value) for key, value in entry["values"].items()})


@cache
def qc_concepts() -> QCConcepts:
    """The packaged QC concepts, loaded once per process."""
    data = json.loads(resources.files("sr_templates").joinpath("qc_concepts.json").read_text())
    return QCConcepts(
        measurements=tuple(_num_concept(entry) for entry in data["measurements"]),
        status=_coded_item(data["status"]),
        failed_rule=_coded_item(data["failed_rule"]),
        outlier_source=_code(data["outlier_source"]["code"]),
    )


def qc_sr_uids(ct_series_uid: str) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the QC SR of a CT series: a rerun overwrites."""
    validate_uid(ct_series_uid, "CT SeriesInstanceUID")
    return derived_uid(ct_series_uid, QC_NAME, "series"), derived_uid(ct_series_uid, QC_NAME, "instance")


def write_qc_sr(
    results: Sequence[BoneResult],
    consensus_seg: Dataset,
    ct_series_uid: str,
    ct_study_uid: str,
    *,
    settings_text: str = "",
    series_number: int = 400,
    uids: tuple[str, str] | None = None,
    previous_versions: Sequence[Dataset] = (),
) -> hd.sr.Comprehensive3DSR:
    """One TID 1500 report of ``results`` (one series), referencing segments of ``consensus_seg``.

    ``settings_text`` (the QC settings that produced the verdicts) is stored as
    the algorithm parameters of every group. Patient and study come from the SEG.
    A revised report (a bone corrected in review) gets its own ``uids`` and lists
    the reports it replaces as ``previous_versions`` (Predecessor Documents).
    """
    validate_uid(ct_study_uid, "CT StudyInstanceUID")
    series_uid, sop_uid = uids or qc_sr_uids(ct_series_uid)
    _check_seg(consensus_seg, ct_series_uid, ct_study_uid)
    if not results:
        raise ValueError(f"no QC results for series {ct_series_uid}: nothing to report")
    schema = default_schema()
    algorithm = hd.sr.AlgorithmIdentification(name=QC_NAME, version=SOFTWARE_VERSION, parameters=[settings_text] if settings_text else None)
    groups = [_group(result, consensus_seg, ct_series_uid, schema, algorithm) for result in results]
    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=derived_uid(MANUFACTURER, QC_NAME, "device"), name=QC_NAME, manufacturer_name=MANUFACTURER)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(codes.DCM.Device, device)),
        procedure_reported=codes.cid100.CTUnspecifiedBodyRegion,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[consensus_seg],
        content=report,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=QC_NAME,
        software_versions=SOFTWARE_VERSION,
        coding_schemes=[private_scheme_item()],
        previous_versions=list(previous_versions) or None,
    )


def _check_seg(seg: Dataset, ct_series_uid: str, ct_study_uid: str) -> None:
    """The consensus SEG must be a SEG of this study that references this CT series."""
    where = f"consensus SEG {seg.get('SOPInstanceUID', '<no SOPInstanceUID>')}"
    if seg.get("SOPClassUID") not in SEG_SOP_CLASSES:
        raise DicomInputError(f"{where}: SOP class {seg.get('SOPClassUID')} is not a Segmentation Storage class")
    if seg.get("StudyInstanceUID") != ct_study_uid:
        raise DicomInputError(f"{where}: study {seg.get('StudyInstanceUID')} is not the CT study {ct_study_uid}")
    referenced = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])]
    if ct_series_uid not in referenced:
        raise DicomInputError(f"{where} references series {referenced}, not the CT series {ct_series_uid}")


def _group(
    result: BoneResult, seg: Dataset, ct_series_uid: str, schema: BoneSchema, algorithm: hd.sr.AlgorithmIdentification
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations:
    """The measurement group of one structure: TID 1411 on its consensus segment, else TID 1501."""
    where = f"QC result for {result.bone!r} of series {ct_series_uid}"
    if result.series_uid != ct_series_uid:
        raise ValueError(f"{where}: the result belongs to series {result.series_uid}")
    structure = schema[result.bone]
    concepts = qc_concepts()
    common = dict(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid(ct_series_uid, QC_NAME, result.bone), identifier=result.bone),
        finding_category=coded(structure.category),
        finding_type=coded(structure.type),  # rebuilt from the schema: never a SEG item with a nested modifier
        finding_sites=[_finding_site(structure)],
        algorithm_id=algorithm,
        measurements=[_measurement(concept, result, where) for concept in concepts.measurements if not math.isnan(getattr(result, concept.field))],
        qualitative_evaluations=_evaluations(result, concepts, where),
    )
    if result.consensus_segment > 0:
        _check_segment(seg, result.consensus_segment, result.bone, where)
        segment = hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=result.consensus_segment,
            source_series=hd.sr.SourceSeriesForSegmentation(ct_series_uid),
        )
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=segment, **common)
    else:
        group = hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    if result.outlier_source:  # a TEXT qualitative evaluation (TID 1501 allows it; highdicom builds CODE ones only)
        group[0].ContentSequence.append(
            hd.sr.TextContentItem(coded(concepts.outlier_source), result.outlier_source, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
        )
    return group


def _finding_site(structure: Structure) -> hd.sr.FindingSite:
    laterality = structure.modifier
    return hd.sr.FindingSite(coded(structure.type), laterality=None if laterality is None else coded(laterality))


def _measurement(concept: NumConcept, result: BoneResult, where: str) -> hd.sr.Measurement:
    raw = getattr(result, concept.field)
    if not math.isfinite(raw):
        raise ValueError(f"{where}: {concept.field} is {raw}; a metric is finite or NaN (undefined)")
    value = round(raw * concept.scale) if concept.integer else float(raw) * concept.scale  # Python numbers: highdicom refuses numpy scalars
    return hd.sr.Measurement(name=coded(concept.code), value=value, unit=coded(concept.unit))


def _evaluations(result: BoneResult, concepts: QCConcepts, where: str) -> list[hd.sr.QualitativeEvaluation]:
    """The status, then one item per failed rule id ("rule" and "rule@member" flags name the same rule)."""
    rule_ids = dict.fromkeys(flag.split("@", 1)[0] for flag in result.flags)
    pairs = [(concepts.status, result.status)] + [(concepts.failed_rule, rule) for rule in rule_ids]
    return [hd.sr.QualitativeEvaluation(coded(concept.code), coded(concept.value_for(key, where))) for concept, key in pairs]


def _check_segment(seg: Dataset, number: int, bone: str, where: str) -> None:
    """The referenced segment exists and, when it carries a tracking id, is this structure."""
    segment = next((item for item in seg.get("SegmentSequence", []) if int(item.SegmentNumber) == number), None)
    if segment is None:
        raise DicomInputError(f"{where}: consensus segment {number} is not in SEG {seg.SOPInstanceUID}")
    tracking_id = segment.get("TrackingID")
    if tracking_id and tracking_id != bone:
        raise DicomInputError(f"{where}: segment {number} of SEG {seg.SOPInstanceUID} is {tracking_id!r}")
