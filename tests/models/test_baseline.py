"""The weight-free bone threshold baseline: accuracy on the real sample, table removal, marrow filling, SEG round trip."""

import dataclasses

import highdicom as hd
import numpy as np
import pytest
from scipy import ndimage

from dicom_io.ct_series import CTSeries
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import write_seg
from labels.schema import default_schema
from models.base import SegmentationModel
from models.baseline import BoneThresholdBaseline, BoneThresholdParameters
from models.harmonize import to_schema

SKELETON = default_schema()["skeleton"].id


def _baseline_map(ct: CTSeries) -> np.ndarray:
    baseline = BoneThresholdBaseline()
    baseline.load()
    return to_schema(baseline.predict(ct), ct)


@pytest.fixture(scope="module")
def sample_map(sample_ct):
    return _baseline_map(sample_ct)


def _synthetic_ct(hu: np.ndarray, spacing=(2.0, 1.0, 1.0)) -> CTSeries:
    """An axial CT volume with no headers: enough for a source and for ``to_schema``."""
    volume = hd.Volume.from_components(hu.astype(np.float32), spacing=spacing, direction=np.eye(3), position=[0.0, 0.0, 0.0],
                                       coordinate_system="PATIENT")
    return CTSeries(volume, (), "1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12", "1.2.826.0.1.3680043.8.498.13")


def _radius_mm(shape, spacing=1.0) -> np.ndarray:
    rows, cols = np.indices(shape[1:]) - (np.array(shape[1:])[:, None, None] - 1) / 2
    return np.broadcast_to(np.hypot(rows, cols) * spacing, shape)


def test_is_a_segmentation_source_labelling_only_the_skeleton(sample_map):
    assert isinstance(BoneThresholdBaseline(), SegmentationModel)
    assert set(np.unique(sample_map)) == {0, SKELETON}


def test_covers_totalsegmentators_bone_on_the_sample(sample_map, sample_schema_maps):
    # Bone tissue only: costal cartilage (~100 HU here) is under the thoracic cage but is not bone, and a threshold
    # above soft tissue cannot see it. Measured: recall 0.958, precision 0.834 (with cartilage: 0.775 / 0.864).
    cartilage = default_schema()["costal_cartilages"].id
    bone = np.zeros(sample_map.shape, bool)
    for schema_map in sample_schema_maps.values():
        bone |= (schema_map > 0) & (schema_map != cartilage)
    found = sample_map == SKELETON
    recall = (found & bone).sum() / bone.sum()
    precision = (found & bone).sum() / found.sum()
    assert recall > 0.9 and precision > 0.8, (recall, precision)


def test_nothing_outside_the_patient_is_labelled(sample_ct, sample_map):
    hu = sample_ct.volume.array
    parts, _ = ndimage.label(hu > -300)  # the patient is the largest soft-tissue object; the table line lies apart
    patient = parts == np.bincount(parts.ravel())[1:].argmax() + 1
    assert sample_map[~patient].max() == 0
    lowest_row = np.flatnonzero(patient.any(axis=(0, 2))).max()
    # A bright (600 HU) table 6 mm thick, once touching the patient's back and once below an air gap.
    for top in (lowest_row + 1, hu.shape[1] - 2):
        with_table = hu.copy()
        with_table[:, top : top + 2, :] = 600.0
        table_ct = dataclasses.replace(sample_ct, volume=sample_ct.volume.with_array(with_table))
        np.testing.assert_array_equal(_baseline_map(table_ct), sample_map)


@pytest.mark.parametrize(
    "outer_mm, inside_hu, filled",
    [
        (12.0, 0.0, True),  # cortex around marrow: a long bone's shaft
        (12.0, -80.0, True),  # fatty (yellow) marrow
        (12.0, -1000.0, False),  # a bony ring around air (a sinus) is not marrow
        (40.0, 0.0, False),  # a ring enclosing ~45 cm2 (a pelvic inlet) is not filled
    ],
)
def test_bright_ring_in_soft_tissue(outer_mm, inside_hu, filled):
    shape = (10, 128, 128)
    radius = _radius_mm(shape)
    hu = np.where(radius <= 60.0, 40.0, -1000.0)
    hu[radius <= outer_mm - 2.0] = inside_hu
    ring = (radius <= outer_mm) & (radius > outer_mm - 2.0)
    hu[ring] = 1000.0
    labelled = _baseline_map(_synthetic_ct(hu)) == SKELETON
    assert labelled[ring].all()
    assert not labelled[radius > outer_mm + 1.0].any()
    interior = radius <= outer_mm - 3.0
    assert labelled[interior].all() if filled else not labelled[interior].any()


def test_all_air_ct_is_empty():
    air = _synthetic_ct(np.full((4, 32, 32), -1000.0))
    schema_map = _baseline_map(air)
    assert schema_map.shape == (4, 32, 32) and not schema_map.any()


def test_version_names_every_parameter():
    default = BoneThresholdBaseline()
    assert default.version == "hysteresis-120-300HU-marrow30cm2-min0.2mL-v1"
    variants = [BoneThresholdParameters(grow_hu=130), BoneThresholdParameters(seed_hu=400),
                BoneThresholdParameters(max_marrow_cm2=20), BoneThresholdParameters(min_component_ml=1)]
    assert len({default.version, *(BoneThresholdBaseline(p).version for p in variants)}) == 5
    assert all(len(BoneThresholdBaseline(p).version) <= 64 for p in variants)  # fits the SEG's AlgorithmVersion (LO)
    with pytest.raises(ValueError, match="grow_hu 300.* below seed_hu 200"):
        BoneThresholdParameters(grow_hu=300, seed_hu=200)


@pytest.mark.parametrize("seg_type", ["labelmap", "binary"])
def test_seg_round_trip(sample_ct, sample_map, seg_type, tmp_path):
    baseline = BoneThresholdBaseline()
    seg = write_seg(sample_map, sample_ct, SegmentationSource(baseline.name, baseline.version), seg_type=seg_type)
    seg.save_as(tmp_path / "baseline.dcm")
    decoded = read_seg(tmp_path / "baseline.dcm", sample_ct, strict=True)
    np.testing.assert_array_equal(decoded.volume.array, sample_map)
    [segment] = decoded.segments if seg_type == "binary" else [s for s in decoded.segments if s.number != 0]
    assert segment.schema_name == "skeleton" and (segment.type.scheme, segment.type.value) == ("SCT", "272673000")
