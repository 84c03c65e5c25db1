"""Smoke run of the Stage 1 overhead benchmark on a tiny grid: every output is made and reads back; times are never asserted."""

import json

import numpy as np
import pytest

from bench import stage1_overhead
from bench.skeleton_phantom import BONE_NAMES, make_phantom, total_label
from models.augment import apply, parse_augmentation

TINY = (40, 48, 48)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("stage1_overhead") / "stage1_overhead.json"
    return stage1_overhead.run(TINY, results_path=path), path


def test_results_json_is_written(run):
    results, path = run
    written = json.loads(path.read_text())
    assert written["grid"]["shape"] == list(TINY)
    assert written["ours"]["per_series_seconds"] == pytest.approx(results["ours"]["per_series_seconds"])


def test_both_sides_make_every_output_with_every_step(run):
    results, _ = run
    ours, anchor = results["ours"]["outputs"], results["anchor"]["outputs"]
    assert [(o["source"], o["augmentation"]) for o in ours] == [(s, str(parse_augmentation(a))) for s, a in stage1_overhead.OUTPUTS]
    assert len(anchor) == len(ours) == 9
    assert all(set(o["seconds"]) == set(stage1_overhead.OUR_STEPS) and o["size_bytes"] > 0 for o in ours)
    for output in anchor:
        assert set(output["seconds"]) == {"write_nifti", "write_metadata"}
        assert set(output["itkimage2segimage_seconds"]) == set(stage1_overhead.ANCHOR_FLAVOURS)
        assert all(size > 0 for size in output["size_bytes"].values())
    assert set(results["goals"]) == {"per_series", "faster_than_anchor"}
    assert all(isinstance(goal["met"], bool) for goal in results["goals"].values())


def test_every_seg_reads_back_as_the_schema_map_of_its_output(run):
    results, _ = run
    read_back = results["checks"]["read_back_exact"]
    assert set(read_back) == {"ours", *(f"anchor_{f}" for f in stage1_overhead.ANCHOR_FLAVOURS)}
    for side, flags in read_back.items():
        assert flags == [True] * 9, side


def test_rotated_outputs_come_back_onto_the_source_grid(run):
    """A wrong rotation sign in the stand-in or in invert would leave about half of the labelled voxels off."""
    results, _ = run
    agreement = results["checks"]["rotation_round_trip_agreement"]
    assert set(agreement) == set(stage1_overhead.SOURCE_SEEDS)
    assert all(value > 0.9 for value in agreement.values()), agreement


def test_stand_in_labels_follow_the_rotated_ct():
    volume, labels = make_phantom(TINY)
    aug = parse_augmentation(stage1_overhead.ROTATION)
    bone_in_ct = apply(aug, volume, "1.2.3").array > 400
    bones = [total_label(name) for name in BONE_NAMES if name != "costal_cartilages"]

    def dice(moved: np.ndarray) -> float:
        bone = np.isin(moved, bones)
        return 2 * np.count_nonzero(bone & bone_in_ct) / (np.count_nonzero(bone) + np.count_nonzero(bone_in_ct))

    assert dice(stage1_overhead.rotated_like_ct(aug, labels, volume)) > 0.85 > dice(labels)


def test_stand_in_refuses_rotations_about_several_axes():
    volume, labels = make_phantom(TINY)
    with pytest.raises(ValueError, match="one axis"):
        stage1_overhead.rotated_like_ct(parse_augmentation("rotate(2,0,5)"), labels, volume)
