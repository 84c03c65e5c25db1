"""Exit status means something (0 all done, 2 bad input before any work, 3 finished with failed items),
and every place a run writes is checked before any work: no traceback for a user error."""

from __future__ import annotations

import shutil

import pydicom
import pytest

from pipeline.cli import main
from tests.support.bright_object_ct import write_bright_object_ct


@pytest.fixture(scope="module")
def tiny_ct(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct") / "ct"
    write_bright_object_ct(folder)
    return folder


@pytest.mark.parametrize("out, message", [
    ("{tmp}/a_file", "is a file, not a folder"),
    ("ftp://host/path", "unsupported store URI scheme 'ftp'"),
    ("{tmp}/a_file/below", "cannot be written"),
])
def test_an_unwritable_output_fails_before_any_work(tiny_ct, tmp_path, capsys, out, message):
    (tmp_path / "a_file").write_text("x")
    rc = main(["run", "--dicom-folder", str(tiny_ct), "--source", "baseline", "--out", out.format(tmp=tmp_path),
               "--manifest", str(tmp_path / "m" / "manifest.parquet"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "m" / "manifest.parquet").exists()


def test_an_unwritable_qc_folder_fails_before_segmentation(tiny_ct, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    rc = main(["run", "--dicom-folder", str(tiny_ct), "--source", "baseline", "--out", str(tmp_path / "seg"),
               "--qc-dir", str(tmp_path / "a_file" / "qc"), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2 and "QC folder" in capsys.readouterr().err
    assert not list((tmp_path / "seg").rglob("*.dcm"))


@pytest.mark.parametrize("source, message", [
    ("totalsegmentator:totl", "TotalSegmentator task 'totl' is not supported"),
    ("plugin:no_such_package.module:Model", "cannot import no_such_package.module:Model"),
    ("baseline?oops", "bad parameters after '?'"),
])
def test_a_bad_source_is_one_line(tiny_ct, tmp_path, capsys, source, message):
    rc = main(["segment", "--dicom-folder", str(tiny_ct), "--source", source, "--out", str(tmp_path / "seg")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_finished_with_failures_is_3_and_all_done_is_0(tiny_ct, tmp_path, capsys):
    folder = tmp_path / "input"
    shutil.copytree(tiny_ct, folder / "good")
    shutil.copytree(tiny_ct, folder / "broken")
    for path in (folder / "broken").iterdir():  # a second series under other UIDs, with a slice lost
        path.rename(path.with_name("x" + path.name))
    broken = sorted((folder / "broken").iterdir())
    for i, path in enumerate(broken):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.99", f"1.2.826.0.1.3680043.8.498.99.{i}"
        ds.save_as(path)
    broken[len(broken) // 2].unlink()
    args = ["run", "--dicom-folder", str(folder), "--source", "baseline", "--out", str(tmp_path / "seg"),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 3
    captured = capsys.readouterr()
    assert "MissingSliceError" in captured.out and "bonehub: 1 item(s) failed (listed above)" in captured.err
    assert "QC: 1 series done" in captured.out  # the good series still went through QC

    shutil.rmtree(folder / "broken")
    assert main(args) == 0


def test_a_ct_series_with_one_foreign_slice_is_named_not_dropped(tiny_ct, tmp_path, capsys):
    folder = tmp_path / "ct"
    shutil.copytree(tiny_ct, folder)
    slice_path = sorted(folder.iterdir())[3]
    ds = pydicom.dcmread(slice_path)
    ds.Modality = "MR"
    ds.save_as(slice_path)
    assert main(["segment", "--dicom-folder", str(folder), "--source", "baseline", "--out", str(tmp_path / "seg"),
                 "--cache-dir", str(tmp_path / "cache")]) == 3
    assert f"{slice_path.name}: modality 'MR' is not CT" in capsys.readouterr().out
