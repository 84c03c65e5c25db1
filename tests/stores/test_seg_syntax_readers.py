"""Each SEG compression through a real Orthanc: stored by STOW-RS, retrieved by WADO-RS as stored and transcoded.

The closest test here of a DICOMweb server such as the Google Cloud Healthcare API (dicom_io/README.md):
the SEG comes back byte-for-byte in its own transfer syntax (``transfer-syntax=*``) and, on request,
transcoded to Explicit VR Little Endian; both read back voxel-exact with ``read_seg`` and pydicom.
"""

from __future__ import annotations

import numpy as np
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless

from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import write_seg
from dicom_io.stores import open_store

FULL = "seg_totalsegmentator_v2_full.nii.gz"
SYNTAX = {"deflate": DeflatedExplicitVRLittleEndian, "rle": RLELossless, "none": ExplicitVRLittleEndian}
DICOM = "application/dicom"


@pytest.mark.parametrize("compression", list(SYNTAX))
@pytest.mark.parametrize("asked", ["*", ExplicitVRLittleEndian], ids=["as-stored", "explicit-vr-le"])
def test_orthanc_returns_the_seg_voxel_exact(compression, asked, empty_orthanc, sample_ct, sample_schema_maps):
    seg = write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("TotalSegmentator total", "2"), compression=compression)
    open_store(empty_orthanc.dicomweb_url, timeout=30).put(seg)

    client = DICOMwebClient(empty_orthanc.dicomweb_url)
    back = client.retrieve_instance(seg.StudyInstanceUID, seg.SeriesInstanceUID, seg.SOPInstanceUID, media_types=((DICOM, asked),))

    assert back.file_meta.TransferSyntaxUID == (SYNTAX[compression] if asked == "*" else asked)
    assert back.NumberOfFrames == seg.NumberOfFrames
    np.testing.assert_array_equal(read_seg(back, sample_ct).volume.array, sample_schema_maps[FULL])
