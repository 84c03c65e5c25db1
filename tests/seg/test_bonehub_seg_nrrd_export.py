"""``bonehub seg decode --format bonehub-seg-nrrd``: our SEG as a BoneHub mask, read back by their conventions."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from dicom_io.bonehub_export import segment_status, write_seg_as_bonehub
from dicom_io.bonehub_provenance import stamp_statuses
from dicom_io.bonehub_seg_nrrd import read_bonehub_mask
from dicom_io.geometry import match_grid
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import load_segmentation, read_seg
from dicom_io.seg_writer import write_seg
from labels.label_sets import load_label_set
from labels.schema import default_schema
from pipeline.cli import main
from tests.support.bright_object_ct import write_bright_object_ct

FULL = "seg_totalsegmentator_v2_full.nii.gz"
SCHEMA = default_schema()


def _schema_map(mask_path, geometry) -> np.ndarray:
    """A BoneHub mask read with our reader (their conventions), as schema ids on ``geometry``."""
    label_set = load_label_set("bonehub_v2")
    mask = read_bonehub_mask(mask_path, label_set)
    values = match_grid(mask.value_volume(), geometry)
    schema_map = np.zeros(values.spatial_shape, np.uint16)
    for segment in mask.segments:
        (target,) = label_set.labels[segment.value].targets()
        schema_map[values.array == segment.value] = SCHEMA[target].id
    return schema_map


def test_decoded_sample_seg_reads_back_as_the_same_labels(sample_dir, sample_ct, sample_schema_maps, tmp_path, capsys):
    seg_path, out = tmp_path / "full.dcm", tmp_path / "bonehub" / "001_000001.seg.nrrd"
    assert main(["seg", "encode", "--ct", str(sample_dir / "ct"), "--labels", str(sample_dir / FULL), "--label-set",
                 "totalsegmentator_total", "--out", str(seg_path), "--source-name", "TotalSegmentator total",
                 "--source-version", "2"]) == 0
    assert main(["seg", "decode", str(seg_path), "--ct", str(sample_dir / "ct"), "--format", "bonehub-seg-nrrd",
                 "--out", str(out)]) == 0
    np.testing.assert_array_equal(_schema_map(out, sample_ct.geometry), sample_schema_maps[FULL])
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(out))
    reader.ReadImageInformation()
    keys = set(reader.GetMetaDataKeys())
    assert {"Segment0_Name", "Segment0_ID", "Segment0_LabelValue", "Segment0_Layer", "Segment0_Color",
            "Segment0_Extent", "Segment0_Tags", "Segmentation_MasterRepresentation"} <= keys
    assert reader.GetMetaData("Segment0_Tags").endswith("|BoneHubStatus:10|")  # a model's SEG: automatic, not reviewed
    assert reader.GetDimension() == 3 and reader.GetNumberOfComponents() == 1
    assert (tmp_path / "bonehub" / "001_000001_segments.csv").is_file()
    capsys.readouterr()
    assert main(["seg", "decode", str(seg_path), "--format", "bonehub-seg-nrrd", "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "must end in .seg.nrrd" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()


@pytest.fixture(scope="module")
def bright_seg(tmp_path_factory):
    ct = write_bright_object_ct(tmp_path_factory.mktemp("ct"), shape=(10, 12, 14)).ct
    label_map = np.zeros(ct.volume.spatial_shape, np.uint16)
    label_map[1:3, 2:5, 2:5] = SCHEMA["vertebra_L1"].id
    label_map[4:6, 2:5, 2:5] = SCHEMA["femur_left"].id
    label_map[7:9, 2:5, 2:5] = SCHEMA["rib_left_7"].id
    source = SegmentationSource("BoneHub-Dataset", "001:2.0")
    reviewer = SegmentationSource("reviewer", "1", algorithm_type="MANUAL")
    return ct, label_map, write_seg(label_map, ct, source, segment_sources={"rib_left_7": reviewer})


def test_statuses_say_no_more_than_the_seg(bright_seg, tmp_path):
    ct, label_map, seg = bright_seg
    seg = load_segmentation(seg)
    stamp_statuses(seg, {"vertebra_L1": (33,), "femur_left": (30, 11)})
    numbers = {item.TrackingID: int(item.SegmentNumber) for item in seg.SegmentSequence if "TrackingID" in item}
    assert segment_status(seg, numbers["vertebra_L1"]).code == 33  # recorded: kept
    assert segment_status(seg, numbers["femur_left"]).code == 11  # several: the lowest
    assert segment_status(seg, numbers["rib_left_7"]).code == 20  # drawn by a person
    out = tmp_path / "m.seg.nrrd"
    written = write_seg_as_bonehub(seg, read_seg(seg, ct), out)
    assert {s.name: s.status.code for s in written} == {"VERTEBRA_L1": 33, "FEMUR_LEFT": 11, "RIB_7_LEFT": 20}
    back = read_bonehub_mask(out, load_label_set("bonehub_v2"))
    assert {s.value: s.status.code for s in back.segments} == {230100000: 33, 710000001: 11, 310700001: 20}
    np.testing.assert_array_equal(_schema_map(out, ct.geometry), label_map)
