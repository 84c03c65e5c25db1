"""Stage 2 end to end on the real sample: ``bonehub run`` ends with QC; ``bonehub qc`` reruns it alone.

The numbers in the QC table are checked against independent computations
(SimpleITK's overlap filter for Dice, a scipy distance transform for HD95), and
the table against the SR that dcmqi-independent highdicom parsing reads back.
"""

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from dicom_io.seg_reader import read_seg
from dicom_io.sr_reader import read_qc_sr
from dicom_io.stores import open_store
from labels.schema import default_schema
from pipeline.cli import main
from qc.comparison import ALL, model_comparison
from results.manifest import read_manifest
from tests.support.dciodvfy import errors_reported
from results.qc_shards import read_qc_table

SCHEMA = default_schema()


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    assert main(["sample", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def member_maps(sample_run, sample_ct) -> dict[str, np.ndarray]:
    """Each Stage 1 SEG decoded by the SEG reader, keyed by the member name QC uses."""
    store = open_store(sample_run / "seg")
    maps = {}
    for row in read_manifest(sample_run / "manifest.parquet").itertuples():
        seg = store.get(row.study_instance_uid, row.seg_series_instance_uid, row.seg_sop_instance_uid)
        name = f"{row.source} {row.source_version}" + ("" if row.augmentation == "none" else f" [{row.augmentation}]")
        maps[name] = read_seg(seg, sample_ct).volume.array
    return maps


def _table(out: Path) -> pd.DataFrame:
    return read_qc_table(str(out / "qc"), "qc_table")


def _sitk_dice(a: np.ndarray, b: np.ndarray) -> float:
    measures = sitk.LabelOverlapMeasuresImageFilter()
    measures.Execute(sitk.GetImageFromArray(a.astype(np.uint8)), sitk.GetImageFromArray(b.astype(np.uint8)))
    return measures.GetDiceCoefficient()


def _hd95_by_distance_transform(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """HD95 from scipy's Euclidean distance transform of the other surface on a padded crop (not a KD-tree)."""
    box = ndimage.find_objects((a | b).astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in box)
    a, b = a[box], b[box]
    surface = {id(m): m & ~ndimage.binary_erosion(m, ndimage.generate_binary_structure(3, 1)) for m in (a, b)}
    to_b = ndimage.distance_transform_edt(~surface[id(b)], sampling=spacing)[surface[id(a)]]
    to_a = ndimage.distance_transform_edt(~surface[id(a)], sampling=spacing)[surface[id(b)]]
    return max(np.percentile(to_b, 95), np.percentile(to_a, 95))


def test_run_ends_with_qc_outputs(sample_run, sample_ct):
    qc = sample_run / "qc"
    assert {p.name for p in qc.iterdir()} >= {"qc_table", "qc_series", "qc_report.html"}
    series = read_qc_table(str(qc), "qc_series")
    assert list(series.status) == ["done"] and series.sr_sop_uid[0] and series.consensus_sop_uid[0]
    table = _table(sample_run)
    assert (table.series_uid == sample_ct.series_instance_uid).all()
    assert not table.duplicated(["series_uid", "bone"]).any()
    for column in ("series_uid", "bone", "n_sources", "dice_mean", "dice_min", "hd95_mm", "nsd", "volume_ml", "score", "status", "flags", "outlier_source"):
        assert column in table.columns
    assert "<img" in (qc / "qc_report.html").read_text()


def test_model_comparison_is_written_beside_the_table(sample_run):
    stored = pd.read_parquet(sample_run / "qc" / "model_comparison.parquet")
    pd.testing.assert_frame_equal(stored, model_comparison(_table(sample_run)), check_dtype=False)
    overall = stored[stored.structure == ALL]
    assert len(overall) == 3  # the two TotalSegmentator results and the baseline, its rotated run pooled with it
    assert (overall.series == 1).all()


def test_table_numbers_match_independent_computations(sample_run, member_maps, sample_ct):
    table = _table(sample_run).set_index("bone")
    spacing = sample_ct.volume.spacing
    full, fast = member_maps["TotalSegmentator total 2 (reference output of its test suite)"], member_maps["TotalSegmentator total fast 2 (reference output of its test suite)"]
    checked = 0
    for bone, row in table.iterrows():
        if SCHEMA[bone].level != "bone" or row.n_present < 2:
            continue
        a, b = full == SCHEMA[bone].id, fast == SCHEMA[bone].id
        assert row.n_sources == 2
        assert row.dice_mean == pytest.approx(_sitk_dice(a, b), abs=1e-9), bone
        assert row.hd95_mm == pytest.approx(_hd95_by_distance_transform(a, b, spacing), abs=1e-9), bone
        assert row.volume_ml == pytest.approx(np.count_nonzero(a | b) * np.prod(spacing) / 1000), bone  # 2 members: union
        checked += 1
    assert checked >= 15  # the sample's vertebrae T11-L2, ribs 7-12 on both sides, costal cartilages

    # The baseline labels only "skeleton": compared there with every source's union of bones, pairwise over 4 members.
    skeleton = table.loc["skeleton"]
    assert skeleton.n_sources == 4
    masks = [m > 0 for m in member_maps.values()]
    dices = [_sitk_dice(a, b) for a, b in combinations(masks, 2)]
    assert skeleton.dice_mean == pytest.approx(np.mean(dices), abs=1e-9)
    assert skeleton.dice_min == pytest.approx(min(dices), abs=1e-9)


def test_sr_agrees_with_the_table(sample_run, sample_ct):
    store = open_store(sample_run / "seg")
    series = read_qc_table(str(sample_run / "qc"), "qc_series").iloc[0]
    instances = {ref.sop_uid: ref for ref in store.list_instances(study_uid=sample_ct.study_instance_uid)}
    sr = store.get(*instances[series.sr_sop_uid][:3])
    consensus = store.get(*instances[series.consensus_sop_uid][:3])
    groups = {g["bone"]: g for g in read_qc_sr(sr)}
    table = _table(sample_run).set_index("bone")
    assert set(groups) == set(table.index)
    for bone, row in table.iterrows():
        group = groups[bone]
        assert group["status"] == row.status
        for column in ("score", "dice_mean", "dice_min", "hd95_mm", "nsd", "volume_ml"):
            expected = row[column]
            if math.isnan(expected) or (column == "volume_ml" and row.consensus_segment == 0):
                continue
            assert group[column] == pytest.approx(expected, rel=1e-6, abs=1e-9), (bone, column)
        assert group["n_sources"] == row.n_sources
        assert set(group["flags"]) == {f.split("@")[0] for f in row["flags"].split(";") if f}
        if row.consensus_segment:
            assert group["referenced_seg_sop_uid"] == consensus.SOPInstanceUID
            assert group["consensus_segment"] == row.consensus_segment
    segments = {item.SegmentNumber: item.TrackingID for item in consensus.SegmentSequence if item.SegmentNumber}
    assert {bone for bone, row in table.iterrows() if row.consensus_segment} == set(segments.values())
    assert all(segments[row.consensus_segment] == bone for bone, row in table.iterrows() if row.consensus_segment)


def test_consensus_is_the_majority_of_the_sources(sample_run, member_maps, sample_ct):
    store = open_store(sample_run / "seg")
    series = read_qc_table(str(sample_run / "qc"), "qc_series").iloc[0]
    ref = next(r for r in store.list_instances(study_uid=sample_ct.study_instance_uid) if r.sop_uid == series.consensus_sop_uid)
    consensus = read_seg(store.get(*ref[:3]), sample_ct).volume.array
    full = member_maps["TotalSegmentator total 2 (reference output of its test suite)"]
    fast = member_maps["TotalSegmentator total fast 2 (reference output of its test suite)"]
    l1 = SCHEMA["vertebra_L1"].id
    union = (full == l1) | (fast == l1)  # two voters, ties count: the union
    contested = union & (full > 0) & (fast > 0) & (full != fast)  # the other source calls it another bone
    assert contested.sum() < 10
    np.testing.assert_array_equal((consensus == l1)[~contested], union[~contested])
    assert np.all((consensus[contested] == full[contested]) | (consensus[contested] == fast[contested]))


def test_qc_reruns_alone_with_new_thresholds(sample_run, capsys):
    manifest = read_manifest(sample_run / "manifest.parquet")
    stage1_segs = {Path(loc.removeprefix("file://")): None for loc in manifest.location}
    stage1_segs = {path: path.stat().st_mtime_ns for path in stage1_segs}
    before = _table(sample_run)
    args = ["qc", "--out", str(sample_run / "seg"), "--manifest", str(sample_run / "manifest.parquet"),
            "--qc-dir", str(sample_run / "qc")]
    assert main([*args, "--review-below", "0.95"]) == 0
    strict = _table(sample_run)
    assert len(strict) == len(before) and not strict.duplicated(["series_uid", "bone"]).any()
    assert (strict.status == "review").sum() > (before.status == "review").sum()
    assert "QC: 1 series done, 0 failed" in capsys.readouterr().out
    pd.testing.assert_frame_equal(read_manifest(sample_run / "manifest.parquet"), manifest)  # no model ran
    assert {path: path.stat().st_mtime_ns for path in stage1_segs} == stage1_segs  # Stage 1's SEGs untouched
    assert len(list((sample_run / "seg").rglob("*.dcm"))) == len(stage1_segs) + 2  # + one consensus SEG and one SR, replaced
    assert main(args) == 0  # back to the defaults: the same verdicts as the first run
    pd.testing.assert_frame_equal(_table(sample_run), before)


def test_binary_consensus_for_slicer_and_a_clean_dciodvfy(sample_run, sample_ct):
    """--consensus-seg-type binary: the SR then references a BINARY SEG, which the 2022 dciodvfy fully knows."""
    assert main(["qc", "--out", str(sample_run / "seg"), "--manifest", str(sample_run / "manifest.parquet"),
                 "--qc-dir", str(sample_run / "qc"), "--consensus-seg-type", "binary"]) == 0
    series = read_qc_table(str(sample_run / "qc"), "qc_series").iloc[0]
    path = next(p for p in (sample_run / "seg").rglob("*.dcm") if p.stem == series.sr_sop_uid)
    sr = pydicom.dcmread(path)
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert evidence.ReferencedSOPInstanceUID == series.consensus_sop_uid
    assert evidence.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage (BINARY)
    assert errors_reported(path) == []
