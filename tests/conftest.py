"""Shared test fixtures: paths to bundled test data and the repository root."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA

SAMPLE = REPO_ROOT / "sample" / "ts_abdomen_3mm"
SAMPLE_SEGMENTATIONS = ("seg_totalsegmentator_v2_full.nii.gz", "seg_totalsegmentator_v2_fast.nii.gz")


@pytest.fixture(scope="session")
def sample_ct():
    """The bundled sample CT series, read once per test run."""
    from dicom_io.ct_series import read_ct_series

    return read_ct_series(SAMPLE / "ct")


@pytest.fixture(scope="session")
def sample_schema_maps(sample_ct):
    """The sample's two real TotalSegmentator results, harmonized onto the CT grid (name -> schema-id array)."""
    from dicom_io.label_images import read_label_image
    from labels.label_sets import load_label_set
    from models.harmonize import harmonize_on_ct

    label_set = load_label_set("totalsegmentator_total")
    return {name: harmonize_on_ct(read_label_image(SAMPLE / name), label_set, sample_ct) for name in SAMPLE_SEGMENTATIONS}


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled sample: ``ct/`` (DICOM series) and the two TotalSegmentator NIfTI results."""
    return SAMPLE
