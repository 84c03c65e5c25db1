"""SEG writing and reading on the real sample: exact round trip, schema codes, geometry, identity."""

import numpy as np
import pytest

from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import EmptySegmentationError, write_seg
from labels.laterality import world_x
from labels.schema import default_schema

SOURCE = SegmentationSource("TotalSegmentator total", "2.18.0")


@pytest.fixture(scope="module", params=["labelmap", "binary"])
def written(request, sample_ct, sample_schema_maps, tmp_path_factory):
    """Each sample segmentation written as a SEG file of the parametrized type."""
    folder = tmp_path_factory.mktemp(request.param)
    paths = {}
    for name, schema_map in sample_schema_maps.items():
        seg = write_seg(schema_map, sample_ct, SegmentationSource(name, "2"), seg_type=request.param)
        paths[name] = folder / f"{name}.dcm"
        seg.save_as(paths[name])
    return request.param, paths


def test_round_trip_is_voxel_exact(written, sample_ct, sample_schema_maps):
    seg_type, paths = written
    for name, path in paths.items():
        decoded = read_seg(path, sample_ct)
        assert decoded.volume.spatial_shape == sample_ct.volume.spatial_shape
        np.testing.assert_array_equal(decoded.volume.array, sample_schema_maps[name])
        assert not decoded.ignored
        assert decoded.referenced_series_uids == (sample_ct.series_instance_uid,)


def test_sop_class_and_compression(written):
    import pydicom

    seg_type, paths = written
    ds = pydicom.dcmread(next(iter(paths.values())), stop_before_pixels=True)
    if seg_type == "labelmap":
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7" and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    else:
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.SegmentationType == "BINARY"


def test_segment_codes_and_laterality_follow_the_schema(written, sample_schema_maps):
    import pydicom

    schema = default_schema()
    _, paths = written
    ds = pydicom.dcmread(next(iter(paths.values())), stop_before_pixels=True)
    present = sorted(int(v) for v in np.unique(next(iter(sample_schema_maps.values()))) if v)
    segments = [item for item in ds.SegmentSequence if item.SegmentNumber != 0]  # LABELMAP adds a background segment 0
    assert [item.TrackingID for item in segments] == [schema[i].name for i in present]
    for item in segments:
        structure = schema[str(item.TrackingID)]
        category, type_item = item.SegmentedPropertyCategoryCodeSequence[0], item.SegmentedPropertyTypeCodeSequence[0]
        assert (category.CodingSchemeDesignator, category.CodeValue) == structure.category.key
        assert (type_item.CodingSchemeDesignator, type_item.CodeValue) == structure.type.key
        modifiers = type_item.get("SegmentedPropertyTypeModifierCodeSequence", [])
        if structure.laterality:
            assert [(m.CodingSchemeDesignator, m.CodeValue) for m in modifiers] == [structure.modifier.key]
        else:
            assert not modifiers
        assert item.SegmentAlgorithmType == "AUTOMATIC" and item.SegmentAlgorithmName


def test_left_ribs_lie_on_the_patients_left(sample_ct, sample_schema_maps):
    """NIfTI (RAS) -> CT DICOM (LPS) geometry: TotalSegmentator's left ribs must have larger patient x."""
    schema = default_schema()
    x = world_x(sample_ct.volume.spatial_shape, sample_ct.volume.affine)
    schema_map = sample_schema_maps["seg_totalsegmentator_v2_full.nii.gz"]
    for k in range(7, 13):
        left, right = schema_map == schema[f"rib_left_{k}"].id, schema_map == schema[f"rib_right_{k}"].id
        assert x[left].mean() > x[right].mean() + 50, k


def test_uids_are_deterministic_per_series_source_and_augmentation(sample_ct, sample_schema_maps):
    schema_map = next(iter(sample_schema_maps.values()))
    first, again = write_seg(schema_map, sample_ct, SOURCE), write_seg(schema_map, sample_ct, SOURCE)
    assert (first.SeriesInstanceUID, first.SOPInstanceUID) == (again.SeriesInstanceUID, again.SOPInstanceUID)
    rotated = write_seg(schema_map, sample_ct, SegmentationSource(SOURCE.name, SOURCE.version, "rotate(5,0,0)"))
    assert rotated.SOPInstanceUID != first.SOPInstanceUID and rotated.SeriesInstanceUID != first.SeriesInstanceUID
    assert "rotate(5,0,0)" in rotated.SeriesDescription and "rotate(5,0,0)" in rotated.ContentDescription
    assert first.SeriesInstanceUID != sample_ct.series_instance_uid
    binary = write_seg(schema_map, sample_ct, SOURCE, seg_type="binary")
    assert binary.SOPInstanceUID != first.SOPInstanceUID  # another SOP class: another object


def test_private_codes_are_declared(sample_ct):
    schema = default_schema()
    schema_map = np.zeros(sample_ct.volume.spatial_shape, np.uint16)
    schema_map[5:8, 40:50, 40:50] = schema["lunate_left"].id
    seg = write_seg(schema_map, sample_ct, SOURCE)
    declared = {item.CodingSchemeDesignator for item in seg.CodingSchemeIdentificationSequence}
    assert "99BONEHUB" in declared
    assert read_seg(seg, sample_ct).volume.array.max() == schema["lunate_left"].id


def test_bad_label_maps_are_rejected_with_the_reason(sample_ct):
    shape = sample_ct.volume.spatial_shape
    with pytest.raises(ValueError, match="is not the CT grid"):
        write_seg(np.zeros((2, 2, 2), np.uint16), sample_ct, SOURCE)
    with pytest.raises(EmptySegmentationError, match="no structure"):
        write_seg(np.zeros(shape, np.uint16), sample_ct, SOURCE)
    unknown = np.zeros(shape, np.uint16)
    unknown[0, 0, 0] = 999
    with pytest.raises(KeyError, match="999"):
        write_seg(unknown, sample_ct, SOURCE)


@pytest.mark.parametrize("seg_type", ["labelmap", "binary"])
def test_omitted_empty_frames_are_padded_back_onto_the_ct_grid(seg_type, sample_ct, sample_schema_maps):
    schema_map = sample_schema_maps["seg_totalsegmentator_v2_full.nii.gz"].copy()
    schema_map[:10] = 0
    schema_map[21:] = 0
    seg = write_seg(schema_map, sample_ct, SOURCE, seg_type=seg_type)
    if seg_type == "labelmap":
        assert seg.NumberOfFrames == 11  # one frame per non-empty slice
    assert read_seg(seg).volume.spatial_shape[0] == 11  # without the CT only the stored extent is known
    np.testing.assert_array_equal(read_seg(seg, sample_ct).volume.array, schema_map)
