"""``bonehub run`` on a BoneHub-Dataset built from the bundled sample, in both layout versions, end to end.

Dataset_001 is layout v2 (NIfTI image, ``.seg.nrrd`` with BoneHub tags and statuses); Dataset_002 is
layout v1 (NIfTI image and a NIfTI mask of 4-digit values, statuses in Subject_info). The masks are the
sample's real TotalSegmentator result written in BoneHub's labels; the run adds TotalSegmentator
"fast" (precomputed) and the baseline, so the BoneHub mask is one vote among three in QC.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dicom_io.bonehub_provenance import statuses_of
from dicom_io.bonehub_seg_nrrd import write_bonehub_seg_nrrd
from dicom_io.label_images import write_label_image
from dicom_io.seg_reader import read_seg
from dicom_io.ct_series import read_ct_series
from labels.bonehub_labels import bonehub_label_set, bonehub_value
from labels.bonehub_status import BoneHubStatus
from labels.errors import BoneHubInputError
from labels.schema import default_schema
from pipeline.cli import main
from pipeline.inputs import bonehub_inputs, volume_series
from results.manifest import read_manifest
from results.qc_shards import read_qc_table

FULL, FAST = "seg_totalsegmentator_v2_full.nii.gz", "seg_totalsegmentator_v2_fast.nii.gz"
REJECTED = "rib_left_8"  # its label carries "expert rejected" (14): it must not vote
SOURCE = "BoneHub-Dataset"
SUBJECT = {"subject_id": 1, "age": 61, "gender": "female", "weight": 70.5, "height": 168}


def _v1_values() -> dict[str, int]:
    """Schema name -> the BoneHub layout v1 value of exactly that structure (sided, not split)."""
    path = Path(__file__).resolve().parents[2] / "labels" / "mappings" / "bonehub_v1.csv"
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["schema_name"] and not r.get("split_by_side") and not r.get("refused")]
    values: dict[str, int] = {}
    for row in rows:
        values.setdefault(row["schema_name"], int(row["native_value"]))
    return values


def _relabelled(schema_map: np.ndarray, value_of) -> tuple[np.ndarray, dict[str, int]]:
    """The schema map in BoneHub values (structures BoneHub has no value for are left out), and name -> value."""
    schema = default_schema()
    out, used = np.zeros(schema_map.shape, np.int64), {}
    for schema_id in np.unique(schema_map[schema_map > 0]):
        name = schema[int(schema_id)].name
        try:
            value = value_of(name)
        except (BoneHubInputError, KeyError):
            continue
        out[schema_map == schema_id] = value
        used[name] = value
    return out, used


def _dataset(root: Path, dataset_id: str, image: sitk.Image, record: dict) -> Path:
    folder = root / f"Dataset_{dataset_id}"
    (folder / "Image").mkdir(parents=True)
    (folder / "Segmentation").mkdir()
    sitk.WriteImage(image, str(folder / "Image" / f"{dataset_id}_000001.nii.gz"))
    (folder / f"Dataset_info_{dataset_id}.json").write_text(json.dumps(
        {"dataset_id": int(dataset_id), "name": "sample", "version": "1.0"}))
    (folder / f"Subject_info_{dataset_id}.json").write_text(json.dumps([{"dataset_id": int(dataset_id), **record}]))
    return folder / "Segmentation"


@pytest.fixture(scope="module")
def bonehub_root(tmp_path_factory, sample_dir, sample_ct, sample_schema_maps) -> Path:
    root = tmp_path_factory.mktemp("BoneHub")
    reader = sitk.ImageSeriesReader()  # the sample's DICOM series as a NIfTI, as a public dataset ships it
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(sample_dir / "ct")))
    image = sitk.Cast(reader.Execute(), sitk.sitkInt16)

    v2, used = _relabelled(sample_schema_maps[FULL], bonehub_value)
    statuses = {value: BoneHubStatus.parse(14 if name == REJECTED else 33) for name, value in used.items()}
    write_bonehub_seg_nrrd(_dataset(root, "001", image, SUBJECT) / "001_000001.seg.nrrd",
                           sample_ct.volume.with_array(v2), bonehub_label_set("v2"), statuses)

    v1_of = _v1_values()
    v1, used1 = _relabelled(sample_schema_maps[FULL], v1_of.__getitem__)
    record = {**SUBJECT, "segmentation": {bonehub_label_set("v1").labels[v].name: 31 for v in used1.values()}}
    write_label_image(sample_ct.volume.with_array(v1.astype(np.int16)), _dataset(root, "002", image, record) / "002_000001.nii.gz")
    return root


@pytest.fixture(scope="module")
def run(bonehub_root, sample_dir, tmp_path_factory):
    """The arguments of the run, with TotalSegmentator fast as a precomputed source for the derived series."""
    work = tmp_path_factory.mktemp("run")
    cache = work / "cache"
    refs, errors = volume_series(bonehub_inputs(bonehub_root), cache)  # what the run will make: the same UIDs
    assert not errors and len(refs) == 2
    table = work / "fast.csv"
    table.write_text("series_uid,path\n" + "".join(f"{r.series_uid},{sample_dir / FAST}\n" for r in refs))
    args = ["run", "--bonehub-dataset", str(bonehub_root), "--source", f"bonehub:{bonehub_root}",
            "--source", f"precomputed:{table}?label_set=totalsegmentator_total&name=TotalSegmentator fast&version=2",
            "--source", "baseline", "--out", str(work / "seg"), "--qc-dir", str(work / "qc"), "--cache-dir", str(cache)]
    return work, args, {r.series_uid: r for r in refs}


def test_bonehub_dataset_runs_end_to_end_and_reruns_write_nothing(run, sample_ct, capsys):
    work, args, refs = run
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 series x 3 sources x 1 augmentations" in printed and "6 written, 0 exists, 0 failed" in printed

    manifest = read_manifest(work / "seg" / "manifest.parquet")
    assert set(manifest.bonehub_dataset) == {"001", "002"} and set(manifest.patient_sex) == {"F"}
    assert set(manifest.source_path) == {"Dataset_001/Image/001_000001.nii.gz", "Dataset_002/Image/002_000001.nii.gz"}

    # the derived CT is the sample's CT, voxel for voxel, on its grid
    derived = read_ct_series(Path(next(iter(refs.values())).location))
    assert np.array_equal(derived.volume.array, sample_ct.volume.array)
    np.testing.assert_allclose(derived.volume.affine, sample_ct.volume.affine, atol=1e-4)

    # the BoneHub SEG of layout v2 carries each label's status; the rejected rib is not in it
    v2_row = manifest[(manifest.source == SOURCE) & (manifest.bonehub_dataset == "001")].iloc[0]
    path = Path(v2_row.location.removeprefix("file://"))
    stamped = statuses_of(pydicom.dcmread(path))
    assert len(stamped) > 10 and all(tuple(s.code for s in codes) == (33,) for codes in stamped.values())
    decoded = read_seg(path, derived)
    assert "vertebra_L1" in {s.schema_name for s in decoded.segments} and REJECTED not in {s.schema_name for s in decoded.segments}

    # QC: the BoneHub mask is a member next to the two other sources, and agrees with TotalSegmentator
    table = read_qc_table(str(work / "qc"), "qc_table")
    members = set(table.members.str.split(";").explode())
    assert any(m.startswith(SOURCE) for m in members) and any(m.startswith("TotalSegmentator fast") for m in members)
    l1 = table[(table.bone == "vertebra_L1")]
    assert len(l1) == 2 and (l1.status == "accept").all()
    assert (work / "qc" / "qc_report.html").is_file()

    segs = {Path(loc.removeprefix("file://")) for loc in manifest.location}
    stamps = {p: p.stat().st_mtime_ns for p in segs}
    contents = set((work / "seg").rglob("*.dcm"))
    assert main(args) == 0  # a rerun finds every series and output: no Stage 1 SEG is written again
    assert "0 written, 6 exists, 0 failed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in segs} == stamps
    assert set((work / "seg").rglob("*.dcm")) == set(contents)  # QC redoes its SEG and SR under the same UIDs
