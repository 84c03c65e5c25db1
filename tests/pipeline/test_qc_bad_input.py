"""Stage 2 on bad input: a SEG of another series, unknown segment codes, one source, a series with nothing usable.

Each problem is named (which SEG, why) and costs only that SEG, or only that
series when none of its SEGs is usable; the rest of the run finishes.
"""

from __future__ import annotations

import numpy as np
import pytest

from dicom_io.ct_series import read_ct_series
from dicom_io.ct_writer import write_ct_series
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_writer import write_seg
from dicom_io.stores import open_store
from pipeline.cli import main
from qc.assess import QcInputError, assess_series
from qc.results import Member
from results.manifest import WRITTEN, ManifestRow, merge_into_manifest
from results.qc_shards import read_qc_table

OTHER_SERIES = "1.2.826.0.1.3680043.8.498.7101"
FULL, FAST = "seg_totalsegmentator_v2_full.nii.gz", "seg_totalsegmentator_v2_fast.nii.gz"


@pytest.fixture(scope="module")
def other_ct(tmp_path_factory, sample_ct):
    """A second CT series: the sample's pixels under other UIDs."""
    folder = tmp_path_factory.mktemp("other_ct")
    write_ct_series(sample_ct.volume, folder, study_instance_uid=sample_ct.study_instance_uid,
                    series_instance_uid=OTHER_SERIES, frame_of_reference_uid=sample_ct.frame_of_reference_uid)
    return read_ct_series(folder), folder


def _store_seg(store, label_map, ct, name, ct_folder, *, series_uid=None) -> ManifestRow:
    """Encode and store a SEG of ``ct``; its manifest row claims it segments ``series_uid`` (default: ``ct``'s)."""
    seg = write_seg(label_map, ct, SegmentationSource(name, "1"))
    return _row(store.put(seg), seg, name, series_uid or ct.series_instance_uid, ct.study_instance_uid, ct_folder)


def _row(location, seg, name, series_uid, study_uid, ct_folder) -> ManifestRow:
    return ManifestRow(series_uid, study_uid, name, "1", "none", "labelmap", str(seg.SeriesInstanceUID),
                       str(seg.SOPInstanceUID), location, WRITTEN, ct_kind="local", ct_location=str(ct_folder))


def _qc(tmp_path, rows) -> int:
    merge_into_manifest(tmp_path / "manifest.parquet", rows)
    return main(["qc", "--out", str(tmp_path / "store"), "--manifest", str(tmp_path / "manifest.parquet"),
                 "--qc-dir", str(tmp_path / "qc"), "--cache-dir", str(tmp_path / "cache")])


def test_unusable_segs_are_left_out_and_named(tmp_path, sample_dir, sample_ct, sample_schema_maps, other_ct, capsys):
    store = open_store(tmp_path / "store")
    ct_folder = sample_dir / "ct"
    rows = [_store_seg(store, sample_schema_maps[FULL], sample_ct, "full", ct_folder),
            _store_seg(store, sample_schema_maps[FAST], sample_ct, "fast", ct_folder)]
    # a SEG of the other series, listed under the sample series
    rows.append(_store_seg(store, sample_schema_maps[FAST], other_ct[0], "wrong series", ct_folder,
                           series_uid=sample_ct.series_instance_uid))
    # a SEG whose segment says "Liver": not a bone of the schema
    liver = write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("liver codes", "1"))
    item = liver.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0]
    item.CodeValue, item.CodeMeaning = "10200004", "Liver"
    if "SegmentedPropertyTypeModifierCodeSequence" in item:
        del item.SegmentedPropertyTypeModifierCodeSequence
    liver.SegmentSequence[1].SegmentLabel = "Liver"
    rows.append(_row(store.put(liver), liver, "liver codes", sample_ct.series_instance_uid, sample_ct.study_instance_uid, ct_folder))

    assert _qc(tmp_path, rows) == 0
    out = capsys.readouterr().out
    assert "QC: 1 series done, 0 failed" in out
    assert f"wrong series 1 (SEG {rows[2].seg_sop_instance_uid}): SegGeometryError" in out
    assert f"references series ['{OTHER_SERIES}'], not CT series {sample_ct.series_instance_uid}" in out
    assert f"liver codes 1 (SEG {liver.SOPInstanceUID}): UnknownSegmentError" in out and "Liver" in out
    table = read_qc_table(str(tmp_path / "qc"), "qc_table")
    assert set(table.members.str.split(";").explode()) == {"full 1", "fast 1"}
    series = read_qc_table(str(tmp_path / "qc"), "qc_series")
    assert series.skipped[0].count("SegGeometryError") == 1 and series.skipped[0].count("UnknownSegmentError") == 1


def test_single_source_and_a_series_without_usable_seg(tmp_path, sample_dir, sample_ct, sample_schema_maps, other_ct, capsys):
    store = open_store(tmp_path / "store")
    other, other_folder = other_ct
    rows = [_store_seg(store, sample_schema_maps[FULL], sample_ct, "full", sample_dir / "ct"),
            # the other series' only SEG belongs to the sample series: nothing usable is left for it
            _store_seg(store, sample_schema_maps[FULL], sample_ct, "misfiled", other_folder, series_uid=OTHER_SERIES)]
    assert _qc(tmp_path, rows) == 3  # one series failed
    out = capsys.readouterr().out
    assert "QC: 1 series done, 1 failed" in out
    assert f"failed: series {OTHER_SERIES}: read SEGs: no usable SEG: misfiled 1" in out
    table = read_qc_table(str(tmp_path / "qc"), "qc_table")
    assert set(table.series_uid) == {sample_ct.series_instance_uid}
    assert set(table.status) == {"insufficient_sources"} and table.score.isna().all()


def test_assess_refuses_mixed_grids_and_foreign_labels():
    members = [Member("a", "1", "none", "1.2.3", "1.2.3.1"), Member("b", "1", "none", "1.2.4", "1.2.4.1")]
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    with pytest.raises(QcInputError, match=r"different grids .*'a 1': \(4, 4, 4\), 'b 1': \(4, 4, 5\)"):
        assess_series("1.2.9", "1.2.8", members, [np.zeros((4, 4, 4), np.uint16), np.zeros((4, 4, 5), np.uint16)], affine)
    foreign = np.zeros((4, 4, 4), np.uint16)
    foreign[1, 1, 1] = 1000
    with pytest.raises(QcInputError, match=r"b 1 \(SEG 1.2.4.1\): label value\(s\) \[1000\] are not schema ids"):
        assess_series("1.2.9", "1.2.8", members, [np.zeros((4, 4, 4), np.uint16), foreign], affine)


def test_qc_config_is_checked_before_any_work(tmp_path, capsys):
    config = tmp_path / "qc.json"
    config.write_text('{"nsd_tolerance_mm": 3, "review_treshold": 0.7}')
    assert main(["qc", "--out", str(tmp_path / "store"), "--qc-config", str(config)]) == 2
    assert "unknown: ['review_treshold']" in capsys.readouterr().err
    config.write_text('{"nsd_tolerance_mm_by_structure": {"vertebra_C1": 3}, "review_below": 1.5}')
    assert main(["qc", "--out", str(tmp_path / "store"), "--qc-config", str(config)]) == 2
    assert "review_below must be in (0, 1], got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "store" / "qc").exists()
