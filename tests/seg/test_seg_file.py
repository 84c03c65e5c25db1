"""dicom_file_bytes: a deflated SEG written with zlib-ng reads as pydicom's own file; other syntaxes are pydicom's bytes."""

import io
import zlib

import numpy as np
import pydicom
import pytest

from dicom_io.provenance import SegmentationSource
from dicom_io.seg_file import dicom_file_bytes, save_dicom
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import write_seg
from tests.support.dcmqi import dcmqi_decode

FULL = "seg_totalsegmentator_v2_full.nii.gz"


def _pydicom_bytes(ds) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _inflated(data: bytes) -> bytes:
    """The dataset after the file meta of a deflated file, inflated."""
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")  # preamble, DICM, group length element, group 2
    return zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)


@pytest.mark.parametrize("level", [1, 6, 9])
@pytest.mark.parametrize("nth", ["first", "later"], ids=["built-in-full", "from-kept-layout"])
def test_a_deflated_seg_is_the_same_dataset_as_pydicoms_file(level, nth, sample_ct, sample_schema_maps):
    schema_map = sample_schema_maps[FULL]
    seg = write_seg(schema_map, sample_ct, SegmentationSource("a", "2"))
    if nth == "later":
        seg = write_seg(schema_map, sample_ct, SegmentationSource("b", "2"))
    ours, theirs = dicom_file_bytes(seg, level), _pydicom_bytes(seg)
    assert ours[:200] == theirs[:200]  # preamble and file meta
    assert _inflated(ours) == _inflated(theirs)
    np.testing.assert_array_equal(read_seg(pydicom.dcmread(io.BytesIO(ours)), sample_ct).volume.array, schema_map)


def test_dcmqi_reads_the_file(sample_ct, sample_schema_maps, tmp_path):
    path = tmp_path / "seg.dcm"
    save_dicom(write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("a", "2")), path)
    voxels, _ = dcmqi_decode(path, tmp_path / "dcmqi", sample_ct)
    np.testing.assert_array_equal(voxels, sample_schema_maps[FULL])


@pytest.mark.parametrize("compression", ["rle", "none"])
def test_other_syntaxes_are_pydicoms_bytes(compression, sample_ct, sample_schema_maps):
    seg = write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("a", "2"), compression=compression)
    assert dicom_file_bytes(seg) == _pydicom_bytes(seg)
