"""Exports are incremental and deterministic: a rerun writes no byte and keeps every mtime; a correction made
after the export rewrites only its series' files (and the card and records that list them); a series no
longer selected loses its files.

Two series: the sample after the four decisions, and the sample on an oblique grid (tests/review/conftest.py)
merged into the same store, manifest and QC tables, as two runs into one store would be.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dicom_io.ct_series import read_ct_series
from dicom_io.seg_reader import read_seg
from dicom_io.stores import open_store
from labels.schema import default_schema
from pipeline.cli import main
from results.qc_shards import merge_qc_table, read_qc_table
from tests.review.test_review_loop import edit_mask, export as review_export, world
from tests.review.test_verdicts import decided  # noqa: F401

CORRECTED_LATER = "rib_left_9"  # QC sends it to review on the sample; corrected after the first export


@pytest.fixture
def two_series(decided, oblique_base):
    run, _ = decided
    other, _ = oblique_base
    shutil.copytree(other / "seg", run.root / "seg", dirs_exist_ok=True)
    merged = pd.concat([pd.read_parquet(run.root / "manifest.parquet"), pd.read_parquet(other / "manifest.parquet")],
                       ignore_index=True)  # the sample's rows first
    merged.to_parquet(run.root / "manifest.parquet", index=False)
    for table in ("qc_table", "qc_series"):
        merge_qc_table(str(run.root / "qc"), table, read_qc_table(str(other / "qc"), table))
    return run


def stamps(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def changed(before: dict, after: dict) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def correct_later(run) -> None:
    """Three voxels of the rib removed by a reviewer, imported as a correction."""
    sample = str(pd.read_parquet(run.root / "manifest.parquet").series_instance_uid[0])  # the sample's rows first
    review_export(run, CORRECTED_LATER, series=sample)
    folder = run.root / "export" / sample / CORRECTED_LATER
    record = json.loads((folder / "item.json").read_text())
    ct = read_ct_series(run.ct_folder)
    base = record["base"]
    labels = read_seg(open_store(run.root / "seg").get(base["study_uid"], base["series_uid"], base["sop_uid"]), ct).volume.array
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    inside = np.argwhere(labels[box] == default_schema()[CORRECTED_LATER].id)[:3] + [b.start for b in box]
    edit_mask(folder, [], world(ct, [tuple(int(v) for v in p) for p in inside]))
    assert run.review("import", str(folder), "--reviewer", "Roe^Rick") == 0


def test_reruns_write_nothing_and_a_later_correction_rewrites_only_its_series(two_series, tmp_path, capsys):
    run = two_series
    sample, oblique = (str(uid) for uid in pd.unique(pd.read_parquet(run.root / "manifest.parquet").series_instance_uid))
    assert {sample, oblique} == set(read_qc_table(str(run.root / "qc"), "qc_series").series_uid)
    exports = {fmt: tmp_path / fmt for fmt in ("dicom", "bonehub")}

    def export_all(*extra: str) -> dict[str, dict]:
        for fmt, to in exports.items():
            assert main(["dataset", "export", *run.place_args, "--to", str(to), "--format", fmt, *extra]) == 0
        return {fmt: stamps(to) for fmt, to in exports.items()}

    first = export_all()
    assert {p.split("/")[1] for p in first["dicom"] if p.endswith(".dcm")} == {sample, oblique}
    assert {p for p in first["bonehub"] if "/Image/" in p} == {"Dataset_999/Image/999_000001.nii.gz",
                                                                "Dataset_999/Image/999_000002.nii.gz"}
    capsys.readouterr()
    assert export_all() == first  # same bytes, same mtimes
    assert capsys.readouterr().out.count("0 files written, 0 removed") == 2

    correct_later(run)
    after = export_all()
    subject = "999_000001" if sample < oblique else "999_000002"  # subjects are numbered by series UID
    study = next(p.split("/")[0] for p in first["dicom"] if f"/{sample}/" in p)
    assert changed(first["dicom"], after["dicom"]) == {f"{study}/{sample}/seg.dcm", f"{study}/{sample}/qc_sr.dcm",
                                                       "datacard.json", "README.md"}
    assert changed(first["bonehub"], after["bonehub"]) == {f"Dataset_999/Segmentation/{subject}.seg.nrrd",
                                                           "Dataset_999/Subject_info_999.json", "datacard.json",
                                                           "README.md"}
    records = json.loads((exports["bonehub"] / "Dataset_999" / "Subject_info_999.json").read_text())
    mine = next(r for r in records if r["subject_id"] == int(subject[-6:]))
    assert mine["segmentation"]["RIB_9_LEFT"] == 23  # human-edited, expert accepted

    # a series no longer selected loses its files (and its now empty folders); the other keeps its mtimes
    assert main(["dataset", "export", *run.place_args, "--to", str(exports["dicom"]), "--format", "dicom",
                 "--series-uid", oblique]) == 0
    narrowed = stamps(exports["dicom"])
    assert not any(f"/{sample}/" in p for p in narrowed) and not (exports["dicom"] / study / sample).exists()
    kept = {p for p in narrowed if f"/{oblique}/" in p}
    assert kept and all(narrowed[p] == after["dicom"][p] for p in kept)
