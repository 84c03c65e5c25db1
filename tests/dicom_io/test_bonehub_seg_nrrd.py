"""BoneHub masks read by Slicer's and BoneHub's conventions: tags, names only, layers with overlap, v1 NIfTI; bad masks."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from dicom_io.bonehub_seg_nrrd import (LAYOUT_V1, LAYOUT_V2, BoneHubMaskError, mask_layout, read_bonehub_mask,
                                       subject_statuses, write_bonehub_seg_nrrd)
from dicom_io.errors import DicomInputError
from dicom_io.slicer_seg_nrrd import SegNrrdError, read_slicer_segmentation
from labels.bonehub_status import BoneHubStatus
from labels.label_sets import LabelSet, NativeLabel
from tests.support.slicer_seg_files import Seg, bonehub_tags, write_slicer_file

L1, L2, FEMUR_LEFT, FEMUR = 230100000, 230200000, 710000001, 710000000
V2 = LabelSet("bonehub_v2", [NativeLabel(L1, "VERTEBRA_L1", "vertebra_L1", False),
                             NativeLabel(L2, "VERTEBRA_L2", "vertebra_L2", False),
                             NativeLabel(FEMUR_LEFT, "FEMUR_LEFT", "femur_left", False),
                             NativeLabel(FEMUR, "FEMUR", "femur", True)])
V1 = LabelSet("bonehub_v1", [NativeLabel(2301, "VERTEBRA_L1", "vertebra_L1", False),
                             NativeLabel(2302, "VERTEBRA_L2", "vertebra_L2", False)])


def _two_blocks() -> np.ndarray:
    layer = np.zeros((4, 5, 6), np.uint8)
    layer[0:2, 1:3, 1:3] = 1
    layer[2:4, 1:3, 3:5] = 2
    return layer


def _xyz(array: np.ndarray) -> np.ndarray:
    return array.transpose(2, 1, 0)


def test_tags_give_value_and_status(tmp_path):
    path = write_slicer_file(tmp_path / "001_000001.seg.nrrd", [_two_blocks()], [
        Seg("VERTEBRA_L1", 1, tags=bonehub_tags("VERTEBRA_L1", L1, 33)),
        Seg("renamed in Slicer", 2, tags=bonehub_tags("VERTEBRA_L2", L2, 10))])
    mask = read_bonehub_mask(path, V2)
    assert mask.layout == LAYOUT_V2 == mask_layout(path)
    assert [(s.value, s.name, int(s.status)) for s in mask.segments] == [(L1, "VERTEBRA_L1", 33), (L2, "VERTEBRA_L2", 10)]
    values = mask.value_volume()
    assert set(np.unique(values.array)) == {0, L1, L2} and values.array.dtype == np.int32
    assert np.array_equal(values.array == L1, _xyz(_two_blocks() == 1))  # highdicom indexes the file's (x, y, z)
    assert np.allclose(values.spacing, (1.0, 1.0, 2.0))


def test_names_only_segments_are_labels_with_unknown_status(tmp_path):
    path = write_slicer_file(tmp_path / "m.seg.nrrd", [_two_blocks()], [
        Seg("VERTEBRA_L1", 1), Seg("VERTEBRA_L2", 2, tags={"TerminologyEntry": "x~y"})])
    mask = read_bonehub_mask(path, V2, {"VERTEBRA_L2": BoneHubStatus.parse(31)})
    assert [(s.value, s.status) for s in mask.segments] == [(L1, None), (L2, BoneHubStatus.parse(31))]


def test_two_layers_with_overlap_are_read_per_layer(tmp_path):
    whole = np.zeros((4, 5, 6), np.uint8)
    whole[:, 1:4, 1:4] = 1
    cortex = np.zeros_like(whole)
    cortex[:, 1:4, 1] = 1
    cortex[:, 4, 5] = 2
    path = write_slicer_file(tmp_path / "m.seg.nrrd", [whole, cortex], [
        Seg("FEMUR", 1, 0, bonehub_tags("FEMUR", FEMUR, 30)),
        Seg("FEMUR_LEFT", 1, 1, bonehub_tags("FEMUR_LEFT", FEMUR_LEFT, 33)),
        Seg("VERTEBRA_L1", 2, 1, bonehub_tags("VERTEBRA_L1", L1, 33))])
    mask = read_bonehub_mask(path, V2)
    assert len(mask.layers) == 2
    femur, femur_left, l1 = mask.segments
    assert mask.mask(femur).sum() == 4 * 9 and mask.mask(femur_left).sum() == 4 * 3 and mask.mask(l1).sum() == 4
    assert (mask.mask(femur) & mask.mask(femur_left)).sum() == 12
    with pytest.raises(BoneHubMaskError, match="overlaps"):
        mask.value_volume()


def test_v1_nifti_voxels_are_values_and_statuses_come_from_the_record(tmp_path):
    array = _two_blocks().astype(np.int16) * 0
    array[_two_blocks() == 1], array[_two_blocks() == 2] = 2301, 2302
    image = sitk.GetImageFromArray(array)
    path = tmp_path / "001_000001.nii.gz"
    sitk.WriteImage(image, str(path))
    record = {"segmentation": {"VERTEBRA_L1": 30}}
    mask = read_bonehub_mask(path, V1, subject_statuses(record, "Subject_info_001.json"))
    assert mask.layout == LAYOUT_V1
    assert [(s.value, s.status) for s in mask.segments] == [(2301, BoneHubStatus.parse(30)), (2302, None)]
    assert np.array_equal(mask.value_volume().array, _xyz(array))


def test_old_availability_flags_give_no_statuses():
    assert subject_statuses({"segmentation": {"VERTEBRA_L1": 1, "VERTEBRA_L2": -1}}, "rec") == {}
    with pytest.raises(BoneHubMaskError, match="rec: label VERTEBRA_L1"):
        subject_statuses({"segmentation": {"VERTEBRA_L1": 77}}, "rec")


def test_written_file_reads_back_with_slicer_header(tmp_path):
    values = sitk.GetImageFromArray(np.where(_two_blocks() == 1, L1, np.where(_two_blocks() == 2, L2, 0)).astype(np.int32))
    import highdicom as hd

    volume = hd.Volume.from_simpleitk(values)
    path = tmp_path / "out.seg.nrrd"
    statuses = {L1: BoneHubStatus.parse(10), L2: BoneHubStatus.parse(11)}
    write_bonehub_seg_nrrd(path, volume, V2, statuses)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    assert reader.GetMetaData("Segment0_Tags") == f"BoneHubLabel:VERTEBRA_L1|BoneHubValue:{L1}|BoneHubStatus:10|"
    assert reader.GetMetaData("Segment1_LabelValue") == "2" and reader.GetMetaData("Segment1_Layer") == "0"
    assert reader.GetMetaData("Segmentation_MasterRepresentation") == "Binary labelmap"
    assert reader.GetPixelID() == sitk.sitkUInt8
    back = read_bonehub_mask(path, V2)
    assert np.array_equal(back.value_volume().array, volume.array)
    assert {s.value: s.status for s in back.segments} == statuses
    assert not list(tmp_path.glob(".*partial*"))


# --- bad masks: each refused with the file and what is wrong ------------------------------------


def _good(tmp_path, name="m.seg.nrrd"):
    return write_slicer_file(tmp_path / name, [_two_blocks()], [
        Seg("VERTEBRA_L1", 1, tags=bonehub_tags("VERTEBRA_L1", L1, 33)),
        Seg("VERTEBRA_L2", 2, tags=bonehub_tags("VERTEBRA_L2", L2, 33))])


@pytest.mark.parametrize("segments, message", [
    ([Seg("Segment_1", 1), Seg("VERTEBRA_L2", 2)], r"segment 0 'Segment_1' has no BoneHub label"),
    ([Seg("VERTEBRA_L1", 1, tags=bonehub_tags("VERTEBRA_L1", 999000000, 33)), Seg("VERTEBRA_L2", 2)],
     r"no mapping for native label value\(s\) \[999000000\]"),
    ([Seg("VERTEBRA_L1", 1, tags=bonehub_tags("VERTEBRA_L1", L1, 57)), Seg("VERTEBRA_L2", 2)], r"BoneHub status '57'"),
    ([Seg("VERTEBRA_L1", 1, tags=bonehub_tags("VERTEBRA_L1", L2, 33)), Seg("VERTEBRA_L2", 2)], r"but BoneHubValue says"),
    ([Seg("VERTEBRA_L1", 1), Seg("VERTEBRA_L1", 2)], r"are both BoneHub label"),
    ([Seg("VERTEBRA_L1", 1), Seg("VERTEBRA_L2", 3)], r"label value 3, which no voxel of layer 0 holds"),
    ([Seg("VERTEBRA_L1", 1), Seg("VERTEBRA_L2", 1)], r"both claim label value 1"),
    ([Seg("VERTEBRA_L1", 1)], r"voxel value\(s\) \[2\] in layer 0 belong to no segment"),
    ([Seg("VERTEBRA_L1", None), Seg("VERTEBRA_L2", 2)], r"Segment0_LabelValue is missing"),
    ([Seg("VERTEBRA_L1", 1, layer=3), Seg("VERTEBRA_L2", 2)], r"is in layer 3, the file has 1"),
])
def test_bad_seg_nrrd_headers(tmp_path, segments, message):
    path = write_slicer_file(tmp_path / "bad.seg.nrrd", [_two_blocks()], segments)
    with pytest.raises(DicomInputError, match=message) as error:
        read_bonehub_mask(path, V2)
    assert str(path) in str(error.value)


def test_empty_and_truncated_files(tmp_path):
    empty = tmp_path / "empty.seg.nrrd"
    empty.write_bytes(b"")
    with pytest.raises(SegNrrdError, match="empty file"):
        read_bonehub_mask(empty, V2)
    good = _good(tmp_path)
    truncated = tmp_path / "cut.seg.nrrd"
    truncated.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(SegNrrdError, match=r"cut.seg.nrrd: cannot read segmentation \(truncated"):
        read_bonehub_mask(truncated, V2)
    nifti = tmp_path / "cut.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), 2301, np.int16)), str(nifti))
    nifti.write_bytes(gzip.compress(gzip.decompress(nifti.read_bytes())[:-100]))
    with pytest.raises(BoneHubMaskError, match="cut.nii.gz: cannot read mask: truncated"):
        read_bonehub_mask(nifti, V1)  # SimpleITK alone reads it, zero-filled
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), 2301, np.int16)), str(nifti))
    nifti.write_bytes(nifti.read_bytes()[:-20])
    with pytest.raises(BoneHubMaskError, match="cut.nii.gz: cannot read mask"):
        read_bonehub_mask(nifti, V1)


def test_four_d_and_float_nifti_masks(tmp_path):
    four_d = tmp_path / "4d.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(np.full((4, 5, 6), 2301, np.int16))] * 2), str(four_d))
    with pytest.raises(BoneHubMaskError, match="4d.nii.gz: a mask is one 3-D label image, this one is 4-D"):
        read_bonehub_mask(four_d, V1)
    floats = tmp_path / "f.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), 2301.5, np.float32)), str(floats))
    with pytest.raises(BoneHubMaskError, match="non-integer"):
        read_bonehub_mask(floats, V1)
    unknown = tmp_path / "u.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), 4444, np.int16)), str(unknown))
    with pytest.raises(BoneHubMaskError, match=r"u.nii.gz: value 4444: label set 'bonehub_v1' has no mapping"):
        read_bonehub_mask(unknown, V1)


def test_slicer_empty_segmentation_and_wrong_suffix(tmp_path):
    single = tmp_path / "none.seg.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((1, 1, 1), np.uint8)), str(single))
    assert read_slicer_segmentation(single).segments == ()
    with pytest.raises(BoneHubMaskError, match="holds no segment"):
        read_bonehub_mask(single, V2)
    with pytest.raises(BoneHubMaskError, match="not a BoneHub mask"):
        mask_layout(tmp_path / "m.mha")


def test_nifti_with_nine_digit_values_is_not_layout_v1(tmp_path):
    path = tmp_path / "v2values.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), L1, np.int32)), str(path))
    with pytest.raises(BoneHubMaskError, match=f"v2values.nii.gz: voxel value {L1} is not a 4-digit layout v1 value"):
        read_bonehub_mask(path, V1)
