"""``bonehub run`` end to end on DirectRunner: several series, a broken one, a crashing source, a rerun."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dicom_io.ct_series import read_ct_series
from dicom_io.ct_writer import write_ct_series
from dicom_io.seg_reader import read_seg
from pipeline.cli import main
from results.qc_shards import read_qc_table

PRECOMPUTED = "precomputed:{table}?label_set=totalsegmentator_total&name=TotalSegmentator total&version=2"
BROKEN_SERIES = "1.2.826.0.1.3680043.8.498.7002"
COPY_SERIES = "1.2.826.0.1.3680043.8.498.7001"


@pytest.fixture(scope="module")
def three_series(tmp_path_factory, sample_dir, sample_ct) -> Path:
    """The sample CT, a copy of it under other UIDs, and a copy with a slice missing from its middle."""
    root = tmp_path_factory.mktemp("input")
    shutil.copytree(sample_dir / "ct", root / "sample")
    for name, series_uid in (("copy", COPY_SERIES), ("broken", BROKEN_SERIES)):
        files = write_ct_series(sample_ct.volume, root / name, study_instance_uid="1.2.826.0.1.3680043.8.498.7000",
                                series_instance_uid=series_uid, frame_of_reference_uid=sample_ct.frame_of_reference_uid)
    files[len(files) // 2].unlink()  # the broken series lacks one slice
    return root


def _run(*args) -> int:
    return main(["run", *map(str, args)])


def _seg_files(store: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in store.rglob("*.dcm")}


def test_failures_are_isolated_named_and_retried_on_rerun(three_series, sample_dir, sample_ct, tmp_path, capsys):
    calls = tmp_path / "crash_calls.txt"
    store, manifest_path = tmp_path / "seg", tmp_path / "manifest.parquet"
    args = ["--dicom-folder", three_series,
            "--source", PRECOMPUTED.format(table=sample_dir / "totalsegmentator_total.csv"),
            "--source", "baseline",
            "--source", f"plugin:tests.support.crashing_source:CrashingSource?calls={calls}",
            "--augment", "rotate(0,0,5)",
            "--out", store, "--manifest", manifest_path, "--cache-dir", tmp_path / "cache"]
    assert _run(*args) == 3  # finished, some outputs failed
    printed = capsys.readouterr().out
    assert "3 series x 3 sources x 2 augmentations (none, rotate(0,0,5)): 15 outputs" in printed

    manifest = pd.read_parquet(manifest_path)
    assert len(manifest) == 15  # precomputed results take no augmentation: 3 series x (1 + 2 + 2)
    by = manifest.set_index(["series_instance_uid", "source", "augmentation"])
    sample_uid = sample_ct.series_instance_uid

    written = manifest[manifest.status == "written"]
    assert sorted(zip(written.series_instance_uid, written.source, written.augmentation)) == sorted([
        (sample_uid, "TotalSegmentator total", "none"),
        (sample_uid, "BoneHub bone threshold baseline", "none"), (sample_uid, "BoneHub bone threshold baseline", "rotate(0,0,5)"),
        (COPY_SERIES, "BoneHub bone threshold baseline", "none"), (COPY_SERIES, "BoneHub bone threshold baseline", "rotate(0,0,5)"),
    ])
    # The broken series fails at reading, naming the gap; every one of its outputs says so.
    broken = manifest[manifest.series_instance_uid == BROKEN_SERIES]
    assert len(broken) == 5 and set(broken.status) == {"failed"}
    assert all(error.startswith("read CT: MissingSliceError") for error in broken.error)
    # The crashing source fails on the good series only at predict, with its own message.
    crashed = manifest[(manifest.source == "Crashing model") & (manifest.series_instance_uid != BROKEN_SERIES)]
    assert len(crashed) == 4 and set(crashed.status) == {"failed"}
    assert all("predict: RuntimeError: CUDA error" in error for error in crashed.error)
    # The precomputed source has no result for the copy: a failure that names the series.
    missing = by.loc[(COPY_SERIES, "TotalSegmentator total", "none")]
    assert missing.status == "failed" and COPY_SERIES in missing.error
    assert "failed: series" in printed and printed.count("failed:") >= 10

    # What was written is where the manifest says, and decodes onto the CT grid.
    files = _seg_files(store)
    qc = read_qc_table(str(tmp_path / "qc"), "qc_series")  # QC ran on the series that have SEGs
    assert sorted(qc.series_uid) == sorted([sample_uid, COPY_SERIES]) and set(qc.status) == {"done"}
    qc_outputs = {*qc.consensus_sop_uid, *qc.sr_sop_uid}
    assert {p.stem for p in files} == set(written.seg_sop_instance_uid) | qc_outputs
    files = {p: mtime for p, mtime in files.items() if p.stem not in qc_outputs}  # QC rewrites its own outputs on a rerun
    sample_seg = by.loc[(sample_uid, "TotalSegmentator total", "none")]
    decoded = read_seg(Path(sample_seg.location.removeprefix("file://")), sample_ct)
    assert decoded.volume.array.shape == sample_ct.volume.array.shape and decoded.volume.array.any()
    assert (written.segments > 0).all()
    structures = np.unique(decoded.volume.array)
    assert sample_seg.segments == np.count_nonzero(structures)  # the row counts the structures the SEG holds

    # A rerun writes nothing new, touches nothing written, and retries exactly the failures.
    calls_before = calls.read_text().splitlines()
    assert sorted(calls_before) == sorted([sample_uid, sample_uid, COPY_SERIES, COPY_SERIES])
    assert _run(*args) == 3  # the failures fail again
    rerun = pd.read_parquet(manifest_path)
    assert len(rerun) == 15
    assert {p: mtime for p, mtime in _seg_files(store).items() if p.stem not in qc_outputs} == files
    assert sorted(rerun[rerun.status == "exists"].seg_sop_instance_uid) == sorted(written.seg_sop_instance_uid)
    assert (rerun[rerun.status == "exists"].segments > 0).all()  # counts of the run that made them are kept
    assert (rerun.status == "failed").sum() == 10
    assert len(calls.read_text().splitlines()) == 2 * len(calls_before)


def test_rotated_output_lands_on_the_source_grid(three_series, sample_ct, tmp_path):
    store = tmp_path / "seg"
    assert _run("--dicom-folder", three_series / "sample", "--source", "baseline", "--augment", "rotate(0,0,5)",
                "--out", store, "--cache-dir", tmp_path / "cache") == 0
    manifest = pd.read_parquet(store / "manifest.parquet").set_index("augmentation")
    plain, rotated = (read_seg(Path(manifest.loc[aug].location.removeprefix("file://")), sample_ct).volume.array
                      for aug in ("none", "rotate(0,0,5)"))
    assert plain.shape == rotated.shape == sample_ct.volume.array.shape
    overlap = np.logical_and(plain > 0, rotated > 0).sum() / max((plain > 0).sum(), 1)
    assert 0.6 < overlap < 1.0  # the same bones, slightly different after a 5 degree round trip


def test_bad_job_arguments_exit_2_before_any_work(three_series, tmp_path, capsys):
    assert _run("--dicom-folder", three_series, "--source", "no_such_kind", "--out", tmp_path) == 2
    assert "unknown kind 'no_such_kind'" in capsys.readouterr().err
    assert _run("--source", "baseline", "--out", tmp_path) == 2
    assert "give exactly one kind of input" in capsys.readouterr().err
    assert _run("--dicom-folder", three_series, "--series-uid", "1.2.3.4", "--source", "baseline", "--out", tmp_path) == 2
    assert "1.2.3.4" in capsys.readouterr().err
    assert _run("--dicom-folder", three_series, "--source", "baseline", "--augment", "twist(4)", "--out", tmp_path) == 2
    assert "twist" in capsys.readouterr().err


def test_multi_process_direct_runner(three_series, tmp_path):
    """Beam options pass through to both stages: two worker processes give the same outputs as the in-process run."""
    store = tmp_path / "seg"
    assert _run("--dicom-folder", three_series, "--series-uid", COPY_SERIES, "--source", "baseline",
                "--augment", "noise(20)", "--out", store, "--cache-dir", tmp_path / "cache",
                "--direct_num_workers=2", "--direct_running_mode=multi_processing") == 0
    manifest = pd.read_parquet(store / "manifest.parquet")
    assert sorted(manifest.status) == ["written", "written"]
    qc = read_qc_table(str(store / "qc"), "qc_series")  # the QC job ran in worker processes too
    assert list(qc.status) == ["done"]
    assert {p.stem for p in store.rglob("*.dcm")} == {*manifest.seg_sop_instance_uid, *qc.consensus_sop_uid, *qc.sr_sop_uid}


def test_a_seg_stored_before_its_manifest_row_keeps_its_segment_count(sample_dir, tmp_path):
    """A run killed between storing its SEG and writing its manifest: the rerun finds the SEG and counts it."""
    args = ["--dicom-folder", sample_dir / "ct", "--source", "baseline", "--out", tmp_path / "seg",
            "--cache-dir", tmp_path / "cache"]
    assert _run(*args) == 0
    manifest_path = tmp_path / "seg" / "manifest.parquet"
    segments = int(pd.read_parquet(manifest_path).segments.iloc[0])
    assert segments > 0
    manifest_path.unlink()  # as if the first run died before writing it
    assert _run(*args) == 0
    rerun = pd.read_parquet(manifest_path)
    assert list(rerun.status) == ["exists"] and list(rerun.segments) == [segments]
