"""The full Stage 3 loop on the real sample, without Slicer: QC → worklist → export → edit → import.

The test edits the exported ROI mask the way a reviewer's tool would, at known
world coordinates (SimpleITK maps them to NRRD indices, not our code), and
checks that the corrected SEG read back differs from the stored consensus at
exactly those voxels, that the revised SR says "corrected", that nothing stored
before changed, and that importing again writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from dicom_io.ct_series import read_ct_series
from dicom_io.seg_reader import read_seg
from dicom_io.sr_reader import find_content_item, read_qc_sr
from dicom_io.stores import open_store
from labels.schema import default_schema
from tests.support.dciodvfy import errors_reported
from results.qc_shards import read_qc_table

SCHEMA = default_schema()
BONE = "vertebra_L1"


def store_files(root: Path) -> dict[str, str]:
    """Every stored DICOM file and its SHA-256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.dcm"))}


def item_folder(run, bone: str = BONE) -> Path:
    series = read_qc_table(str(run.root / "qc"), "qc_series").series_uid[0]
    return run.root / "export" / series / bone


def export(run, bone: str = BONE, *extra: str, series: str | None = None) -> Path:
    assert run.review("worklist", "--to", str(run.root / "export")) == 0
    series = series or read_qc_table(str(run.root / "qc"), "qc_series").series_uid[0]
    assert run.review("export", "--to", str(run.root / "export"), "--item", f"{series}/{bone}", *extra) == 0
    return item_folder(run, bone)


def edit_mask(folder: Path, add_world: list[np.ndarray], remove_world: list[np.ndarray], out: str = "corrected.nrrd") -> Path:
    """The exported mask with voxels set / cleared at world points (LPS mm), saved as a reviewer's tool would."""
    image = sitk.ReadImage(str(folder / "mask_roi.nrrd"))
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    for points, value in ((add_world, 1), (remove_world, 0)):
        for point in points:
            x, y, z = image.TransformPhysicalPointToIndex([float(v) for v in point])
            array[z, y, x] = value
    edited = sitk.GetImageFromArray(array)
    edited.CopyInformation(image)
    sitk.WriteImage(edited, str(folder / out), True)
    return folder / out


def chosen_voxels(consensus: np.ndarray, box: tuple[slice, ...]) -> tuple[list[tuple], list[tuple]]:
    """Three background voxels next to the bone (to add) and three of its voxels (to remove), in CT indices."""
    structure = SCHEMA[BONE].id
    region = consensus[box]
    inside = np.argwhere(region == structure)
    near = np.argwhere((region == 0) & np.pad(region == structure, 1)[2:, 1:-1, 1:-1])  # background just below the bone
    offset = np.array([s.start for s in box])
    pick = lambda points: [tuple(int(v) for v in p + offset) for p in points[:: max(len(points) // 3, 1)][:3]]
    return pick(near), pick(inside)


def world(ct, indices: list[tuple]) -> list[np.ndarray]:
    return list(ct.volume.map_indices_to_reference(np.array(indices)))


@pytest.fixture
def loop(reviewed_sample):
    return exported_item(reviewed_sample, BONE)


def exported_item(run, bone: str):
    """(run, item folder, item.json, CT, store, stored consensus label map) of a freshly exported item."""
    folder = export(run, bone)
    record = json.loads((folder / "item.json").read_text())
    ct = read_ct_series(run.ct_folder)
    store = open_store(run.root / "seg")
    base = record["base"]
    consensus = read_seg(store.get(base["study_uid"], base["series_uid"], base["sop_uid"]), ct).volume.array
    return run, folder, record, ct, store, consensus


def test_worklist_lists_review_bones_lowest_score_first(reviewed_sample):
    run = reviewed_sample
    assert run.review("worklist", "--to", str(run.root / "wl")) == 0
    items = json.loads((run.root / "wl" / "worklist.json").read_text())["items"]
    table = read_qc_table(str(run.root / "qc"), "qc_table")
    review = table[table.status == "review"]
    assert [i["bone"] for i in items] == list(review.sort_values("score", kind="stable").bone)
    assert [i["priority"] for i in items] == list(range(1, len(items) + 1)) and len(items) >= 10
    # the same list from the QC SRs in the store, without the tables
    assert run.review("worklist", "--to", str(run.root / "wl-store"), "--from-store") == 0
    from_store = json.loads((run.root / "wl-store" / "worklist.json").read_text())["items"]
    assert [(i["item_id"], i["flags"]) for i in from_store] == [(i["item_id"], i["flags"]) for i in items]


def test_export_writes_the_roi_as_dicom_and_nrrd(loop):
    run, folder, record, ct, store, consensus = loop
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    # the ROI is the box of every source's L1, grown by 10 mm (whole voxels), clipped to the volume
    from results.manifest import read_manifest

    union = np.zeros(ct.volume.spatial_shape, bool)
    for row in read_manifest(run.root / "manifest.parquet").itertuples():
        labels = read_seg(store.get(row.study_instance_uid, row.seg_series_instance_uid, row.seg_sop_instance_uid), ct).volume.array
        union |= labels == SCHEMA[BONE].id
    hits = np.argwhere(union)
    grow = np.ceil(10.0 / np.array(ct.volume.spacing)).astype(int)
    expected = [slice(max(lo - g, 0), min(hi + 1 + g, n)) for lo, hi, g, n in
                zip(hits.min(0), hits.max(0), grow, ct.volume.spatial_shape)]
    assert list(box) == expected and box[1].start > 0  # in-plane the margin fits inside the volume
    roi_ct = read_ct_series(folder / "dicom" / "ct")
    assert roi_ct.series_instance_uid != ct.series_instance_uid
    assert roi_ct.frame_of_reference_uid == ct.frame_of_reference_uid and roi_ct.study_instance_uid == ct.study_instance_uid
    np.testing.assert_allclose(roi_ct.volume.affine, ct.volume[box].affine, atol=1e-4)
    np.testing.assert_array_equal(roi_ct.volume.array, ct.volume.array[box])
    first = pydicom.dcmread(sorted((folder / "dicom" / "ct").glob("*.dcm"))[0])
    assert "DERIVED" in first.ImageType and first.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.series_instance_uid
    assert not errors_reported(sorted((folder / "dicom" / "ct").glob("*.dcm"))[0])
    # the ROI SEG on the ROI CT and the NRRD mask hold the consensus L1, the NRRD CT the HU values
    roi_mask = read_seg(folder / "dicom" / "roi_seg.dcm", roi_ct).volume.array == SCHEMA[BONE].id
    np.testing.assert_array_equal(roi_mask, consensus[box] == SCHEMA[BONE].id)
    assert not errors_reported(folder / "dicom" / "roi_seg.dcm")
    nrrd = sitk.ReadImage(str(folder / "mask_roi.nrrd"))
    corner = nrrd.TransformIndexToPhysicalPoint((0, 0, 0))
    np.testing.assert_allclose(corner, ct.volume.map_indices_to_reference(np.array([[b.start for b in box]]))[0], atol=1e-3)
    assert int(sitk.GetArrayFromImage(nrrd).sum()) == int(roi_mask.sum())
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "ct_roi.nrrd")))
    assert sorted(hu.shape) == sorted(roi_mask.shape) and hu.min() == ct.volume.array[box].min()


def test_full_loop_changes_exactly_the_edited_voxels(loop, capsys):
    run, folder, record, ct, store, consensus = loop
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    add, remove = chosen_voxels(consensus, box)
    assert len(add) == 3 and len(remove) == 3
    edit_mask(folder, world(ct, add), world(ct, remove))
    before = store_files(run.root / "seg")
    sr_before = [p for p in (run.root / "seg").rglob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SR"]

    assert run.review("import", str(folder), "--reviewer", "Doe^Jane") == 0
    after = store_files(run.root / "seg")
    assert {k: v for k, v in after.items() if k in before} == before  # originals untouched, none deleted
    new = sorted(set(after) - set(before))
    assert len(new) == 2  # one corrected SEG, one revised SR
    log = pd.read_parquet(run.root / "qc" / "corrections.parquet")
    row = log.iloc[-1]
    assert (row.added, row.removed, row.contested) == (3, 3, 0)

    corrected_ds = store.get(ct.study_instance_uid, row.seg_series_uid, row.seg_sop_uid)
    corrected = read_seg(corrected_ds, ct).volume.array
    changed = {tuple(int(v) for v in p) for p in np.argwhere(corrected != consensus)}
    assert changed == set(add) | set(remove)
    assert all(corrected[p] == SCHEMA[BONE].id for p in add) and all(corrected[p] == 0 for p in remove)
    # a new series that says who corrected what, from which SEG
    assert corrected_ds.SeriesInstanceUID not in {record["base"]["series_uid"]}
    assert str(corrected_ds.ContentCreatorName) == "Doe^Jane"
    assert corrected_ds.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == record["base"]["sop_uid"]
    types = {str(s.SegmentLabel): str(s.SegmentAlgorithmType) for s in corrected_ds.SegmentSequence}
    assert types[SCHEMA[BONE].display_name] == "SEMIAUTOMATIC"
    assert set(types.values()) == {"SEMIAUTOMATIC", "AUTOMATIC"}
    seg_path = next(p for p in (run.root / "seg").rglob(f"{row.seg_sop_uid}.dcm"))
    assert not errors_reported(seg_path)

    # the revised SR: this bone corrected, every other verdict as QC said, replacing the original SR
    revised = store.get(ct.study_instance_uid, row.sr_series_uid, row.sr_sop_uid)
    groups = {g["bone"]: g for g in read_qc_sr(revised)}
    original = {g["bone"]: g for g in read_qc_sr(sr_before[0])}
    assert groups[BONE]["status"] == "corrected" and original[BONE]["status"] == "review"
    assert {b: g["status"] for b, g in groups.items() if b != BONE} == {b: g["status"] for b, g in original.items() if b != BONE}
    assert groups[BONE]["referenced_seg_sop_uid"] == row.seg_sop_uid
    assert np.isclose(groups[BONE]["volume_ml"], (corrected == SCHEMA[BONE].id).sum() * ct.volume.voxel_volume / 1000)
    predecessor = revised.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == str(sr_before[0].stem)
    settings = find_content_item(pydicom.dcmread(sr_before[0]), "TEXT", "111002").TextValue
    assert "review below 0.95" in settings and find_content_item(revised, "TEXT", "111002").TextValue == settings

    # importing the same correction again writes nothing
    capsys.readouterr()
    assert run.review("import", str(folder), "--reviewer", "Doe^Jane") == 0
    assert "already imported" in capsys.readouterr().out
    assert store_files(run.root / "seg") == after
    assert len(pd.read_parquet(run.root / "qc" / "corrections.parquet")) == len(log)
    # and the bone leaves the worklist
    assert run.review("worklist", "--to", str(run.root / "wl-after")) == 0
    items = json.loads((run.root / "wl-after" / "worklist.json").read_text())["items"]
    assert BONE not in {i["bone"] for i in items} and items


def test_correction_json_from_slicer_and_a_second_bone_chain(loop):
    """The Slicer module's correction.json names the reviewer; a second bone starts from the first correction."""
    run, folder, record, ct, store, consensus = loop
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    add, _ = chosen_voxels(consensus, box)
    edit_mask(folder, world(ct, add[:1]), [])
    (folder / "correction.json").write_text(json.dumps({
        "format": "bonehub-correction/1", "item_id": f"{record['series_uid']}/{BONE}", "reviewer": "Roe^Rick",
        "method": "manual", "tool": "3D Slicer Segment Editor", "mask": "corrected.nrrd", "saved_at": "2026-11-22T10:00:00Z"}))
    assert run.review("import", str(folder)) == 0
    second = export(run, "vertebra_T12")
    assert run.review("import", str(second), "--mask", str(second / "mask_roi.nrrd"), "--reviewer", "Doe^Jane") == 0
    log = pd.read_parquet(run.root / "qc" / "corrections.parquet")
    assert list(log.bone) == [BONE, "vertebra_T12"] and list(log.reviewer) == ["Roe^Rick", "Doe^Jane"]
    assert log.base_seg_sop_uid[1] == log.seg_sop_uid[0]  # the chain: T12 was corrected on top of the L1 correction
    latest = store.get(ct.study_instance_uid, log.seg_series_uid[1], log.seg_sop_uid[1])
    types = {str(s.SegmentLabel): str(s.SegmentAlgorithmType) for s in latest.SegmentSequence}
    assert types[SCHEMA[BONE].display_name] == "MANUAL" and types[SCHEMA["vertebra_T12"].display_name] == "SEMIAUTOMATIC"
    first_fix = read_seg(store.get(ct.study_instance_uid, log.seg_series_uid[0], log.seg_sop_uid[0]), ct).volume.array
    np.testing.assert_array_equal(read_seg(latest, ct).volume.array, first_fix)  # T12 imported unchanged
    groups = {g["bone"]: g["status"] for g in read_qc_sr(store.get(ct.study_instance_uid, log.sr_series_uid[1], log.sr_sop_uid[1]))}
    assert groups[BONE] == groups["vertebra_T12"] == "corrected"


@pytest.mark.parametrize("policy", ["keep", "overwrite"])
def test_voxels_a_neighbour_holds_follow_the_policy(loop, policy):
    run, folder, record, ct, store, consensus = loop
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    neighbour = np.argwhere(consensus[box] == SCHEMA["vertebra_T12"].id)[:4] + [b.start for b in box]
    assert len(neighbour) == 4
    claimed = [tuple(int(v) for v in p) for p in neighbour]
    edit_mask(folder, world(ct, claimed), [])
    assert run.review("import", str(folder), "--reviewer", "Doe^Jane", "--neighbours", policy) == 0
    row = pd.read_parquet(run.root / "qc" / "corrections.parquet").iloc[-1]
    assert (row.contested, row.taken, row.added) == ((4, 0, 0) if policy == "keep" else (4, 4, 4))
    corrected = read_seg(store.get(ct.study_instance_uid, row.seg_series_uid, row.seg_sop_uid), ct).volume.array
    owner = SCHEMA["vertebra_T12" if policy == "keep" else BONE].id
    assert all(corrected[p] == owner for p in claimed)
    assert {tuple(int(v) for v in p) for p in np.argwhere(corrected != consensus)} == (set() if policy == "keep" else set(claimed))


def test_export_can_start_from_a_chosen_source(reviewed_sample, capsys):
    run = reviewed_sample
    from results.manifest import read_manifest

    row = next(r for r in read_manifest(run.root / "manifest.parquet").itertuples() if r.source == "TotalSegmentator total fast")
    name = f"{row.source} {row.source_version}"
    folder = export(run, BONE, "--mask-source", name)
    record = json.loads((folder / "item.json").read_text())
    ct = read_ct_series(run.ct_folder)
    fast = read_seg(open_store(run.root / "seg").get(row.study_instance_uid, row.seg_series_instance_uid,
                                                      row.seg_sop_instance_uid), ct).volume.array
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    roi_ct = read_ct_series(folder / "dicom" / "ct")
    exported = read_seg(folder / "dicom" / "roi_seg.dcm", roi_ct).volume.array == SCHEMA[BONE].id
    np.testing.assert_array_equal(exported, fast[box] == SCHEMA[BONE].id)
    assert record["mask_source"] == name
    capsys.readouterr()
    series = record["series_uid"]
    assert run.review("export", "--to", str(run.root / "export"), "--item", f"{series}/{BONE}", "--mask-source", "nobody") == 2
    assert "no source named 'nobody'" in capsys.readouterr().out
