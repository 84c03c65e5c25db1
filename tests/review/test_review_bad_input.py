"""Bad corrections and stale items: a clear error naming the problem, and nothing written.

"Nothing written" is checked on everything review writes to: the store's files
(byte for byte) and the corrections log.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from dicom_io.ct_series import read_ct_series
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_writer import write_seg
from labels.schema import default_schema
from tests.review.test_review_loop import BONE, edit_mask, export, store_files

SCHEMA = default_schema()


def written(run) -> tuple[dict[str, str], bytes | None]:
    log = run.root / "qc" / "corrections.parquet"
    return store_files(run.root / "seg"), log.read_bytes() if log.exists() else None


def refused(run, capsys, folder, *args: str) -> str:
    """Run an import that must fail; return what it printed, after checking nothing was written."""
    before = written(run)
    capsys.readouterr()
    assert run.review("import", str(folder), "--reviewer", "Doe^Jane", *args) == 2
    assert written(run) == before
    return " ".join(capsys.readouterr().out.split())


@pytest.fixture
def item(reviewed_sample):
    return reviewed_sample, export(reviewed_sample)


def test_a_correction_on_another_grid_is_refused(item, capsys, tmp_path):
    run, folder = item
    image = sitk.ReadImage(str(folder / "mask_roi.nrrd"))
    shifted = sitk.Image(image)
    shifted.SetOrigin([o + 0.5 * s for o, s in zip(image.GetOrigin(), image.GetSpacing())])  # half a voxel off
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nrrd"))
    out = refused(run, capsys, folder, "--mask", str(tmp_path / "shifted.nrrd"))
    assert "CorrectionGridError" in out and "neither the ROI grid" in out and folder.name in out
    resampled = sitk.Resample(image, [n * 2 for n in image.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                              image.GetOrigin(), [s / 2 for s in image.GetSpacing()], image.GetDirection())
    sitk.WriteImage(resampled, str(tmp_path / "finer.nrrd"))
    assert "neither the ROI grid" in refused(run, capsys, folder, "--mask", str(tmp_path / "finer.nrrd"))


def test_a_correction_from_another_item_or_series_is_refused(item, capsys, tmp_path):
    run, folder = item
    other = export(run, "vertebra_T12")
    out = refused(run, capsys, folder, "--mask", str(other / "mask_roi.nrrd"))  # another bone's ROI grid
    assert "neither the ROI grid" in out
    # a SEG made on another series (same pixels, new series and frame of reference)
    roi_ct = read_ct_series(folder / "dicom" / "ct")
    volume = roi_ct.volume
    copy = tmp_path / "other-series"
    from dicom_io.ct_writer import write_ct_series

    import highdicom as hd

    write_ct_series(hd.Volume(np.asarray(volume.array), volume.affine, "PATIENT"), copy, study_instance_uid=roi_ct.study_instance_uid,
                    series_instance_uid="1.2.826.0.1.3680043.10.1410.21", frame_of_reference_uid="1.2.826.0.1.3680043.10.1410.22")
    other_ct = read_ct_series(copy)
    mask = sitk.GetArrayViewFromImage(sitk.ReadImage(str(folder / "mask_roi.nrrd")))
    labels = (read_seg_like(folder, roi_ct) > 0).astype(np.uint16) * SCHEMA[BONE].id
    assert labels.sum() > 0 and mask.sum() > 0
    seg = write_seg(labels, other_ct, SegmentationSource("3D Slicer", "5.8"), seg_type="binary")
    seg.save_as(tmp_path / "other.dcm")
    out = refused(run, capsys, folder, "--mask", str(tmp_path / "other.dcm"))
    assert "frame of reference" in out and "1.2.826.0.1.3680043.10.1410.22" in out


def read_seg_like(folder, roi_ct) -> np.ndarray:
    from dicom_io.seg_reader import read_seg

    return read_seg(folder / "dicom" / "roi_seg.dcm", roi_ct).volume.array


def test_a_mask_with_extra_labels_is_refused(item, capsys):
    run, folder = item
    edited = edit_mask(folder, [], [], out="two-labels.nrrd")
    image = sitk.ReadImage(str(edited))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = 2
    relabelled = sitk.GetImageFromArray(array)
    relabelled.CopyInformation(image)
    sitk.WriteImage(relabelled, str(edited))
    out = refused(run, capsys, folder, "--mask", str(edited))
    assert "CorrectionLabelError" in out and "labels [1, 2]" in out


def test_a_stale_item_is_refused(item, capsys):
    run, folder = item
    first = edit_mask(folder, [], [], out="first.nrrd")
    image = sitk.ReadImage(str(first))
    array = sitk.GetArrayFromImage(image)
    array[tuple(np.argwhere(array)[0])] = 0
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(image)
    sitk.WriteImage(changed, str(first))
    assert run.review("import", str(folder), "--reviewer", "Doe^Jane", "--mask", str(first)) == 0
    # the same exported item corrected differently afterwards: the stored bone is no longer what was exported
    out = refused(run, capsys, folder, "--mask", str(folder / "mask_roi.nrrd"))
    assert "StaleItemError" in out and "changed since the item was exported" in out
    # exporting the corrected bone again is refused too, and so is a worklist item QC no longer doubts
    capsys.readouterr()
    series = json.loads((folder / "item.json").read_text())["series_uid"]
    assert run.review("export", "--to", str(run.root / "export"), "--item", f"{series}/{BONE}") == 2
    assert "already corrected by Doe^Jane" in capsys.readouterr().out


def test_an_item_qc_no_longer_doubts_is_stale(item, capsys):
    run, folder = item
    from pipeline.cli import main

    assert main(["qc", *run.place_args]) == 0  # default threshold 0.8: L1 (0.92) is accepted now
    capsys.readouterr()
    series = json.loads((folder / "item.json").read_text())["series_uid"]
    assert run.review("export", "--to", str(run.root / "export"), "--item", f"{series}/{BONE}") == 2
    assert "QC now says 'accept', not review" in capsys.readouterr().out


def test_one_bad_item_does_not_stop_the_others(item, capsys, tmp_path):
    run, folder = item
    good = export(run, "vertebra_T12")
    broken = tmp_path / "not-an-item"
    broken.mkdir()
    capsys.readouterr()
    assert run.review("import", str(broken), str(good), "--reviewer", "Doe^Jane", "--mask", str(good / "mask_roi.nrrd")) == 2
    out = capsys.readouterr().out
    assert f"failed: {broken}" in out and "not a readable review item" in out and "import: 1 done, 1 failed" in out
