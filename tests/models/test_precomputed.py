"""Precomputed segmentations (NIfTI with a native label set, DICOM SEG in schema ids) through the adapter interface."""

import shutil
from dataclasses import replace

import numpy as np
import pytest

from dicom_io.errors import InvalidUIDError
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_writer import write_seg
from models.base import Prediction, SegmentationModel
from models.harmonize import to_schema
from models.precomputed import PrecomputedNotFoundError, PrecomputedSegmentation

FULL = "seg_totalsegmentator_v2_full.nii.gz"


def test_nifti_source_matches_harmonized_sample(sample_ct, sample_dir, sample_schema_maps, tmp_path):
    shutil.copy(sample_dir / FULL, tmp_path / f"{sample_ct.series_instance_uid}.nii.gz")
    source = PrecomputedSegmentation("TotalSegmentator total", "2.18.0", "totalsegmentator_total", tmp_path)
    assert isinstance(source, SegmentationModel)
    source.load()
    prediction = source.predict(sample_ct)
    assert isinstance(prediction, Prediction) and prediction.label_set is not None
    np.testing.assert_array_equal(to_schema(prediction, sample_ct), sample_schema_maps[FULL])


def test_seg_source_matches_written_map(sample_ct, sample_schema_maps, tmp_path):
    seg = write_seg(sample_schema_maps[FULL], sample_ct, SegmentationSource("TotalSegmentator total", "2.18.0"))
    seg.save_as(tmp_path / f"{sample_ct.series_instance_uid}.dcm")
    source = PrecomputedSegmentation("earlier run", "1", None, tmp_path, pattern="{series_uid}.dcm")
    prediction = source.predict(sample_ct)
    assert prediction.label_set is None
    np.testing.assert_array_equal(to_schema(prediction, sample_ct), sample_schema_maps[FULL])


def test_callable_locator(sample_ct, sample_dir, sample_schema_maps):
    source = PrecomputedSegmentation("ts", "2", "totalsegmentator_total", lambda ct: sample_dir / FULL)
    np.testing.assert_array_equal(to_schema(source.predict(sample_ct), sample_ct), sample_schema_maps[FULL])


def test_missing_file_names_series_and_path(sample_ct, tmp_path):
    source = PrecomputedSegmentation("ts", "2", "totalsegmentator_total", tmp_path)
    with pytest.raises(PrecomputedNotFoundError) as raised:
        source.predict(sample_ct)
    message = str(raised.value)
    assert sample_ct.series_instance_uid in message
    assert str(tmp_path / f"{sample_ct.series_instance_uid}.nii.gz") in message


@pytest.mark.parametrize("uid", ["../../etc/passwd", "1.2/../3", "", "1.2.3 "])
@pytest.mark.parametrize("field", ["series_instance_uid", "study_instance_uid"])
def test_path_escaping_uid_refused(uid, field, sample_ct, tmp_path):
    looked = []
    source = PrecomputedSegmentation("ts", "2", None, lambda ct: looked.append(ct) or tmp_path / ct.series_instance_uid)
    with pytest.raises(InvalidUIDError):
        source.locate(replace(sample_ct, **{field: uid}))
    assert looked == []


def test_pattern_must_name_the_series(tmp_path):
    with pytest.raises(ValueError, match="series_uid"):
        PrecomputedSegmentation("ts", "2", None, tmp_path, pattern="seg.dcm")
