"""ROI export and write-back are exact on a CT whose direction is not the identity and whose origin is not zero.

The sample CT is rewritten turned 30° about z and 12° about x with its origin
moved; its two real TotalSegmentator results are moved onto that grid, voxel
for voxel. A correction edited at world coordinates must land on exactly the
CT voxels at those coordinates, whether it comes as NRRD on the ROI grid, as
NIfTI on the full grid (stored RAS, axes flipped) or as a DICOM SEG.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from dicom_io.ct_series import read_ct_series
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import write_seg
from labels.schema import default_schema
from tests.review.test_review_loop import chosen_voxels, edit_mask, exported_item, world

SCHEMA = default_schema()
BONE = "vertebra_L1"


@pytest.fixture
def oblique_item(oblique_run):
    return exported_item(oblique_run, BONE)


def test_the_test_ct_is_oblique(oblique_item):
    _, _, _, ct, _, _ = oblique_item
    direction = ct.volume.direction
    assert not np.allclose(np.abs(direction), np.eye(3), atol=0.1) and np.abs(ct.volume.position).min() > 40


def test_roi_export_is_exact_on_an_oblique_grid(oblique_item):
    run, folder, record, ct, store, consensus = oblique_item
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    roi_ct = read_ct_series(folder / "dicom" / "ct")
    np.testing.assert_allclose(roi_ct.volume.affine, ct.volume[box].affine, atol=1e-4)
    np.testing.assert_array_equal(roi_ct.volume.array, ct.volume.array[box])
    # every ROI voxel centre is the CT voxel centre at the same world point, in the NRRD too (read by SimpleITK)
    nrrd = sitk.ReadImage(str(folder / "mask_roi.nrrd"))
    corners = np.array([[0, 0, 0], [s.stop - s.start - 1 for s in box]])
    on_ct = ct.volume.map_indices_to_reference(corners + [b.start for b in box])
    for index, point in zip(corners, on_ct):
        in_nrrd = nrrd.TransformPhysicalPointToContinuousIndex([float(v) for v in point])
        assert np.allclose(in_nrrd, np.round(in_nrrd), atol=1e-3)  # a voxel centre of the NRRD
    mask = sitk.GetArrayFromImage(nrrd)
    assert int(mask.sum()) == int((consensus[box] == SCHEMA[BONE].id).sum()) > 0


@pytest.mark.parametrize("form", ["roi nrrd", "full-grid nifti", "seg on the roi ct"])
def test_write_back_is_exact_on_an_oblique_grid(oblique_item, form, tmp_path):
    run, folder, record, ct, store, consensus = oblique_item
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    add, remove = chosen_voxels(consensus, box)
    edited = edit_mask(folder, world(ct, add), world(ct, remove), out="edited.nrrd")
    if form == "full-grid nifti":
        roi = sitk.GetArrayFromImage(sitk.ReadImage(str(edited)))
        full = np.zeros(ct.volume.spatial_shape, np.uint8)
        # place the ROI edit into the full CT grid through world coordinates, via SimpleITK resampling
        reference = ct.volume.with_array(full).to_simpleitk()
        moved = sitk.Resample(sitk.ReadImage(str(edited)), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        assert sitk.GetArrayFromImage(moved).sum() == roi.sum()
        edited = tmp_path / "corrected.nii.gz"
        sitk.WriteImage(moved, str(edited))  # NIfTI stores RAS: the reader must undo the flips
    elif form == "seg on the roi ct":
        roi_ct = read_ct_series(folder / "dicom" / "ct")
        from review.correction import load_corrected_mask

        mask = load_corrected_mask(edited, record)  # the same edit, as the ROI grid array
        seg = write_seg(mask.astype(np.uint16) * SCHEMA[BONE].id, roi_ct, SegmentationSource("3D Slicer", "5.8"), seg_type="binary")
        edited = tmp_path / "corrected.dcm"
        seg.save_as(edited)
    assert run.review("import", str(folder), "--mask", str(edited), "--reviewer", "Doe^Jane", "--method", "manual") == 0
    row = pd.read_parquet(run.root / "qc" / "corrections.parquet").iloc[-1]
    corrected = read_seg(store.get(ct.study_instance_uid, row.seg_series_uid, row.seg_sop_uid), ct).volume.array
    changed = {tuple(int(v) for v in p) for p in np.argwhere(corrected != consensus)}
    assert changed == set(add) | set(remove)
