"""The ``bonehub`` command line: seg encode/decode end to end, the sample job, one-line errors."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import highdicom as hd
import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless
from labels.schema import default_schema
from pipeline.cli import main

FULL = "seg_totalsegmentator_v2_full.nii.gz"
SOURCE = ("--source-name", "TotalSegmentator total", "--source-version", "2")


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def test_console_script_help():
    bonehub = Path(sys.executable).parent / "bonehub"
    result = subprocess.run([str(bonehub), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("run", "segment", "qc", "sample", "seg"):
        assert command in result.stdout
    seg_help = subprocess.run([str(bonehub), "seg", "encode", "--help"], capture_output=True, text=True).stdout
    assert "--label-set" in seg_help and "totalsegmentator_total_v1" in seg_help


def test_encode_then_decode(sample_dir, sample_ct, sample_schema_maps, tmp_path, capsys):
    seg_path, label_path = tmp_path / "out" / "full.dcm", tmp_path / "decoded.nii.gz"
    assert run_cli("seg", "encode", "--ct", sample_dir / "ct", "--labels", sample_dir / FULL, "--label-set", "totalsegmentator_total", "--out", seg_path, *SOURCE) == 0
    assert "17 bone segments" in capsys.readouterr().out
    assert run_cli("seg", "decode", seg_path, "--ct", sample_dir / "ct", "--out", label_path) == 0
    decoded = hd.Volume.from_simpleitk(sitk.ReadImage(str(label_path))).match_geometry(sample_ct.geometry)
    np.testing.assert_array_equal(decoded.array, sample_schema_maps[FULL])
    rows = list(csv.DictReader((tmp_path / "decoded_segments.csv").open()))
    assert {r["schema_name"] for r in rows} >= {"rib_left_7", "vertebra_L1"}
    assert run_cli("seg", "decode", seg_path, "--out", tmp_path / "no_ct.nrrd", "--segments", tmp_path / "s.json") == 0
    assert (tmp_path / "s.json").read_text().startswith("[")


def test_encode_splits_appendicular_bones_by_the_midline(sample_dir, sample_ct, tmp_path):
    """TotalSegmentator appendicular_bones has no sides: a blob on each side becomes a left and a right tibia."""
    native = np.zeros(sample_ct.volume.spatial_shape, np.uint8)
    native[10:15, 40:50, 10:20] = 2  # tibia; low column index = patient right (rows run to the patient's left)
    native[10:15, 40:50, 100:110] = 2
    label_path = tmp_path / "appendicular.nii.gz"
    sitk.WriteImage(sample_ct.volume.with_array(native).to_simpleitk(), str(label_path))
    seg_path = tmp_path / "app.dcm"
    assert run_cli("seg", "encode", "--ct", sample_dir / "ct", "--labels", label_path, "--label-set", "totalsegmentator_appendicular_bones", "--out", seg_path, "--type", "binary", *SOURCE) == 0
    import pydicom

    assert sorted(item.TrackingID for item in pydicom.dcmread(seg_path).SegmentSequence) == ["tibia_left", "tibia_right"]


def test_sample_job(tmp_path, capsys):
    """The quick start: two real precomputed results and the baseline (plain and rotated), then a rerun."""
    import pandas as pd

    assert run_cli("sample", "--out", tmp_path) == 0
    out = capsys.readouterr().out
    assert out.startswith("bonehub run --dicom-folder ")
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert sorted(zip(manifest.source, manifest.augmentation, manifest.status)) == [
        ("BoneHub bone threshold baseline", "none", "written"), ("BoneHub bone threshold baseline", "rotate(0,0,5)", "written"),
        ("TotalSegmentator total", "none", "written"), ("TotalSegmentator total fast", "none", "written"),
    ]
    segs = sorted((tmp_path / "seg").rglob("*.dcm"))
    assert len(segs) == 4 + 2  # and QC's consensus SEG and SR
    assert "QC: 1 series done, 0 failed" in out and (tmp_path / "qc" / "qc_report.html").is_file()
    assert run_cli("sample", "--out", tmp_path) == 0  # a rerun finds every output: deterministic UIDs, nothing redone
    assert "0 written, 4 exists, 0 failed" in capsys.readouterr().out
    assert sorted((tmp_path / "seg").rglob("*.dcm")) == segs


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d, t: ["seg", "encode", "--ct", t / "missing", "--labels", d / FULL, "--label-set", "totalsegmentator_total", "--out", t / "x.dcm", *SOURCE], "missing"),
        (lambda d, t: ["seg", "encode", "--ct", d / "ct", "--labels", d / FULL, "--label-set", "no_such_model", "--out", t / "x.dcm", *SOURCE], "unknown label set 'no_such_model'"),
        (lambda d, t: ["seg", "encode", "--ct", d / "ct", "--labels", d / FULL, "--label-set", "totalsegmentator_appendicular_bones", "--out", t / "x.dcm", *SOURCE], "'totalsegmentator_appendicular_bones' has no mapping for native label value(s) [13, 14, 18,"),
        (lambda d, t: ["seg", "encode", "--ct", d / "ct", "--labels", t / "nope.nii.gz", "--label-set", "totalsegmentator_total", "--out", t / "x.dcm", *SOURCE], "cannot read label image"),
        (lambda d, t: ["seg", "decode", d / FULL, "--out", t / "x.nii.gz"], "not a readable DICOM SEG"),
        (lambda d, t: ["seg", "encode", "--ct", d / "ct", "--labels", d / FULL, "--label-set", "totalsegmentator_total", "--out", t, *SOURCE], "Is a directory"),
        (lambda d, t: ["seg", "encode", "--ct", d / "ct", "--labels", d / FULL, "--label-set", _bad_mapping(t), "--out", t / "x.dcm", *SOURCE], "lacks column(s) ['split_by_side']"),
    ],
    ids=["missing-ct", "unknown-label-set", "unmapped-label", "missing-labels", "not-a-seg", "out-is-a-folder", "malformed-mapping"],
)
def test_bad_input_exits_2_with_a_one_line_reason(make_args, message, sample_dir, tmp_path, capsys):
    assert run_cli(*make_args(sample_dir, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("bonehub: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "x.dcm").exists()


def _bad_mapping(folder: Path) -> Path:
    path = folder / "mapping.csv"
    path.write_text("native_value,native_name,schema_name\n1,spleen,\n")
    return path


def test_decode_refuses_an_unknown_output_format(sample_dir, tmp_path, capsys):
    seg_path = tmp_path / "full.dcm"
    assert run_cli("seg", "encode", "--ct", sample_dir / "ct", "--labels", sample_dir / FULL, "--label-set", "totalsegmentator_total", "--out", seg_path, *SOURCE) == 0
    assert run_cli("seg", "decode", seg_path, "--out", tmp_path / "labels.txt") == 2
    assert "must end in one of" in capsys.readouterr().err


def test_strict_decode_names_the_unknown_segment(test_data, tmp_path, capsys):
    assert run_cli("seg", "decode", test_data / "dcmqi_ct3slice" / "liver.dcm", "--strict", "--out", tmp_path / "x.nii.gz") == 2
    assert "'Liver'" in capsys.readouterr().err
    assert default_schema()  # the schema itself stays loadable after errors


@pytest.mark.parametrize("args, named", [
    (["segment", "--dicom-folder", "{tmp}/nowhere", "--source", "baseline", "--out", "{tmp}/out"], "nowhere"),
    (["segment", "--dicom-folder", "{sample}/ct", "--source", "baseline?colour=red", "--out", "{tmp}/out"], "colour"),
    (["qc", "--out", "{tmp}/out", "--manifest", "{tmp}/out/none.parquet", "--series-uid", "1.2.x"], "1.2.x"),
    (["segment", "--dicom-folder", "{sample}/ct", "--source", "baseline", "--out", "{tmp}/out", "--seg-type", "binary",
      "--seg-compression", "rle"], "--seg-compression rle"),
], ids=["missing-dicom-folder", "bad-source-spec", "series-without-segs", "rle-binary"])
def test_bad_job_input_exits_2_with_one_line_naming_it(args, named, sample_dir, tmp_path, capsys):
    assert run_cli(*(a.format(tmp=tmp_path, sample=sample_dir) for a in args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("bonehub: error: ") and err.count("\n") == 1
    assert named in err


@pytest.mark.parametrize("extra", [["--idc-series", "1.2.3", "4.5.6"], ["--runner", "DirectRunner", "4.5.6"]])
def test_a_value_without_its_option_is_refused_not_passed_to_beam(extra, tmp_path, capsys):
    """``--idc-series A B`` used to hand B to Beam, which ignored it: series B was silently not run."""
    with pytest.raises(SystemExit) as exit_:
        main(["segment", "--source", "baseline", "--out", str(tmp_path / "out"), *extra])
    assert exit_.value.code == 2
    assert "unrecognized arguments: 4.5.6 (repeat the option for each value" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_seg_compression_chooses_the_stored_syntax_and_not_the_uids(sample_dir, tmp_path):
    """``--seg-compression rle`` stores RLE Lossless SEGs under the UIDs the default (deflated) run gives."""
    runs = {}
    for compression in ("rle", None):
        out = tmp_path / (compression or "default")
        assert run_cli("segment", "--dicom-folder", str(sample_dir / "ct"), "--source", "baseline", "--out", str(out),
                       *(["--seg-compression", compression] if compression else [])) == 0
        (seg,) = [p for p in out.rglob("*.dcm")]
        ds = pydicom.dcmread(seg)
        runs[compression] = (seg.relative_to(out), ds.file_meta.TransferSyntaxUID, ds.SOPInstanceUID)
    assert runs["rle"][1] == RLELossless and runs[None][1] == DeflatedExplicitVRLittleEndian
    assert runs["rle"][0] == runs[None][0] and runs["rle"][2] == runs[None][2]
