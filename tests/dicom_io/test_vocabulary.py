"""What a source can label, written into its SEG (Algorithm Parameters) and read back."""

from __future__ import annotations

import io

import pydicom
import pytest

from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import write_seg
from dicom_io.vocabulary import VocabularyError, decode_vocabulary, encode_vocabulary, vocabulary_of
from labels.label_sets import load_label_set, packaged_label_sets

FULL = "seg_totalsegmentator_v2_full.nii.gz"


@pytest.mark.parametrize("name", packaged_label_sets())
def test_every_packaged_vocabulary_round_trips_as_id_ranges(name):
    vocabulary = load_label_set(name).emitted()
    text = encode_vocabulary(vocabulary)
    assert decode_vocabulary(text) == vocabulary
    assert len(text) <= 120, text  # ranges keep it short enough to repeat in every segment


def test_ranges_and_errors():
    assert encode_vocabulary({"vertebra_L1", "vertebra_L2", "vertebra_L3", "sacrum"}) == "20-22 203"
    with pytest.raises(VocabularyError, match="'20-x' is not a schema id"):
        decode_vocabulary("20-x")
    with pytest.raises(VocabularyError, match="28 is not a schema id"):
        decode_vocabulary("26-28")


def test_the_seg_records_it_in_every_segment_and_survives_a_file(sample_ct, sample_schema_maps):
    vocabulary = load_label_set("moose_clin_ct_vertebrae").emitted()
    source = SegmentationSource("MOOSE clin_ct_vertebrae", "3.2", "rotate(0,0,5)", vocabulary=vocabulary)
    seg = write_seg(sample_schema_maps[FULL], sample_ct, source)
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    back = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    for segment in (s for s in back.SegmentSequence if s.SegmentNumber > 0):  # LABELMAP's segment 0 is background
        parameters = segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
        assert "augmentation=rotate(0,0,5)" in parameters and "vocabulary=" in parameters
    assert vocabulary_of(back) == vocabulary
    assert read_seg(back, sample_ct).vocabulary == vocabulary


def test_a_seg_without_one_says_none(sample_ct, sample_schema_maps):
    seg = write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("TotalSegmentator total", "2"))
    assert vocabulary_of(seg) is None and read_seg(seg, sample_ct).vocabulary is None


def test_a_vocabulary_this_schema_cannot_read_is_ignored_with_a_warning(sample_ct, sample_schema_maps, caplog):
    """A SEG written under another schema version stays usable: QC infers its vocabulary instead."""
    seg = write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("TotalSegmentator total", "2"))
    for segment in (s for s in seg.SegmentSequence if s.SegmentNumber > 0):
        segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters = "augmentation=none,vocabulary=1-3 4000"
    assert vocabulary_of(seg) is None
    assert f"SEG {seg.SOPInstanceUID}: vocabulary ignored" in caplog.text and "4000 is not a schema id" in caplog.text
    assert read_seg(seg, sample_ct).volume.array.any()
