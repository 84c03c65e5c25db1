"""Stage 2's core on known geometry and on the real sample: metric convention, empty masks, units, rules, score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labels.schema import default_schema
from qc.assess import assess_series
from qc.metrics import MaskSurface, compare
from qc.results import Member
from qc.score import QcSettings
from qc.units import comparison_units

SCHEMA = default_schema()
FULL, FAST = "seg_totalsegmentator_v2_full.nii.gz", "seg_totalsegmentator_v2_fast.nii.gz"
SERIES, STUDY = "1.2.826.0.1.3680043.8.498.9001", "1.2.826.0.1.3680043.8.498.9000"


def _members(*names: str) -> list[Member]:
    return [Member(name, "1", "none", f"1.2.3.{i}", f"1.2.3.{i}.1") for i, name in enumerate(names, start=1)]


def _by_bone(qc) -> dict:
    return {r.bone: r for r in qc.results}


def test_metrics_on_two_boxes_one_slice_apart():
    """A 4x4x4 box and the same box one slice further (slices 2 mm apart, 1 mm pixels)."""
    a, b = np.zeros((10, 10, 10), bool), np.zeros((10, 10, 10), bool)
    a[2:6, 2:6, 2:6] = True
    b[3:7, 2:6, 2:6] = True
    m = compare(MaskSurface(a, (2.0, 1.0, 1.0)), MaskSurface(b, (2.0, 1.0, 1.0)), tolerance_mm=1.0)
    assert m.dice == pytest.approx(2 * 48 / 128)
    assert m.centroid_mm == pytest.approx(2.0)
    assert m.hd95_mm == pytest.approx(2.0)  # the end faces are 2 mm from the other surface
    # 56 surface voxels each: the 16 of the end face outside the other box are 2 mm from its surface; the 4
    # inner voxels of the end face inside it are 1 mm (one pixel) from its side; the other 36 lie on its surface
    assert m.nsd == pytest.approx(1 - 2 * 16 / 112)
    assert m.assd_mm == pytest.approx((2 * 16 * 2.0 + 2 * 4 * 1.0) / 112)


def test_empty_masks_follow_the_convention():
    empty, full = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    full[1:4, 1:4, 1:4] = True
    spacing = (1.0, 1.0, 1.0)
    assert compare(MaskSurface(empty, spacing), MaskSurface(empty, spacing), 2.0) is None  # skipped, not Dice 1
    one = compare(MaskSurface(full, spacing), MaskSurface(empty, spacing), 2.0)
    assert one.dice == 0 and one.nsd == 0 and math.isnan(one.hd95_mm) and math.isnan(one.assd_mm)


def test_units_follow_each_sources_granularity():
    """The baseline (skeleton only) is compared only at the root; a missed L1 next to a found L2 is a unit."""
    units = {u.structure: u for u in comparison_units([["vertebra_L2", "rib_left_7"], ["vertebra_L1", "vertebra_L2"], ["skeleton"]], SCHEMA)}
    assert units["vertebra_L1"].members == (0, 1)  # member 0 labels lumbar vertebrae, so its empty L1 counts
    assert units["rib_left_7"].members == (0,)  # member 1 labels no rib: not asked about ribs
    assert units["skeleton"].members == (0, 1, 2)
    assert set(units["skeleton"].ids) == {s.id for s in SCHEMA}
    assert "vertebra_C1" not in units


def test_sample_sources_agree_and_absent_bones_are_absent(sample_ct, sample_schema_maps):
    qc = assess_series(SERIES, STUDY, _members("full", "fast"), [sample_schema_maps[FULL], sample_schema_maps[FAST]], sample_ct.volume.affine)
    results = _by_bone(qc)
    assert results["vertebra_L1"].status == "accept" and results["vertebra_L1"].dice_mean > 0.9
    assert results["vertebra_L4"].status == "absent" and math.isnan(results["vertebra_L4"].score)
    assert all(not math.isinf(getattr(r, f)) for r in qc.results for f in ("hd95_mm", "assd_mm", "dice_mean", "score"))
    # the consensus label map holds exactly the structures with a consensus segment, numbered in schema order
    present = [int(v) for v in np.unique(qc.consensus) if v]
    assert {SCHEMA[v].name: n for n, v in enumerate(present, start=1)} == {r.bone: r.consensus_segment for r in qc.results if r.consensus_segment}


def test_a_single_source_is_insufficient(sample_ct, sample_schema_maps):
    qc = assess_series(SERIES, STUDY, _members("full"), [sample_schema_maps[FULL]], sample_ct.volume.affine)
    assert {r.status for r in qc.results} == {"insufficient_sources"}
    assert all(math.isnan(r.score) for r in qc.results)


def _swap(label_map: np.ndarray, a: str, b: str) -> np.ndarray:
    out = label_map.copy()
    out[label_map == SCHEMA[a].id] = SCHEMA[b].id
    out[label_map == SCHEMA[b].id] = SCHEMA[a].id
    return out


def test_rules_catch_what_all_sources_get_wrong_alike(sample_ct, sample_schema_maps):
    """Left and right ribs 10 swapped, T12 and L1 swapped, in both sources: agreement is high, anatomy is not."""
    damaged = [_swap(_swap(sample_schema_maps[name], "rib_left_10", "rib_right_10"), "vertebra_T12", "vertebra_L1") for name in (FULL, FAST)]
    results = _by_bone(assess_series(SERIES, STUDY, _members("full", "fast"), damaged, sample_ct.volume.affine))
    for bone in ("rib_left_10", "rib_right_10"):
        assert "wrong_side" in results[bone].flags and results[bone].status == "review"
    for bone in ("vertebra_T12", "vertebra_L1"):
        assert "level_order" in results[bone].flags and results[bone].status == "review"
    # rib 12 meets the vertebra now labelled L1: its level no longer fits
    assert "rib_vertebra_level" in results["rib_left_12"].flags
    assert results["vertebra_L2"].status == "accept" and results["rib_left_9"].status == "accept"


def test_member_rules_name_the_member(sample_ct, sample_schema_maps):
    """An extra piece in one source: a component flag naming it; the consensus (union of two) carries it too."""
    fast = sample_schema_maps[FAST].copy()
    fast[2:6, 10:20, 10:20] = SCHEMA["femur_left"].id  # far from the real femur: a second femur piece of 1.2 mL
    fast[20:26, 80:90, 100:110] = SCHEMA["femur_left"].id
    full = sample_schema_maps[FULL]
    qc = assess_series(SERIES, STUDY, _members("full", "fast", "fast again"), [full, fast, fast.copy()], sample_ct.volume.affine)
    femur = _by_bone(qc)["femur_left"]
    assert "extra_components" in femur.flags and femur.status == "review"
    l1 = _by_bone(qc)["vertebra_L1"]
    assert l1.status == "accept" and not any(f.startswith("extra_components") for f in l1.flags)


def test_outlier_source_is_named_and_ties_count_half(sample_ct, sample_schema_maps):
    """Three members, one eroded at L1: it is the outlier, not the two that agree."""
    from scipy import ndimage

    full, fast = sample_schema_maps[FULL], sample_schema_maps[FAST]
    eroded = fast.copy()
    l1 = eroded == SCHEMA["vertebra_L1"].id
    eroded[l1 & ~ndimage.binary_erosion(l1, iterations=2)] = 0
    members = _members("full", "fast", "eroded")
    result = _by_bone(assess_series(SERIES, STUDY, members, [full, fast, eroded], sample_ct.volume.affine))["vertebra_L1"]
    assert result.status == "review" and result.outlier_source == "eroded 1"
    assert result.member_agreement[2] < min(result.member_agreement[:2])


def test_settings_change_the_verdict_not_the_numbers(sample_ct, sample_schema_maps):
    maps, affine = [sample_schema_maps[FULL], sample_schema_maps[FAST]], sample_ct.volume.affine
    default = _by_bone(assess_series(SERIES, STUDY, _members("full", "fast"), maps, affine))
    strict = _by_bone(assess_series(SERIES, STUDY, _members("full", "fast"), maps, affine, QcSettings(review_below=0.99)))
    assert default["vertebra_L1"].status == "accept" and strict["vertebra_L1"].status == "review"
    assert strict["vertebra_L1"].dice_mean == default["vertebra_L1"].dice_mean
    with pytest.raises(ValueError, match="unknown QC rule"):
        QcSettings(rule_penalty={"no_such_rule": 0.5})


def test_settings_keep_default_penalties_and_know_the_schema():
    settings = QcSettings(rule_penalty={"too_small": 0.7})
    assert settings.rule_penalty["too_small"] == 0.7 and settings.rule_penalty["wrong_side"] == 0.5
    with pytest.raises(ValueError, match=r"min_volume_ml_by_structure: \['vertebra_Z9'\] are not structures"):
        QcSettings(min_volume_ml_by_structure={"vertebra_Z9": 2.0})
