"""QC finds known errors in a real segmentation and names the segmentation that has them.

The bundled real CT (30 slices, 3 mm voxels: vertebrae T11 (cut) T12 L1 L2, ribs 7-12 on both
sides, costal cartilages) with three members: TotalSegmentator full and fast (the two real
results) and the full result after a 5-degree rotation round trip (see ``sample_series``: with
only two members the wrong one cannot be named, each disagrees with the other equally). One
error at a time goes into the fast member, at a size a reader would call an error; every
damaged bone must go to review with the fast member named as the outlier, and the bones that
were accepted without damage must mostly stay accepted.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import error_injection as inject
from bench.qc_detection import SAMPLE_FAST, SAMPLE_FULL, Series, sample_series
from qc.results import ACCEPT, REVIEW

MORPH_VOXELS = 2  # 6 mm at the sample's 3 mm voxels
KEPT_ACCEPT = 0.8  # share of the undamaged accepted bones that must stay accepted


@pytest.fixture(scope="module")
def series(sample_ct, sample_schema_maps) -> Series:
    return sample_series(sample_ct.volume, sample_schema_maps[SAMPLE_FULL], sample_schema_maps[SAMPLE_FAST])


@pytest.fixture(scope="module")
def undamaged(series):
    return series.assess()


def test_the_rotated_member_adds_resampling_noise_only(series):
    """The third member differs from the full result (else it would be a copy), but only at the boundaries."""
    full, rotated = series.label_maps[0], series.label_maps[2]
    labelled = (full > 0) | (rotated > 0)
    agree = np.count_nonzero((full == rotated) & labelled) / np.count_nonzero(labelled)
    assert 0.95 < agree < 1.0, agree
    assert series.damaged_source == "TotalSegmentator fast"


def test_undamaged_sample_is_accepted(undamaged):
    """Without damage the three members agree: the bones the cases below damage are all accepted."""
    damaged_somewhere = {"vertebra_T12", "vertebra_L1", "vertebra_L2", "rib_left_10"}
    assert {bone for bone, r in undamaged.items() if r.status == ACCEPT} >= damaged_somewhere


def _shift_l1(fast, affine):
    # 5 mm rounds to 2 slices of 3 mm, so the bone moves 6 mm; slices run head to feet, so headwards is -2 slices
    assert inject.voxel_shift(5.0, affine, "z") == (0, -2, 6.0)
    return inject.shift(fast, "vertebra_L1", 5.0, affine, "z")


CASES = {
    "erode vertebra": lambda fast, affine: inject.erode(fast, "vertebra_L1", MORPH_VOXELS),
    "erode rib": lambda fast, affine: inject.erode(fast, "rib_left_10", MORPH_VOXELS),
    "dilate vertebra": lambda fast, affine: inject.dilate(fast, "vertebra_L1", MORPH_VOXELS),
    "dilate rib": lambda fast, affine: inject.dilate(fast, "rib_left_10", MORPH_VOXELS),
    "shift vertebra 5 mm along z": _shift_l1,
    "shift rib 5 mm along y": lambda fast, affine: inject.shift(fast, "rib_left_10", 5.0, affine, "y"),
    "delete vertebra": lambda fast, affine: inject.delete(fast, "vertebra_L1"),
    "delete rib": lambda fast, affine: inject.delete(fast, "rib_left_10"),
    "swap T12 and L1": lambda fast, affine: inject.swap(fast, "vertebra_T12", "vertebra_L1"),
    "T12, L1, L2 one level off": lambda fast, affine: inject.shift_levels(fast, ["vertebra_T12", "vertebra_L1", "vertebra_L2"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_bones_go_to_review_and_the_fast_member_is_named(series, undamaged, case):
    fast = series.label_maps[series.damaged_member]
    injury = CASES[case](fast, series.affine)
    results = series.assess(injury.label_map)

    for bone in sorted(injury.damaged):
        r = results[bone]
        assert r.status == REVIEW, f"{injury.description}: {bone} is {r.status} (score {r.score:.3f}, agreements {r.member_agreement})"
        assert r.outlier_source == series.damaged_source, (
            f"{injury.description}: {bone} outlier {r.outlier_source!r}, agreements {r.member_agreement}")

    accepted = [bone for bone, r in undamaged.items() if r.status == ACCEPT and bone not in injury.damaged]
    kept = [bone for bone in accepted if results[bone].status == ACCEPT]
    assert accepted and len(kept) >= KEPT_ACCEPT * len(accepted), (
        f"{injury.description}: only {len(kept)}/{len(accepted)} undamaged bones stay accepted; lost {sorted(set(accepted) - set(kept))}")
