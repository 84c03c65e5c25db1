"""Every SEG compression (transfer syntax) is read voxel-exact by dcmqi, highdicom, pydicom and read_seg; UIDs do not change."""

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless

from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import write_seg
from labels.errors import BoneHubInputError
from tests.support.dcmqi import dcmqi_decode

FULL = "seg_totalsegmentator_v2_full.nii.gz"
SOURCE = SegmentationSource("TotalSegmentator total", "2")
SYNTAX = {"deflate": DeflatedExplicitVRLittleEndian, "rle": RLELossless, "none": ExplicitVRLittleEndian}
WRITTEN = [("labelmap", "deflate"), ("labelmap", "rle"), ("labelmap", "none"), ("binary", "deflate"), ("binary", "none")]


@pytest.fixture(scope="module", params=WRITTEN, ids=lambda p: "-".join(p))
def written(request, sample_ct, sample_schema_maps, tmp_path_factory):
    """The sample's full TotalSegmentator map with one slab left empty, written with the parametrized type and compression."""
    seg_type, compression = request.param
    schema_map = sample_schema_maps[FULL].copy()
    schema_map[:3] = 0  # empty frames, omitted
    path = tmp_path_factory.mktemp("compression") / f"{seg_type}-{compression}.dcm"
    write_seg(schema_map, sample_ct, SOURCE, seg_type=seg_type, compression=compression).save_as(path)
    return seg_type, compression, path, schema_map


def test_the_file_has_the_chosen_transfer_syntax(written, sample_ct):
    seg_type, compression, path, _ = written
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == SYNTAX[compression]
    if seg_type == "labelmap":
        slices = sample_ct.volume.spatial_shape[0]
        assert ds.NumberOfFrames == slices - 3


def test_read_seg_and_highdicom_read_it_exactly(written, sample_ct):
    _, _, path, schema_map = written
    np.testing.assert_array_equal(read_seg(path, sample_ct).volume.array, schema_map)
    np.testing.assert_array_equal(read_seg(hd.seg.segread(path), sample_ct).volume.array, schema_map)


def test_pydicom_decodes_every_frame(written):
    seg_type, compression, path, _ = written
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    assert frames.shape[0] == ds.NumberOfFrames
    if seg_type == "labelmap":  # segment numbers: every non-background segment appears in some frame
        assert set(np.unique(frames)) - {0} == {item.SegmentNumber for item in ds.SegmentSequence} - {0}


def test_dcmqi_reads_it_exactly(written, sample_ct, tmp_path):
    _, _, path, schema_map = written
    voxels, _ = dcmqi_decode(path, tmp_path / "dcmqi", sample_ct)
    np.testing.assert_array_equal(voxels, schema_map)


@pytest.mark.parametrize("seg_type", ["labelmap", "binary"])
def test_compression_does_not_change_the_uids(seg_type, sample_ct, sample_schema_maps):
    written = [write_seg(sample_schema_maps[FULL], sample_ct, SOURCE, seg_type=seg_type, compression=compression)
               for written_type, compression in WRITTEN if written_type == seg_type]
    assert len({(seg.SeriesInstanceUID, seg.SOPInstanceUID) for seg in written}) == 1


def test_rle_is_refused_for_a_binary_seg(sample_ct, sample_schema_maps):
    with pytest.raises(BoneHubInputError, match="RLE compression is for LABELMAP SEGs only"):
        write_seg(sample_schema_maps[FULL], sample_ct, SOURCE, seg_type="binary", compression="rle")


def test_an_unknown_compression_is_refused_by_name(sample_ct, sample_schema_maps):
    with pytest.raises(BoneHubInputError, match="'zip' is not a valid SegCompression"):
        write_seg(sample_schema_maps[FULL], sample_ct, SOURCE, compression="zip")


@pytest.mark.parametrize("option, syntax", [([], DeflatedExplicitVRLittleEndian), (["--seg-compression", "rle"], RLELossless)])
def test_seg_encode_takes_the_compression(option, syntax, sample_dir, sample_ct, sample_schema_maps, tmp_path):
    from pipeline.cli import main

    out = tmp_path / "seg.dcm"
    assert main(["seg", "encode", "--ct", str(sample_dir / "ct"), "--labels", str(sample_dir / FULL), "--label-set", "totalsegmentator_total",
                 "--out", str(out), "--source-name", "TotalSegmentator total", "--source-version", "2", *option]) == 0
    assert pydicom.dcmread(out, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_seg(out, sample_ct).volume.array, sample_schema_maps[FULL])
