"""The error injections on a tiny synthetic map, and smoke runs of the two QC benchmarks; times are never asserted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import error_injection as inject
from bench import qc_detection, qc_speed
from labels.schema import default_schema
from qc.results import BoneResult

SCHEMA = default_schema()
T12, L1, L2, L3 = (SCHEMA[f"vertebra_{level}"].id for level in ("T12", "L1", "L2", "L3"))
AFFINE = np.array([[0, 0, 2.0, -10], [0, 2.0, 0, -20], [-3.0, 0, 0, 100], [0, 0, 0, 1]])  # slices head to feet, 3 mm; 2 mm pixels
SPEED_SHAPE = (40, 48, 48)  # the anchor on every bone in seconds; 51 bones of the phantom are still on this grid


@pytest.fixture
def spine() -> np.ndarray:
    """Three 4 x 6 x 6 blocks stacked along the slices (T12 above L1 above L2) with gaps, in a 20 x 12 x 12 map."""
    labels = np.zeros((20, 12, 12), np.uint16)
    for index, value in enumerate((T12, L1, L2)):
        labels[2 + 6 * index: 6 + 6 * index, 3:9, 3:9] = value
    return labels


def _unchanged_outside(before: np.ndarray, after: np.ndarray, values: set[int]) -> bool:
    touched = np.isin(before, list(values)) | np.isin(after, list(values))
    return np.array_equal(before[~touched], after[~touched])


def test_erode_peels_the_surface_and_leaves_the_rest(spine):
    before = spine.copy()
    injury = inject.erode(spine, "vertebra_L1", 1)
    assert np.array_equal(spine, before)  # input untouched
    assert injury.damaged == {"vertebra_L1"}
    assert np.count_nonzero(injury.label_map == L1) == 2 * 4 * 4  # 4 x 6 x 6 block -> 2 x 4 x 4 core
    assert _unchanged_outside(spine, injury.label_map, {L1})
    assert not (inject.erode(spine, "vertebra_L1", 2).label_map == L1).any()  # no voxel is 3 voxels deep in a 4-slice block


def test_dilate_grows_into_background_only(spine):
    injury = inject.dilate(spine, "vertebra_L1", 2)
    grown = (injury.label_map == L1) & (spine != L1)
    assert grown.any() and (spine[grown] == 0).all()
    assert np.array_equal(injury.label_map == T12, spine == T12) and np.array_equal(injury.label_map == L2, spine == L2)
    assert injury.damaged == {"vertebra_L1"}
    assert injury.label_map[8:12, 1, 4:8].tolist() == [[L1] * 4] * 4  # 2 voxels out from the block's face
    assert (injury.label_map[:, 0] == 0).all()  # 3 voxels out stays background


def test_shift_moves_by_whole_voxels_and_reports_the_actual_shift(spine):
    assert inject.voxel_shift(5.0, AFFINE, "z") == (0, -2, 6.0)  # +z (headwards) is towards slice 0
    assert inject.voxel_shift(-3.0, AFFINE, "x") == (2, -2, -4.0)  # -1.5 voxels rounds to -2 (numpy rounds half to even)
    injury = inject.shift(spine, "vertebra_L2", 3.0, AFFINE, "y")  # 1.5 pixels rounds to 2
    assert "+4 mm" in injury.description and injury.damaged == {"vertebra_L2"}
    assert np.array_equal(injury.label_map == L2, np.roll(spine == L2, 2, axis=1))
    assert _unchanged_outside(spine, injury.label_map, {L2})


def test_shift_goes_into_background_only(spine):
    injury = inject.shift(spine, "vertebra_L1", 12.0, AFFINE, "z")  # 4 slices up: half into the gap, half onto T12
    assert np.array_equal(injury.label_map == T12, spine == T12)
    assert np.count_nonzero(injury.label_map == L1) == 2 * 6 * 6  # the 2 slices that land in the gap


def test_delete_and_swap(spine):
    deleted = inject.delete(spine, "vertebra_L1")
    assert not (deleted.label_map == L1).any() and deleted.damaged == {"vertebra_L1"}
    assert _unchanged_outside(spine, deleted.label_map, {L1})
    swapped = inject.swap(spine, "vertebra_T12", "vertebra_L1")
    assert np.array_equal(swapped.label_map == L1, spine == T12) and np.array_equal(swapped.label_map == T12, spine == L1)
    assert swapped.damaged == {"vertebra_T12", "vertebra_L1"}
    with pytest.raises(ValueError, match="vertebra_L3 is not in the label map"):
        inject.delete(spine, "vertebra_L3")


def test_shift_levels_labels_a_run_one_level_off(spine):
    injury = inject.shift_levels(spine, ["vertebra_T12", "vertebra_L1", "vertebra_L2"])
    for old, new in ((T12, L1), (L1, L2), (L2, L3)):
        assert np.array_equal(injury.label_map == new, spine == old)
    assert injury.damaged == {"vertebra_T12", "vertebra_L1", "vertebra_L2", "vertebra_L3"}
    assert inject.level_after("rib_left_11", 1) == "rib_left_12"
    with pytest.raises(ValueError, match="consecutive"):
        inject.shift_levels(spine, ["vertebra_T12", "vertebra_L2"])
    with pytest.raises(ValueError, match="no vertebra or same-side rib"):
        inject.level_after("vertebra_S1", 1)


def test_translate_and_boundary_noise(spine):
    moved = inject.translate(spine, (1, 0, -1))
    assert np.array_equal(moved[1:, :, :-1], spine[:-1, :, 1:]) and not moved[0].any() and not moved[:, :, -1].any()
    noisy = inject.boundary_noise(spine, 0.5, seed=3)
    assert np.array_equal(noisy, inject.boundary_noise(spine, 0.5, seed=3))
    changed = noisy != spine
    assert changed.any()
    interior = np.zeros_like(changed)
    interior[3:5, 4:8, 4:8] = True  # T12's core: no 6-neighbour has another label
    assert not changed[interior].any()


@pytest.fixture(scope="module")
def speed(tmp_path_factory):
    path = tmp_path_factory.mktemp("qc_speed") / "qc_speed.json"
    return qc_speed.run(SPEED_SHAPE, measured_bones=None, results_path=path), path


def test_qc_speed_equals_the_full_volume_anchor_on_every_bone(speed):
    results, path = speed
    assert json.loads(path.read_text())["compared_bones"] == results["compared_bones"]
    assert len(results["members"]) == 9
    assert results["compared_bones"] > 50 and results["anchor"]["measured_bones"] == results["compared_bones"]
    assert not results["anchor"]["extrapolated"]
    assert results["goals"]["equal"]["met"], results["largest_difference"]
    assert all(b["largest_difference"] <= qc_speed.GOAL_EQUAL for b in results["anchor"]["bones"])
    assert any(len(set(b["member_agreement"])) > 1 for b in results["anchor"]["bones"])  # the members do disagree


def test_qc_speed_anchor_samples_small_median_and_large_bones():
    fields = {name: 0.0 for name in BoneResult.__dataclass_fields__}
    fields |= {"series_uid": "1.2", "study_uid": "1.3", "level": "bone", "status": "accept", "outlier_source": "",
               "flags": (), "members": (), "member_agreement": ()}
    bones = [BoneResult(**(fields | {"bone": name, "volume_ml": volume}))
             for name, volume in (("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 5.0), ("e", 4.0))]
    assert [r.bone for r in qc_speed.chosen_bones(bones, 3)] == ["b", "a", "d"]
    assert [r.bone for r in qc_speed.chosen_bones(bones, None)] == ["b", "c", "a", "e", "d"]


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    path = tmp_path_factory.mktemp("qc_detection") / "qc_detection.json"
    qc_detection.run(results_path=path)
    return json.loads(path.read_text())


def test_qc_detection_reports_every_error_type(detection):
    sample = detection["modes"]["sample"]
    assert sample["damaged_source"] == "TotalSegmentator fast"
    assert len(sample["bones"]) == 17  # T11 to L2, ribs 7-12 on both sides, costal cartilages
    assert set(sample["errors"]) == set(qc_detection.ERRORS)
    for error, found in sample["errors"].items():
        assert {"injections", "damaged_bones", "untouched_bones", "auroc", "flagged_share", "sensitivity",
                "false_alarm_rate", "outlier_named", "missed", "misnamed"} <= set(found), error
        assert found["injections"] > 0 and found["damaged_bones"] > 0, error
        for key in ("auroc", "flagged_share", "sensitivity", "false_alarm_rate", "outlier_named"):
            assert 0.0 <= found[key] <= 1.0, (error, key, found[key])
        assert len(found["missed"]) == round((1 - found["sensitivity"]) * found["damaged_bones"]), error


def test_qc_detection_reports_errors_made_in_every_member_alike(detection):
    alike = detection["modes"]["sample_alike"]
    assert alike["damaged_source"] is None and set(alike["errors"]) == set(qc_detection.ALIKE_ERRORS)
    for error, found in alike["errors"].items():
        assert found["injections"] > 0 and found["damaged_bones"] > 0, error
        assert "outlier_named" not in found  # nobody to name when every member has the error
        assert len(found["missed"]) == round((1 - found["sensitivity"]) * found["damaged_bones"]), error
    assert detection["goals"] == qc_detection.GOALS


def test_auroc_counts_ties_half():
    assert qc_detection.auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert qc_detection.auroc([0.1], [0.9]) == 0.0
    assert qc_detection.auroc([0.5], [0.5, 0.1]) == 0.75
