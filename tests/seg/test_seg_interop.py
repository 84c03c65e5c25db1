"""Independent readers and writers agree with ours: dcmqi, dciodvfy, TotalSegmentator, highdicom."""

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

import highdicom as hd
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import SegGeometryError, SegOverlapError, UnknownSegmentError, read_seg
from dicom_io.seg_writer import write_seg
from labels.schema import default_schema
from tests.support.dcmqi import dcmqi_decode, run_dcmqi

FULL = "seg_totalsegmentator_v2_full.nii.gz"


@pytest.fixture(scope="module", params=["labelmap", "binary"])
def our_seg(request, sample_ct, sample_schema_maps, tmp_path_factory):
    path = tmp_path_factory.mktemp("ours") / f"{request.param}.dcm"
    write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("TotalSegmentator total", "2"), seg_type=request.param).save_as(path)
    return path


def test_dcmqi_reads_the_same_voxels(our_seg, sample_ct, sample_schema_maps, tmp_path):
    voxels, meta = dcmqi_decode(our_seg, tmp_path / "dcmqi", sample_ct)
    np.testing.assert_array_equal(voxels, sample_schema_maps[FULL])
    rib = next(s for s in meta["segmentAttributes"][0] if s["TrackingIdentifier"] == "rib_left_7")
    assert rib["SegmentedPropertyTypeModifierCodeSequence"]["CodeValue"] == "7771000"


def test_we_read_a_seg_written_byrun_dcmqi(our_seg, sample_ct, sample_schema_maps, sample_dir, tmp_path):
    """dcmqi decodes our SEG, dcmqi encodes it again (its own writer), we read dcmqi's SEG."""
    _, meta = dcmqi_decode(our_seg, tmp_path / "dcmqi", sample_ct)
    (image,) = (tmp_path / "dcmqi").glob("*.nrrd")
    out = tmp_path / "dcmqi_written.dcm"
    seg_type = "labelmap" if "labelmap" in our_seg.name else "binary"
    run_dcmqi("itkimage2segimage", "--inputImageList", str(image), "--inputMetadata", str(tmp_path / "dcmqi" / "meta.json"),
           "--inputDICOMDirectory", str(sample_dir / "ct"), "--outputDICOM", str(out), "--segmentationType", seg_type)
    assert pydicom.dcmread(out, stop_before_pixels=True).Manufacturer != "BoneHub Segmentation"
    np.testing.assert_array_equal(read_seg(out, sample_ct).volume.array, sample_schema_maps[FULL])


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed (make system-deps)")
def test_dciodvfy_finds_no_error_in_our_binary_seg(sample_ct, sample_schema_maps, tmp_path):
    path = tmp_path / "binary.dcm"
    write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("TotalSegmentator total", "2"), seg_type="binary").save_as(path)
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_we_read_totalsegmentators_own_seg(sample_ct, sample_schema_maps, sample_dir, tmp_path, test_data):
    """TotalSegmentator's writer drops the laterality modifier; its segment labels still resolve each side."""
    import nibabel as nib
    from totalsegmentator.dicom_io import save_mask_as_dicomseg

    nifti = nib.load(sample_dir / FULL)
    classes = {int(k): v for k, v in json.loads((test_data / "terminology" / "totalsegmentator_class_maps.json").read_text())["total"].items()}
    out = tmp_path / "ts.dcm"
    save_mask_as_dicomseg(np.asanyarray(nifti.dataobj).astype(np.uint8), classes, str(sample_dir / "ct"), out, nifti.affine)
    decoded = read_seg(out, sample_ct)
    resolved = {s.label: s for s in decoded.segments}
    assert resolved["rib_left_7"].schema_name == "rib_left_7" and resolved["rib_left_7"].laterality is None
    assert resolved["vertebrae_L1"].schema_name == "vertebra_L1" and resolved["vertebrae_L1"].reason == "codes"
    assert resolved["liver"].schema_name is None
    # TotalSegmentator's writer flips by its own rules, written for the NIfTI dcm2niix makes; fed this NIfTI its SEG
    # comes out mirrored along the columns (seen in review). Its positions are its business; the content per bone must match.
    expected = np.bincount(sample_schema_maps[FULL].ravel(), minlength=200)
    np.testing.assert_array_equal(np.bincount(decoded.volume.array.ravel(), minlength=200), expected)


def test_dcmqi_liver_seg_on_real_ct_slices(test_data):
    from dicom_io.ct_series import read_ct_series

    ct = read_ct_series(test_data / "dcmqi_ct3slice")
    decoded = read_seg(test_data / "dcmqi_ct3slice" / "liver.dcm", ct)
    assert decoded.volume.spatial_shape == ct.volume.spatial_shape
    assert not decoded.volume.array.any()  # a liver is not a bone
    assert [(s.label, s.reason) for s in decoded.ignored] == [("Liver", "category is not an anatomical structure")]
    with pytest.raises(UnknownSegmentError, match=r"segment 1 'Liver' \(SCT 10200004 Liver\)"):
        read_seg(test_data / "dcmqi_ct3slice" / "liver.dcm", ct, strict=True)


def test_highdicom_example_segs(test_data):
    decoded = read_seg(test_data / "seg_examples" / "seg_image_ct_binary.dcm")
    assert [s.reason for s in decoded.ignored] == ["category is not an anatomical structure"]
    overlap = read_seg(test_data / "seg_examples" / "seg_image_ct_binary_overlap.dcm")
    assert [s.schema_name for s in overlap.segments] == [None, "spine"]
    assert overlap.volume.array.max() == default_schema()["spine"].id


def test_overlapping_bone_segments_are_an_error(sample_ct, tmp_path):
    schema = default_schema()
    first = np.zeros(sample_ct.volume.spatial_shape, bool)
    first[10:14, 40:60, 40:60] = True
    second = np.roll(first, 5, axis=2)
    segments = [(1, schema["vertebra_L1"]), (2, schema["vertebra_L2"])]
    from dicom_io.segment_codes import segment_description

    manual = SegmentationSource("reviewer", "1", algorithm_type="MANUAL")
    descriptions = [segment_description(n, s, manual, None, hd.UID()) for n, s in segments]
    seg = hd.seg.Segmentation(
        source_images=list(sample_ct.datasets), pixel_array=sample_ct.volume.with_array(np.stack([first, second], -1).astype(np.uint8), channels={"SegmentNumber": [1, 2]}),
        segmentation_type="BINARY", segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=1, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test", software_versions="1", device_serial_number="1",
    )
    with pytest.raises(SegOverlapError, match="overlap"):
        read_seg(seg, sample_ct)


def test_seg_of_another_series_is_rejected(sample_ct, sample_schema_maps, test_data):
    with pytest.raises(SegGeometryError, match="frame of reference"):
        read_seg(test_data / "dcmqi_ct3slice" / "liver.dcm", sample_ct)
    seg = write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("TotalSegmentator total", "2"))
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4"  # same frame of reference, another series
    with pytest.raises(SegGeometryError, match=r"references series \['1.2.3.4'\]"):
        read_seg(seg, sample_ct)


def _foreign_seg(ct, masks_and_codes, segmentation_type="BINARY"):
    """A SEG written directly with highdicom, with codes chosen by the test (other tools' conventions)."""
    descriptions, masks = [], []
    for number, (mask, category, type_code, modifier, label) in enumerate(masks_and_codes, start=1):
        d = hd.seg.SegmentDescription(number, label, hd.sr.CodedConcept(*category), hd.sr.CodedConcept(*type_code), "MANUAL")
        if modifier:
            d.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [hd.sr.CodedConcept(*modifier)]
        descriptions.append(d)
        masks.append(mask)
    pixels = np.stack(masks, -1).astype(np.float32 if segmentation_type == "FRACTIONAL" else np.uint8)
    return hd.seg.Segmentation(
        source_images=list(ct.datasets), pixel_array=ct.volume.with_array(pixels, channels={"SegmentNumber": list(range(1, len(masks) + 1))}),
        segmentation_type=segmentation_type, segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=1,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="other tool", manufacturer_model_name="x", software_versions="1", device_serial_number="1",
    )


def _box(ct, z, offset):
    mask = np.zeros(ct.volume.spatial_shape, bool)
    mask[z : z + 4, 40:50, offset : offset + 10] = True
    return mask


def test_legacy_srt_codes_and_group_remainders_and_fractional(sample_ct):
    schema = default_schema()
    anatomical_srt, anatomical = ("T-D000A", "SRT", "Anatomical Structure"), ("123037004", "SCT", "Anatomical Structure")
    srt = _foreign_seg(sample_ct, [(_box(sample_ct, 2, 10), anatomical_srt, ("T-12410", "SRT", "Humerus"), ("G-A101", "SRT", "Left"), "humerus")])
    assert [s.schema_name for s in read_seg(srt, sample_ct).segments] == ["humerus_left"]
    sacrum_and_s1 = _foreign_seg(sample_ct, [
        (_box(sample_ct, 2, 10), anatomical, ("54735007", "SCT", "Sacrum"), None, "sacrum"),
        (_box(sample_ct, 8, 10), anatomical, ("65985001", "SCT", "S1 vertebra"), None, "vertebrae_S1"),
    ])
    decoded = read_seg(sacrum_and_s1, sample_ct)
    assert [s.schema_name for s in decoded.segments] == ["sacrum_below_s1", "vertebra_S1"]
    assert set(np.unique(decoded.volume.array)) == {0, schema["sacrum_below_s1"].id, schema["vertebra_S1"].id}
    femur = _box(sample_ct, 2, 10).astype(np.float32) * 0.8
    femur[2, 40, 10] = 0.3  # below 0.5: not bone
    fractional = _foreign_seg(sample_ct, [(femur, anatomical, ("71341001", "SCT", "Femur"), ("24028007", "SCT", "Right"), "femur")], "FRACTIONAL")
    decoded = read_seg(fractional, sample_ct).volume.array
    assert (decoded == schema["femur_right"].id).sum() == femur.astype(bool).sum() - 1
