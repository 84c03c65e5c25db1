"""Every input error derives from BoneHubInputError (what the CLI catches) and keeps its former base."""

from __future__ import annotations

import pytest

from dicom_io.errors import DicomInputError, SeriesSelectionError
from dicom_io.seg_reader import UnknownSegmentError
from dicom_io.vocabulary import VocabularyError
from labels.errors import BoneHubInputError
from labels.label_sets import LabelSetError, UnmappedLabelError
from labels.schema import UnknownStructureError, default_schema
from models.precomputed import PrecomputedNotFoundError
from models.sources import SourceSpecError, parse_source_spec
from pipeline.segment_command import JobInputError
from qc.assess import QcInputError
from review.state import ReviewInputError


@pytest.mark.parametrize("error, former_base", [
    (DicomInputError, ValueError), (SeriesSelectionError, ValueError), (UnknownSegmentError, ValueError),
    (LabelSetError, ValueError), (UnmappedLabelError, ValueError), (UnknownStructureError, KeyError),
    (PrecomputedNotFoundError, FileNotFoundError), (SourceSpecError, ValueError), (JobInputError, ValueError),
    (QcInputError, ValueError), (ReviewInputError, ValueError), (VocabularyError, ValueError),
])
def test_input_errors_share_one_base(error, former_base):
    assert issubclass(error, BoneHubInputError) and issubclass(error, former_base)


def test_raised_input_errors_are_caught_by_the_base():
    with pytest.raises(BoneHubInputError, match="no_such_bone"):
        default_schema()["no_such_bone"]
    with pytest.raises(KeyError):
        default_schema()["no_such_bone"]
    with pytest.raises(BoneHubInputError, match="unknown kind 'twist'"):
        parse_source_spec("twist:me")
