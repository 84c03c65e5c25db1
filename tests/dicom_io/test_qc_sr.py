"""QC SR (TID 1500): valid IOD (dciodvfy), read alike by dcmqi and by us, deterministic, refuses other SRs."""

import json
import math
import subprocess
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from dicom_io.provenance import SegmentationSource
from dicom_io.seg_writer import write_seg
from dicom_io.sr_reader import NotQCReportError, read_qc_sr
from dicom_io.sr_writer import qc_concepts, write_qc_sr
from labels.schema import PRIVATE_SCHEME_DESIGNATOR
from qc.results import STATUSES, BoneResult
from tests.support.dciodvfy import errors_reported

FULL = "seg_totalsegmentator_v2_full.nii.gz"
SETTINGS = "score threshold 0.7; NSD tolerance 2 mm"
# The 2022 dciodvfy does not know Label Map Segmentation Storage (66.7), so it calls every reference to one wrong.
DCIODVFY_LABELMAP_ERROR = "Error - Shall not be present for Referenced SOP Class that is not segmentation - attribute <ReferencedSegmentNumber>"


@pytest.fixture(scope="module", params=["labelmap", "binary"])
def consensus_seg(request, sample_ct, sample_schema_maps) -> hd.seg.Segmentation:
    return write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("BoneHub consensus", "0.1.0"), seg_type=request.param)


def _segment_numbers(seg) -> dict[str, int]:
    return {str(s.TrackingID): int(s.SegmentNumber) for s in seg.SegmentSequence if "TrackingID" in s}


@pytest.fixture(scope="module")
def results(consensus_seg, sample_ct) -> list[BoneResult]:
    """One result per case the SR must carry; metrics are numpy scalars with many digits, as Stage 2 makes them."""
    numbers = _segment_numbers(consensus_seg)
    rng = np.random.default_rng(7)
    members = ("TotalSegmentator total 2.5.0", "MOOSE clin_ct_vertebrae 3.0.0", "TotalSegmentator total 2.5.0 [rotate(5,0,0)]")

    def result(bone, status, segment, **changes) -> BoneResult:
        dice_mean, dice_min, hd95, assd, nsd, spread, volume, cv, score = rng.random(9) * [1, 1, 9, 3, 1, 5, 80, 1, 1]
        base = BoneResult(
            sample_ct.series_instance_uid, sample_ct.study_instance_uid, bone, "bone", members, 3, 3,
            dice_mean, dice_min, hd95, assd, nsd, spread, volume, cv, score, status, (), "", (0.9, 0.8, 0.7), segment,
        )
        return replace(base, **changes)

    nan = math.nan
    return [
        result("rib_left_7", "review", numbers["rib_left_7"], outlier_source=members[1],
               flags=(f"wrong_side@{members[1]}", "too_small", f"wrong_side@{members[2]}")),
        result("vertebra_L1", "accept", numbers["vertebra_L1"]),
        result("vertebra_L2", "review", numbers["vertebra_L2"], hd95_mm=nan, assd_mm=nan, flags=("fov_cutoff",)),
        result("vertebra_T12", "insufficient_sources", numbers["vertebra_T12"], members=members[:1], n_sources=1, n_present=1,
               dice_mean=nan, dice_min=nan, hd95_mm=nan, assd_mm=nan, nsd=nan, score=nan),
        result("femur_left", "absent", 0, n_present=0, dice_mean=nan, dice_min=nan, hd95_mm=nan, assd_mm=nan, nsd=nan, volume_ml=0.0, score=nan),
        result("vertebra_L3", "review", 0, n_present=1, flags=("presence",), outlier_source=members[0]),
    ]


@pytest.fixture(scope="module")
def sr_path(results, consensus_seg, sample_ct, tmp_path_factory) -> Path:
    sr = write_qc_sr(results, consensus_seg, sample_ct.series_instance_uid, sample_ct.study_instance_uid, settings_text=SETTINGS)
    path = tmp_path_factory.mktemp("qc_sr") / "qc_sr.dcm"
    sr.save_as(path)
    return path


def _expected(result: BoneResult) -> dict[str, object]:
    """What read_qc_sr must return for ``result``."""
    row = {c.field: getattr(result, c.field) for c in qc_concepts().measurements}
    row.update(
        bone=result.bone, status=result.status, flags=tuple(dict.fromkeys(f.split("@")[0] for f in result.flags)),
        outlier_source=result.outlier_source, consensus_segment=result.consensus_segment,
    )
    return row


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def test_read_qc_sr_round_trips_every_value(sr_path, results, consensus_seg):
    rows = {row["bone"]: row for row in read_qc_sr(sr_path)}
    assert list(rows) == [r.bone for r in results]  # document order is the writer's order
    for result in results:
        row = rows[result.bone]
        for key, value in _expected(result).items():
            assert _same(row[key], value), f"{result.bone}.{key}: read {row[key]!r}, wrote {value!r}"
        assert row["referenced_seg_sop_uid"] == (consensus_seg.SOPInstanceUID if result.consensus_segment else "")
    assert rows["rib_left_7"]["flags"] == ("wrong_side", "too_small")
    assert isinstance(rows["rib_left_7"]["n_sources"], int)


def test_highdicom_srread_parses_it_and_the_reader_takes_the_parsed_object(sr_path, results):
    sr = hd.sr.srread(sr_path)
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    report = sr.content
    assert len(report.get_volumetric_roi_measurement_groups()) == sum(r.consensus_segment > 0 for r in results)
    assert len(report.get_image_measurement_groups()) == sum(r.consensus_segment == 0 for r in results)
    for parsed, read in zip(read_qc_sr(sr), read_qc_sr(sr_path), strict=True):
        assert parsed.keys() == read.keys() and all(_same(parsed[k], read[k]) for k in parsed)


def test_groups_reference_the_segment_and_the_ct_series_and_carry_laterality(sr_path, sample_ct):
    report = hd.sr.srread(sr_path).content
    groups = {g.tracking_identifier: g for g in report.get_volumetric_roi_measurement_groups()}
    rib = groups["rib_left_7"]
    assert rib.referenced_segment.source_series_for_segmentation.value == sample_ct.series_instance_uid
    assert rib.referenced_segment.referenced_frame_numbers is None  # no per-frame bloat
    (site,) = rib.finding_sites
    assert (site.value.value, site.laterality.value) == ("24915002", "7771000")
    assert rib.finding_type.value == "24915002"
    assert groups["vertebra_L1"].finding_sites[0].laterality is None


def test_document_header_evidence_and_private_scheme(sr_path, consensus_seg, sample_ct):
    ds = pydicom.dcmread(sr_path)
    assert ds.StudyInstanceUID == sample_ct.study_instance_uid == consensus_seg.StudyInstanceUID
    assert (ds.PatientID, ds.PatientName) == (consensus_seg.PatientID, consensus_seg.PatientName)
    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    evidence = [item.ReferencedSOPInstanceUID for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence]
    assert evidence == [consensus_seg.SOPInstanceUID]
    assert [item.CodingSchemeDesignator for item in ds.CodingSchemeIdentificationSequence] == [PRIVATE_SCHEME_DESIGNATOR]
    assert ds.Manufacturer == "BoneHub Segmentation"


def test_rerun_gives_the_same_uids(sr_path, results, consensus_seg, sample_ct):
    again = write_qc_sr(results[::-1], consensus_seg, sample_ct.series_instance_uid, sample_ct.study_instance_uid)
    first = pydicom.dcmread(sr_path, stop_before_pixels=True)
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (first.SOPInstanceUID, first.SeriesInstanceUID)


def test_dciodvfy_finds_no_errors(sr_path, consensus_seg, results):
    errors = errors_reported(sr_path)
    if consensus_seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7":
        assert errors.count(DCIODVFY_LABELMAP_ERROR) == sum(r.consensus_segment > 0 for r in results)
        errors = [e for e in errors if e != DCIODVFY_LABELMAP_ERROR]
    assert errors == []


@pytest.fixture(scope="module")
def tid1500reader() -> Path:
    dcmqi = pytest.importorskip("dcmqi", reason="dcmqi (test extra) is not installed: no tid1500reader")
    return Path(dcmqi.__file__).parent / "bin" / "tid1500reader"


def _code(entry: dict) -> tuple[str, str]:
    return (entry["CodingSchemeDesignator"], entry["CodeValue"])


def test_dcmqi_tid1500reader_reads_the_same_values(tid1500reader, sr_path, results, consensus_seg, tmp_path):
    out = tmp_path / "sr.json"
    subprocess.run([str(tid1500reader), "--inputDICOM", str(sr_path), "--outputMetadata", str(out)], check=True, capture_output=True)
    groups = {g["TrackingIdentifier"]: g for g in json.loads(out.read_text())["Measurements"]}
    concepts = qc_concepts()
    assert sorted(groups) == sorted(r.bone for r in results)
    for result in results:
        group = groups[result.bone]
        numbers = {_code(item["quantity"]): item for item in group["measurementItems"]}
        for concept in concepts.measurements:
            value = getattr(result, concept.field)
            if math.isnan(value):
                assert concept.code.key not in numbers, f"{result.bone}: NaN {concept.field} must not be stored"
                continue
            item = numbers.pop(concept.code.key)
            assert _code(item["units"]) == concept.unit.key
            assert float(item["value"]) == pytest.approx(value * concept.scale, rel=1e-9), f"{result.bone}.{concept.field}"
        assert numbers == {}
        evaluations = [(_code(e["conceptCode"]), e["conceptValue"]) for e in group["qualitativeEvaluations"]]
        coded = [(name, _code(value)) for name, value in evaluations if isinstance(value, dict)]
        assert (concepts.status.code.key, concepts.status.values[result.status].key) in coded
        rules = [value for name, value in coded if name == concepts.failed_rule.code.key]
        assert rules == [concepts.failed_rule.values[rule].key for rule in _expected(result)["flags"]]
        texts = [value for name, value in evaluations if name == concepts.outlier_source.key]
        assert texts == ([result.outlier_source] if result.outlier_source else [])
        assert group.get("ReferencedSegment", 0) == result.consensus_segment
        assert group["measurementAlgorithmIdentification"]["AlgorithmParameters"] == [SETTINGS]
        if result.consensus_segment:
            assert group["segmentationSOPInstanceUID"] == consensus_seg.SOPInstanceUID
    assert _code(groups["rib_left_7"]["Laterality"]) == ("SCT", "7771000")


@pytest.mark.parametrize("name", ["sr_examples/sr_document.dcm", "sr_examples/sr_document_with_multiple_groups.dcm",
                                  "sr_examples/dcmqi_sr.dcm", "seg_examples/ct_image.dcm"])
def test_an_object_that_is_not_a_qc_sr_is_refused(test_data, name):
    path = test_data / name
    with pytest.raises(NotQCReportError, match="not a BoneHub QC SR"):
        read_qc_sr(path)


def test_a_status_the_concepts_do_not_know_is_refused(sr_path):
    ds = pydicom.dcmread(sr_path)
    status = qc_concepts().status.code
    (imaging,) = [item for item in ds.ContentSequence if item.ValueType == "CONTAINER"]
    for item in imaging.ContentSequence[0].ContentSequence:
        if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeValue == status.value:
            item.ConceptCodeSequence[0].CodeValue = "QC9999"
    with pytest.raises(NotQCReportError, match="unknown value.*QC9999"):
        read_qc_sr(ds)


def test_a_file_that_is_not_dicom_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not DICOM")
    with pytest.raises(NotQCReportError, match="not a readable DICOM file"):
        read_qc_sr(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: replace(r, flags=("made_up_rule@x",)), "'made_up_rule' has no code"),
        (lambda r: replace(r, consensus_segment=250), "consensus segment 250 is not in SEG"),
        (lambda r: replace(r, hd95_mm=math.inf), "hd95_mm is inf"),
        (lambda r: replace(r, series_uid="1.2.3"), "belongs to series 1.2.3"),
        (lambda r: replace(r, bone="not_a_bone"), "not a structure of the bone schema"),
    ],
    ids=["unknown-rule", "missing-segment", "inf-metric", "other-series", "unknown-bone"],
)
def test_writer_refuses_results_it_cannot_encode(results, consensus_seg, sample_ct, change, message):
    with pytest.raises((ValueError, KeyError), match=message):
        write_qc_sr([change(results[0])], consensus_seg, sample_ct.series_instance_uid, sample_ct.study_instance_uid)


def test_writer_refuses_a_seg_of_another_series_and_no_results(results, consensus_seg, sample_ct):
    with pytest.raises(ValueError, match="not the CT series"):
        write_qc_sr(results, consensus_seg, "1.2.3.4", sample_ct.study_instance_uid)
    with pytest.raises(ValueError, match="nothing to report"):
        write_qc_sr([], consensus_seg, sample_ct.series_instance_uid, sample_ct.study_instance_uid)


def test_concepts_cover_the_contract_and_invent_no_standard_code():
    concepts = qc_concepts()
    assert set(concepts.status.values) == set(STATUSES)
    assert {c.field for c in concepts.measurements} <= set(BoneResult.__dataclass_fields__)
    private = [c.code for c in concepts.measurements] + [concepts.status.code, concepts.failed_rule.code, concepts.outlier_source]
    private += [*concepts.status.values.values(), *concepts.failed_rule.values.values()]
    private = [c for c in private if c.is_private]
    assert len({c.key for c in private}) == len(private), "a private code is used twice"
    assert all(c.scheme == PRIVATE_SCHEME_DESIGNATOR and len(c.meaning) <= 64 for c in private)
    for code in [c.code for c in concepts.measurements if not c.code.is_private]:
        known = getattr(codes, code.scheme)
        assert any(getattr(known, name).value == code.value for name in known.dir(code.meaning)), f"{code} is not in pydicom's dictionary"
