"""The BoneHubReview Slicer module's logic on a real, tiny export folder (SimpleITK-written NRRDs, no Slicer)."""

from __future__ import annotations

import ast
import bz2
import json
import py_compile
import re
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
import SimpleITK as sitk

MODULE_DIR = Path(__file__).resolve().parents[2] / "review" / "slicer" / "BoneHubReview"
sys.path.insert(0, str(MODULE_DIR))  # Slicer puts a scripted module's folder on the path the same way
from BoneHubReviewLib import logic  # noqa: E402

SERIES, STUDY, BONE = "1.2.826.0.1.3680043.8.498.71", "1.2.826.0.1.3680043.8.498.70", "vertebra_T12"
OTHER_SERIES = "1.2.826.0.1.3680043.8.498.81"
SHAPE = (6, 7, 8)  # (slices, rows, columns): all different, so a swapped axis cannot pass
ORIGIN = (-20.5, 10.25, 33.0)


def _roi_affine(origin=ORIGIN) -> np.ndarray:
    """An oblique ROI (10 degrees about z, 5 about x), slices running feet-ward: index (slice, row, column) -> LPS."""
    a, b = np.radians(10.0), np.radians(5.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    x, y, z = (rz @ rx).T
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = -2.5 * z, 0.9 * y, 0.8 * x, origin
    return affine


def _write(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """A NRRD as ``bonehub review export`` writes one: highdicom's Volume.to_simpleitk (NRRD axis 0 = array axis 0)."""
    sitk.WriteImage(hd.Volume(array, affine, "PATIENT").to_simpleitk(), str(path), True)
    return path


def _read(path: Path) -> np.ndarray:
    """The array back in the axis order ``_write`` took it (SimpleITK as the reference reader)."""
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:5, 2:6, 3:7] = 1
    return mask


def _item(series: str, bone: str, roi_seg: bool = True) -> dict:
    return {
        "format": logic.ITEM_FORMAT, "item_id": f"{series}/{bone}", "series_uid": series, "study_uid": STUDY,
        "bone": bone, "bone_meaning": "T12 vertebra", "score": 0.41, "flags": ["cut_off"],
        "outlier_source": "baseline", "mask_source": "consensus",
        "roi": {"start": [3, 40, 50], "stop": [3 + SHAPE[0], 40 + SHAPE[1], 50 + SHAPE[2]], "shape": list(SHAPE),
                "affine": _roi_affine().tolist()},
        "roi_ct": {"study_uid": STUDY, "series_uid": series + ".1"},
        "roi_seg": {"study_uid": STUDY, "series_uid": series + ".2", "sop_uid": series + ".2.1"} if roi_seg else None,
        "store": "",
        "files": {"ct": "ct_roi.nrrd", "mask": "mask_roi.nrrd", "ct_dicom": "dicom/ct",
                  "seg_dicom": "dicom/roi_seg.dcm"},
        "base": {"sop_uid": "9.9"}, "exported_at": "2026-05-01T12:00:00+00:00",  # keys the module must ignore
    }


def _export_item(export: Path, series: str, bone: str) -> Path:
    folder = export / series / bone
    folder.mkdir(parents=True)
    _write(folder / "ct_roi.nrrd", (np.arange(np.prod(SHAPE)).reshape(SHAPE) - 500).astype(np.int16), _roi_affine())
    _write(folder / "mask_roi.nrrd", _mask(), _roi_affine())
    (folder / "item.json").write_text(json.dumps(_item(series, bone)))
    return folder


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    """An export with three worklist items (listed out of order): two exported, one not yet."""
    entries = [
        {"item_id": f"{OTHER_SERIES}/{BONE}", "series_uid": OTHER_SERIES, "study_uid": STUDY, "bone": BONE,
         "score": 0.7, "flags": [], "outlier_source": "", "priority": 3},
        {"item_id": f"{SERIES}/{BONE}", "series_uid": SERIES, "study_uid": STUDY, "bone": BONE, "score": 0.41,
         "flags": ["cut_off", "extra_components"], "outlier_source": "baseline", "priority": 1, "reason": "x"},
        {"item_id": f"{SERIES}/rib_left_10", "series_uid": SERIES, "study_uid": STUDY, "bone": "rib_left_10",
         "score": None, "flags": ["absent_in_one"], "outlier_source": "", "priority": 2},
    ]
    (tmp_path / "worklist.json").write_text(json.dumps({"format": logic.WORKLIST_FORMAT, "items": entries}))
    _export_item(tmp_path, SERIES, BONE)
    _export_item(tmp_path, OTHER_SERIES, BONE)
    return tmp_path


def _folder(export: Path) -> Path:
    return export / SERIES / BONE


# --------------------------------------------------------------------------- worklist and items


def test_worklist_in_priority_order_with_each_items_state(export: Path) -> None:
    export_dir, statuses = logic.list_items(export)
    assert export_dir == export
    assert [(s.entry.priority, s.entry.bone, s.state) for s in statuses] == [
        (1, BONE, "exported"), (2, "rib_left_10", "pending"), (3, BONE, "exported")]
    first = statuses[0]
    assert first.folder == _folder(export)
    assert first.entry.flags == ("cut_off", "extra_components") and first.entry.score == pytest.approx(0.41)
    assert logic.table_row(first, skipped=False) == ("1", SERIES, BONE, "0.41", "cut_off, extra_components",
                                                     "baseline", "exported")
    assert logic.table_row(statuses[1], skipped=True)[3:] == ("-", "absent_in_one", "", "pending")
    assert logic.table_row(statuses[2], skipped=True)[-1] == "skipped"

    # the file itself is accepted as well as its folder; a folder without one is refused
    assert logic.list_items(export / "worklist.json")[0] == export
    with pytest.raises(logic.ReviewError, match="not found; choose the folder"):
        logic.list_items(export / SERIES)
    with pytest.raises(logic.ReviewError, match="^choose the folder"):
        logic.list_items(" ")  # an empty path field is not the current directory


def test_a_correction_on_disk_marks_the_item_corrected(export: Path) -> None:
    folder = _folder(export)
    (folder / logic.CORRECTED_FILE).write_bytes(b"")
    assert logic.item_state(folder) == "exported"  # correction.json is written last: without it, not corrected
    (folder / logic.CORRECTION_FILE).write_text("{}")
    assert logic.item_state(folder) == "corrected"
    assert logic.item_state(export / SERIES / "rib_left_10") == "pending"


@pytest.mark.parametrize(("record", "message"), [
    ({"format": "bonehub-worklist/2", "items": []},
     r"format 'bonehub-worklist/2' is not supported.*reads 'bonehub-worklist/1'"),
    ({"format": "bonehub-review-item/1", "items": []}, r"not a bonehub-worklist file"),
    ({"items": []}, r"not a bonehub-worklist file \(format None"),
    ([1, 2], r"expected a JSON object"),
    ({"format": "bonehub-worklist/1", "items": {}}, r"'items' must be a list"),
])
def test_worklist_with_a_wrong_format_is_refused_by_name(tmp_path: Path, record: object, message: str) -> None:
    (tmp_path / "worklist.json").write_text(json.dumps(record))
    with pytest.raises(logic.ReviewError, match=message):
        logic.read_worklist(tmp_path)


def test_unreadable_worklist_is_refused(tmp_path: Path) -> None:
    (tmp_path / "worklist.json").write_text("{not json")
    with pytest.raises(logic.ReviewError, match="not readable JSON"):
        logic.read_worklist(tmp_path)


@pytest.mark.parametrize(("change", "message"), [
    ({"item_id": "x/y"}, r"item_id 'x/y' is not '<series_uid>/<bone>'"),
    ({"bone": "..", "item_id": f"{SERIES}/.."}, r"bone '\.\.' cannot be a folder name"),
    ({"series_uid": "a/b", "item_id": f"a/b/{BONE}"}, r"series_uid 'a/b' cannot be a folder name"),
    ({"priority": "1"}, r"priority must be an integer"),
    ({"score": "high"}, r"score must be a number or null"),
    ({"flags": "cut_off"}, r"flags must be a list of strings"),
    ({"bone": ""}, r"'bone' must be a non-empty string"),
])
def test_worklist_entries_are_checked(tmp_path: Path, change: dict, message: str) -> None:
    entry = {"item_id": f"{SERIES}/{BONE}", "series_uid": SERIES, "study_uid": STUDY, "bone": BONE,
             "score": 0.5, "flags": [], "outlier_source": "", "priority": 1} | change
    (tmp_path / "worklist.json").write_text(json.dumps({"format": logic.WORKLIST_FORMAT, "items": [entry]}))
    with pytest.raises(logic.ReviewError, match=message):
        logic.read_worklist(tmp_path)


def test_worklist_listing_an_item_twice_is_refused(tmp_path: Path) -> None:
    entry = {"item_id": f"{SERIES}/{BONE}", "series_uid": SERIES, "bone": BONE, "priority": 1}
    (tmp_path / "worklist.json").write_text(json.dumps({"format": logic.WORKLIST_FORMAT, "items": [entry, entry]}))
    with pytest.raises(logic.ReviewError, match="listed twice"):
        logic.read_worklist(tmp_path)


def test_read_item_checks_what_the_module_uses(export: Path) -> None:
    folder = _folder(export)
    item = logic.read_item(folder)
    assert item["item_id"] == f"{SERIES}/{BONE}" and item["base"] == {"sop_uid": "9.9"}  # other keys kept as they are
    assert logic.bone_label(item) == "T12 vertebra"
    assert logic.bone_label({"bone": BONE}) == BONE

    with pytest.raises(logic.ReviewError, match="not exported yet"):
        logic.read_item(export / SERIES / "rib_left_10")

    moved = export / OTHER_SERIES / "rib_left_10"  # an item.json copied into another item's folder
    moved.mkdir()
    (moved / "item.json").write_text((folder / "item.json").read_text())
    with pytest.raises(logic.ReviewError, match=f"describes {SERIES}/{BONE} but lies in {OTHER_SERIES}/rib_left_10"):
        logic.read_item(moved)


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "bonehub-review-item/2"}, r"format 'bonehub-review-item/2' is not supported"),
    ({"files": {"ct": "/etc/ct.nrrd", "mask": "mask_roi.nrrd"}}, r"files.ct must be a path inside the item folder"),
    ({"files": {"ct": "ct_roi.nrrd", "mask": "../mask.nrrd"}}, r"files.mask must be a path inside the item folder"),
    ({"roi": {"shape": [6, 7], "affine": np.eye(4).tolist()}}, r"roi.shape must be three positive integers"),
    ({"roi": {"shape": [6, 7, 8], "affine": [[1, 0, 0], [0, 1, 0]]}}, r"roi.affine must be a 4x4 affine"),
    ({"roi": {"shape": [6, 7, 8], "affine": np.zeros((4, 4)).tolist()}}, r"roi.affine must be a 4x4 affine"),
    ({"roi": {"shape": [6, 7, 8], "affine": np.diag([1.0, 0.0, 1.0, 1.0]).tolist()}}, r"roi.affine is singular"),
    ({"study_uid": None}, r"'study_uid' must be a non-empty string"),
])
def test_a_malformed_item_is_refused(export: Path, change: dict, message: str) -> None:
    path = _folder(export) / "item.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    with pytest.raises(logic.ReviewError, match=message):
        logic.read_item(path.parent)


def test_next_item_goes_down_the_worklist_past_pending_corrected_and_skipped(export: Path) -> None:
    _, statuses = logic.list_items(export)
    first, other = f"{SERIES}/{BONE}", f"{OTHER_SERIES}/{BONE}"
    assert logic.next_item_id(statuses, None, set()) == first
    assert logic.next_item_id(statuses, first, set()) == other  # the pending item in between is passed over
    assert logic.next_item_id(statuses, other, set()) == first  # wraps around
    assert logic.next_item_id(statuses, first, {other}) is None
    (_folder(export) / logic.CORRECTED_FILE).write_bytes(b"")
    (_folder(export) / logic.CORRECTION_FILE).write_text("{}")
    _, statuses = logic.list_items(export)
    assert logic.next_item_id(statuses, None, set()) == other
    assert logic.next_item_id(statuses, other, set()) is None


def test_next_item_continues_after_the_current_one() -> None:
    entries = [logic.WorklistEntry(f"s/b{n}", "s", "t", f"b{n}", None, (), "", n) for n in range(1, 5)]
    states = ["exported", "exported", "corrected", "exported"]
    statuses = [logic.ItemStatus(e, Path("x"), state) for e, state in zip(entries, states)]
    assert logic.next_item_id(statuses, "s/b2", set()) == "s/b4"
    assert logic.next_item_id(statuses, "s/b4", set()) == "s/b1"
    assert logic.next_item_id(statuses, "s/b4", {"s/b1"}) == "s/b2"


# --------------------------------------------------------------------------- geometry and NRRD


def test_nrrd_grid_matches_simpleitk_and_item_roi(export: Path) -> None:
    folder = _folder(export)
    grid = logic.nrrd_grid(logic.read_nrrd_header(folder / "ct_roi.nrrd"))
    roi = logic.roi_grid(logic.read_item(folder))
    assert grid.shape == SHAPE and np.allclose(grid.affine, roi.affine, atol=1e-9)
    image = sitk.ReadImage(str(folder / "ct_roi.nrrd"))
    for index in [(0, 0, 0), (5, 0, 0), (0, 6, 0), (0, 0, 7), (5, 6, 7), (2, 3, 4)]:
        expected = image.TransformIndexToPhysicalPoint(index)  # SimpleITK's index is NRRD's axis order
        assert grid.affine @ [*index, 1] == pytest.approx([*expected, 1.0], abs=1e-9)
    assert logic.grid_mismatch(grid, roi) is None


def test_slicer_ijk_to_ras_is_the_loaded_nrrds_and_accept_exports_onto_it(export: Path) -> None:
    folder = _folder(export)
    item = logic.read_item(folder)
    reference = logic.reference_grid(folder, item)
    image = sitk.ReadImage(str(folder / "ct_roi.nrrd"))
    for index in [(0, 0, 0), (5, 0, 0), (0, 6, 0), (0, 0, 7), (5, 6, 7)]:
        x, y, z = image.TransformIndexToPhysicalPoint(index)
        assert logic.ijk_to_ras(reference) @ [*index, 1] == pytest.approx([-x, -y, z, 1.0], abs=1e-9)  # RAS
    # the reference keeps ct_roi.nrrd's own axis order, even when that is not item.json's
    _write_reversed(folder / "ct_roi.nrrd", np.zeros(SHAPE, np.int16))
    assert logic.reference_grid(folder, item).shape == SHAPE[::-1]
    (folder / "ct_roi.nrrd").unlink()  # exported as DICOM only: item.json's ROI
    only_roi = logic.reference_grid(folder, item)
    assert only_roi.shape == SHAPE and np.allclose(only_roi.affine, _roi_affine())
    _write(folder / "ct_roi.nrrd", np.zeros(SHAPE, np.int16), _roi_affine(origin=(0.0, 0.0, 0.0)))
    with pytest.raises(logic.ReviewError, match="ct_roi.nrrd: its grid is up to .* mm off the ROI grid"):
        logic.reference_grid(folder, item)


def _write_reversed(path: Path, array: np.ndarray) -> Path:
    """The ROI's voxels as ``_write`` puts them, axes reversed (SimpleITK.GetImageFromArray of a (k, j, i) array)."""
    affine = _roi_affine()
    reversed_affine = np.eye(4)
    reversed_affine[:3, :3], reversed_affine[:3, 3] = affine[:3, 2::-1], affine[:3, 3]
    return _write(path, array.transpose(2, 1, 0), reversed_affine)


def _raw_nrrd(path: Path, array: np.ndarray, grid: logic.Grid, space: str, encoding: str, endian: str) -> Path:
    """A NRRD written by hand, to read encodings and spaces that SimpleITK does not write."""
    sign = np.array([-1.0, -1.0, 1.0]) if space == "right-anterior-superior" else np.ones(3)
    vector = lambda v: "(" + ",".join(repr(float(x)) for x in v) + ")"  # noqa: E731
    payload = array.transpose(2, 1, 0).astype(array.dtype.newbyteorder(">" if endian == "big" else "<")).tobytes()
    payload = bz2.compress(payload) if encoding == "bzip2" else payload
    header = (f"NRRD0004\n# hand-written\ntype: {array.dtype.name}\ndimension: 3\nspace: {space}\n"
              f"sizes: {' '.join(map(str, grid.shape))}\n"
              f"space directions: {' '.join(vector(grid.affine[:3, a] * sign) for a in range(3))}\n"
              f"kinds: domain domain domain\nendian: {endian}\nencoding: {encoding}\n"
              f"space origin: {vector(grid.affine[:3, 3] * sign)}\nsegment0:=ignored\n\n")
    path.write_bytes(header.encode() + payload)
    return path


@pytest.mark.parametrize(("space", "encoding", "endian", "dtype"), [
    ("right-anterior-superior", "raw", "little", np.int16),
    ("left-posterior-superior", "bzip2", "big", np.int32),
    ("left-posterior-superior", "raw", "big", np.uint8),
])
def test_nrrd_reader_handles_spaces_encodings_and_byte_order(export: Path, space: str, encoding: str, endian: str,
                                                            dtype: type) -> None:
    grid = logic.roi_grid(logic.read_item(_folder(export)))
    array = (np.arange(np.prod(SHAPE)) % 97).reshape(SHAPE).astype(dtype)
    header = logic.read_nrrd_header(_raw_nrrd(export / "x.nrrd", array, grid, space, encoding, endian))
    assert np.allclose(logic.nrrd_grid(header).affine, grid.affine, atol=1e-9)
    assert np.array_equal(logic.read_nrrd_array(header), array)


def test_nrrd_reader_reads_simpleitk_gzip_data(export: Path) -> None:
    header = logic.read_nrrd_header(_folder(export) / "mask_roi.nrrd")
    assert header.fields["encoding"] == "gzip"
    assert np.array_equal(logic.read_nrrd_array(header), _mask())


def test_nrrd_reader_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "a.nrrd").write_bytes(b"P5 not a nrrd\n")
    with pytest.raises(logic.ReviewError, match="not a NRRD file"):
        logic.read_nrrd_header(tmp_path / "a.nrrd")
    (tmp_path / "b.nhdr").write_bytes(b"NRRD0004\ntype: uchar\ndimension: 3\ndata file: b.raw\n\n")
    with pytest.raises(logic.ReviewError, match="detached NRRD data is not supported"):
        logic.read_nrrd_header(tmp_path / "b.nhdr")
    (tmp_path / "c.nrrd").write_bytes(b"NRRD0004\ntype: uchar\ndimension: 4\nsizes: 1 1 1 1\n\n\0")
    with pytest.raises(logic.ReviewError, match="a 4-D NRRD"):
        logic.nrrd_grid(logic.read_nrrd_header(tmp_path / "c.nrrd"))
    with pytest.raises(logic.ReviewError, match="file not found|cannot read"):
        logic.read_nrrd_header(tmp_path / "missing.nrrd")


def test_grid_mismatch_allows_any_axis_order_but_not_another_lattice(export: Path) -> None:
    grid = logic.roi_grid(logic.read_item(_folder(export)))
    variants = list(grid.reindexed())
    assert len(variants) == 48 and all(logic.grid_mismatch(v, grid) is None for v in variants)
    assert len({tuple(np.round(v.affine, 9).ravel()) for v in variants}) == 48  # each a different indexing

    moved = grid.affine.copy()
    moved[0, 3] += 0.002
    assert "up to 0.002 mm off the ROI grid" in logic.grid_mismatch(logic.Grid(moved, grid.shape), grid)
    moved[0, 3] -= 0.0016
    assert logic.grid_mismatch(logic.Grid(moved, grid.shape), grid) is None  # 0.4 micrometre: within tolerance
    assert logic.grid_mismatch(logic.Grid(grid.affine, (5, 7, 8)), grid) == (
        "its size 5x7x8 voxels does not match the ROI's 6x7x8 in any axis order")
    # a spacing error grows across the grid: caught at the far corner although the origin is right
    stretched = grid.affine.copy()
    stretched[:3, 0] *= 1.0002
    assert "mm off the ROI grid" in logic.grid_mismatch(logic.Grid(stretched, grid.shape), grid)
    # one slice thick: its thickness still counts (voxel boxes, not only voxel centres, are compared)
    thin = logic.Grid(np.diag([2.5, 0.9, 0.8, 1.0]), (1, 7, 8))
    assert "0.25 mm off" in logic.grid_mismatch(logic.Grid(np.diag([3.0, 0.9, 0.8, 1.0]), (1, 7, 8)), thin)
    # the same outer box cut into other voxels (10 x 1 mm vs 5 x 2 mm along two axes) is another grid
    box = logic.Grid(np.diag([1.0, 1.0, 2.0, 1.0]), (3, 10, 5))
    other = logic.Grid(np.array([[1, 0, 0, 0], [0, 0, 2, 0.5], [0, 1, 0, -0.5], [0, 0, 0, 1.0]]), (3, 10, 5))
    assert np.allclose(np.sort(box.box_corners(), axis=0), np.sort(other.box_corners(), axis=0))
    assert "mm off the ROI grid" in logic.grid_mismatch(other, box)


# --------------------------------------------------------------------------- loading


def test_plan_load_uses_the_exported_files_when_no_url_is_given(export: Path) -> None:
    folder = _folder(export)
    plan = logic.plan_load(folder, logic.read_item(folder))
    assert (plan.source, plan.ct_path, plan.mask_path, plan.request) == (
        "files", folder / "ct_roi.nrrd", folder / "mask_roi.nrrd", None)


def test_plan_load_refuses_files_off_the_roi_grid(export: Path) -> None:
    folder = _folder(export)
    _write(folder / "mask_roi.nrrd", _mask(), _roi_affine(origin=(ORIGIN[0] + 1.0, ORIGIN[1], ORIGIN[2])))
    with pytest.raises(logic.ReviewError, match=r"mask_roi.nrrd: its grid is up to 1 mm off the ROI grid.*re-export"):
        logic.plan_load(folder, logic.read_item(folder))


def test_plan_load_with_a_dicomweb_url_asks_for_the_roi_series(export: Path) -> None:
    folder = _folder(export)
    url = " https://pacs.example.org/dicom-web/studies/ "
    plan = logic.plan_load(folder, logic.read_item(folder), url, "Bearer abc.def")
    assert plan.source == "dicomweb" and plan.ct_path is None
    assert plan.request == logic.DicomWebRequest(
        "https://pacs.example.org/dicom-web", "abc.def", logic.SeriesRef(STUDY, SERIES + ".1"),
        logic.SeriesRef(STUDY, SERIES + ".2"))


def test_plan_load_falls_back_to_the_items_store_then_refuses(export: Path) -> None:
    folder = _folder(export)
    (folder / "ct_roi.nrrd").unlink()
    item = logic.read_item(folder) | {"store": "http://localhost:8042/dicom-web/", "roi_seg": None}
    plan = logic.plan_load(folder, item, token="")
    assert plan.request == logic.DicomWebRequest("http://localhost:8042/dicom-web", None,
                                                 logic.SeriesRef(STUDY, SERIES + ".1"), None)
    with pytest.raises(logic.ReviewError, match="ct_roi.nrrd missing and no DICOMweb URL given"):
        logic.plan_load(folder, item | {"store": "gs://bucket/prefix"})
    with pytest.raises(logic.ReviewError, match="names no ROI CT series"):
        logic.plan_load(folder, item | {"roi_ct": None})
    with pytest.raises(logic.ReviewError, match="roi_seg needs study_uid and series_uid"):
        logic.plan_load(folder, item | {"roi_seg": {"series_uid": "1.2"}})


@pytest.mark.parametrize(("url", "expected"), [
    ("https://h.org/dicomweb", "https://h.org/dicomweb"),
    ("https://h.org/dicomweb///", "https://h.org/dicomweb"),
    ("http://localhost:8042/dicom-web/studies", "http://localhost:8042/dicom-web"),
    ("  https://h.org  ", "https://h.org"),
])
def test_endpoint_normalisation(url: str, expected: str) -> None:
    assert logic.normalize_endpoint(url) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://h.org/x", "must start with http:// or https://"),
    ("h.org/dicomweb", "must start with http:// or https://"),
    ("https:///dicomweb", "must start with http:// or https://"),
    ("https://h.org/dicomweb?x=1", "without '\\?' or '#'"),
])
def test_bad_endpoints_are_refused(url: str, message: str) -> None:
    with pytest.raises(logic.ReviewError, match=message):
        logic.normalize_endpoint(url)


def test_token_normalisation_and_header() -> None:
    assert logic.normalize_token("  ") is None
    assert logic.normalize_token("bearer  ya29.token ") == "ya29.token"
    assert logic.auth_headers("ya29.token") == {"Authorization": "Bearer ya29.token"}
    assert logic.auth_headers(None) == {}
    with pytest.raises(logic.ReviewError, match="one word"):
        logic.normalize_token("two words")


class _Store(BaseHTTPRequestHandler):
    """A QIDO-RS endpoint that wants the token 'secret' and records what it was asked."""

    seen: list[tuple[str, str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        _Store.seen.append((self.path, self.headers.get("Authorization", ""), self.headers.get("Accept", "")))
        ok = self.headers.get("Authorization") == "Bearer secret"
        body = b"[]" if ok else b"{}"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def store_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Store.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web/"
    server.shutdown()
    server.server_close()


def test_check_dicomweb_sends_the_token_and_names_a_refusal(store_url: str) -> None:
    assert logic.check_dicomweb(store_url, "Bearer secret").endswith("/dicom-web answers (HTTP 200)")
    assert _Store.seen[-1] == ("/dicom-web/studies?limit=1", "Bearer secret", "application/dicom+json")
    with pytest.raises(logic.ReviewError, match=r"refused access \(HTTP 401\): check the access token"):
        logic.check_dicomweb(store_url, "wrong")
    assert _Store.seen[-1][1] == "Bearer wrong"


def test_check_dicomweb_names_an_unreachable_store() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Store) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    with pytest.raises(logic.ReviewError, match=f"cannot reach http://127.0.0.1:{port}"):
        logic.check_dicomweb(f"http://127.0.0.1:{port}", timeout_s=2.0)


# --------------------------------------------------------------------------- accepting a correction


def _partial(folder: Path, array: np.ndarray, origin=ORIGIN) -> Path:
    return _write(folder / logic.PARTIAL_FILE, array, _roi_affine(origin))


def test_accept_turns_a_checked_label_map_into_a_correction(export: Path) -> None:
    folder = _folder(export)
    item = logic.read_item(folder)
    corrected = _mask().astype(np.int16) * 7  # Slicer exports short; any one nonzero value is the bone
    corrected[4, 5, 6] = 7
    path = logic.finalize_correction(folder, item, _partial(folder, corrected), " Dr. Ada ", "semiautomatic")

    assert path == folder / "correction.json"
    assert not (folder / logic.PARTIAL_FILE).exists()
    assert np.array_equal(_read(folder / "corrected.nrrd"), corrected)
    record = json.loads(path.read_text())
    saved_at = record.pop("saved_at")
    assert record == {"format": "bonehub-correction/1", "item_id": f"{SERIES}/{BONE}", "reviewer": "Dr. Ada",
                      "method": "semiautomatic", "tool": "SlicerNNInteractive", "mask": "corrected.nrrd"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", saved_at)
    assert datetime.fromisoformat(saved_at).utcoffset().total_seconds() == 0
    assert logic.item_state(folder) == "corrected"
    assert logic.validate_corrected_labelmap(folder / "corrected.nrrd", item) == (7, int(corrected.astype(bool).sum()))
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_a_second_accept_replaces_the_first(export: Path) -> None:
    folder = _folder(export)
    item = logic.read_item(folder)
    logic.finalize_correction(folder, item, _partial(folder, _mask()), "Ada", "semiautomatic")
    smaller = _mask()
    smaller[1] = 0
    logic.finalize_correction(folder, item, _partial(folder, smaller), "Bob", "manual")
    record = json.loads((folder / "correction.json").read_text())
    assert (record["reviewer"], record["method"], record["tool"]) == ("Bob", "manual", "3D Slicer Segment Editor")
    assert np.array_equal(_read(folder / "corrected.nrrd"), smaller)


def test_accept_takes_the_roi_voxels_in_another_axis_order(export: Path) -> None:
    """Exported against a CT Slicer loaded from DICOM, or by SimpleITK from a (k, j, i) array: same voxels."""
    folder = _folder(export)
    item = logic.read_item(folder)
    _write_reversed(folder / logic.PARTIAL_FILE, _mask())
    assert logic.validate_corrected_labelmap(folder / logic.PARTIAL_FILE, item) == (1, int(_mask().sum()))
    flipped = _roi_affine()
    flipped[:3, 3] += (SHAPE[0] - 1) * flipped[:3, 0]
    flipped[:3, 0] *= -1
    _write(folder / logic.PARTIAL_FILE, _mask()[::-1], flipped)  # slices the other way round
    logic.finalize_correction(folder, item, folder / logic.PARTIAL_FILE, "Ada", "semiautomatic")
    assert logic.item_state(folder) == "corrected"


def test_an_interrupted_accept_leaves_no_correction_json_behind(export: Path) -> None:
    folder = _folder(export)
    item = logic.read_item(folder)
    logic.finalize_correction(folder, item, _partial(folder, _mask()), "Ada", "manual")
    (folder / "corrected.nrrd").unlink()
    (folder / "corrected.nrrd").mkdir()  # the rename onto it fails, as a full disk or a crash would stop it
    (folder / "corrected.nrrd" / "x").write_text("x")
    with pytest.raises(OSError):
        logic.finalize_correction(folder, item, _partial(folder, _mask()), "Bob", "manual")
    assert not (folder / "correction.json").exists() and logic.item_state(folder) == "exported"


def _two_labels() -> np.ndarray:
    array = _mask()
    array[0, 0, 0] = 2
    return array


@pytest.mark.parametrize(("make", "message"), [
    (lambda f: _partial(f, _mask(), origin=(ORIGIN[0], ORIGIN[1] + 0.01, ORIGIN[2])),
     r"not on the ROI grid: its grid is up to 0.01 mm off.*ROI CT as reference geometry"),
    (lambda f: _write(f / logic.PARTIAL_FILE, np.ones((6, 7, 9), np.uint8), _roi_affine()),
     r"not on the ROI grid: its size 6x7x9 voxels does not match the ROI's 6x7x8 in any axis order"),
    (lambda f: _write(f / logic.PARTIAL_FILE, np.ones((8, 7, 6), np.uint8), _roi_affine()),
     r"not on the ROI grid: its grid is up to .* mm off"),  # the ROI's sizes on the wrong axes
    (lambda f: _partial(f, np.zeros(SHAPE, np.uint8)), r"the corrected segment is empty"),
    (lambda f: _partial(f, _two_labels()), r"holds 2 labels \[1, 2\]; a correction holds exactly one"),
    (lambda f: _partial(f, _mask().astype(np.float32)), r"voxel type float32 is not a label map"),
])
def test_accept_refuses_a_label_map_that_is_not_one_bone_on_the_roi_grid(export: Path, make, message: str) -> None:
    folder = _folder(export)
    item = logic.read_item(folder)
    logic.finalize_correction(folder, item, _partial(folder, _mask()), "Ada", "manual")
    before = {name: (folder / name).read_bytes() for name in ("corrected.nrrd", "correction.json")}
    with pytest.raises(logic.ReviewError, match=message):
        logic.finalize_correction(folder, item, make(folder), "Bob", "semiautomatic")
    assert {name: (folder / name).read_bytes() for name in before} == before  # the earlier correction stands


@pytest.mark.parametrize(("reviewer", "method", "message"), [
    ("  ", "semiautomatic", "enter the reviewer's name"),
    ("Ada\nLovelace", "semiautomatic", "one line of printable text"),
    ("Ada", "automatic", "method 'automatic' is not one of"),
])
def test_accept_needs_a_reviewer_and_a_known_method(export: Path, reviewer: str, method: str, message: str) -> None:
    folder = _folder(export)
    partial = _partial(folder, _mask())
    with pytest.raises(logic.ReviewError, match=message):
        logic.finalize_correction(folder, logic.read_item(folder), partial, reviewer, method)
    assert partial.exists() and logic.item_state(folder) == "exported"


def test_atomic_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "correction.json"
    target.write_text("old")
    logic.atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["correction.json"]
    with pytest.raises(FileNotFoundError):
        logic.atomic_write_text(tmp_path / "missing" / "x.json", "x")


# --------------------------------------------------------------------------- the Slicer module's source


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), feature_version=(3, 9))):  # Slicer 5.6/5.8 run Python 3.9
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


PROJECT_PACKAGES = {"labels", "dicom_io", "models", "qc", "review", "pipeline", "sr_templates", "bench"}
SCENE = MODULE_DIR / "BoneHubReviewLib" / "scene.py"  # the one BoneHubReviewLib module that uses Slicer
SLICER_FILES = (MODULE_DIR / "BoneHubReview.py", SCENE)
SLICER_FREE = sorted(p for p in (MODULE_DIR / "BoneHubReviewLib").glob("*.py") if p != SCENE)


def _imports_scene(path: Path) -> bool:
    """Whether ``path`` imports the scene module (``from . import scene``, ``from .scene import ...`` or absolutely)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module or ''}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        if any(name.split(".")[-1] == "scene" for name in names):
            return True
    return False


def test_module_compiles_and_imports_only_what_slicer_has(tmp_path: Path) -> None:
    for path in SLICER_FILES:
        py_compile.compile(str(path), cfile=str(tmp_path / "m.pyc"), doraise=True)
        imports = _imports(path)
        assert not imports & PROJECT_PACKAGES, path.name
        assert imports - set(sys.stdlib_module_names) <= {"slicer", "qt", "ctk", "vtk", "numpy", "DICOMLib",
                                                                "BoneHubReviewLib"}, path.name
    assert {"slicer", "qt", "ctk", "BoneHubReviewLib"} <= _imports(MODULE_DIR / "BoneHubReview.py")
    assert {"slicer", "vtk"} <= _imports(SCENE)


def test_logic_needs_only_the_standard_library_and_numpy() -> None:
    imports = _imports(MODULE_DIR / "BoneHubReviewLib" / "logic.py")
    assert imports - set(sys.stdlib_module_names) == {"numpy"}
    assert MODULE_DIR / "BoneHubReviewLib" / "logic.py" in SLICER_FREE
    for path in SLICER_FREE:  # every BoneHubReviewLib module but scene.py: importable without Slicer
        assert _imports(path) - set(sys.stdlib_module_names) <= {"numpy"}, path.name
        assert not _imports_scene(path), f"{path.name} imports scene.py, which needs Slicer"
    assert _imports_scene(MODULE_DIR / "BoneHubReview.py")


def _logic_alias(tree: ast.Module) -> str:
    """The name a file gives ``BoneHubReviewLib.logic`` (``from BoneHubReviewLib import logic as X`` or
    ``from . import logic as X`` inside BoneHubReviewLib)."""
    lib = {("BoneHubReviewLib", 0), (None, 1)}
    return next(a.asname for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module, node.level) in lib for a in node.names if a.name == "logic")


def test_module_calls_only_logic_names_that_exist() -> None:
    all_used = set()
    for path in SLICER_FILES:
        tree = ast.parse(path.read_text())
        alias = _logic_alias(tree)
        used = {node.attr for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == alias}
        assert used and not {name for name in used if not hasattr(logic, name)}, path.name
        all_used |= used
    assert {"list_items", "plan_load", "finalize_correction", "ijk_to_ras", "check_dicomweb"} <= all_used


def test_extension_cmake_installs_every_module_file() -> None:
    listed = set(re.findall(r"^\s+(\S+\.py)\s*$", (MODULE_DIR / "CMakeLists.txt").read_text(), re.M))
    listed = {name.replace("${MODULE_NAME}", "BoneHubReview") for name in listed}
    present = {str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert listed == present
    assert "add_subdirectory(BoneHubReview)" in (MODULE_DIR.parent / "CMakeLists.txt").read_text()
