"""The benchmark phantom: a plausible, deterministic ``total`` label map; and a smoke run of the SEG benchmark."""

import json

import numpy as np
import pytest

from bench import seg_encoding
from bench.skeleton_phantom import BONE_NAMES, make_phantom
from labels.laterality import world_x

SMALL = (80, 64, 64)  # 18.75 mm slices, 7.2 mm pixels: every bone still present
TINY = (40, 48, 48)


@pytest.fixture(scope="module")
def total_classes(test_data) -> dict[int, str]:
    classes = json.loads((test_data / "terminology" / "totalsegmentator_class_maps.json").read_text())["total"]
    return {int(value): name for value, name in classes.items()}


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(SMALL)


def test_all_bones_of_total_are_present(phantom, total_classes):
    present = {total_classes[int(v)] for v in np.unique(phantom[1]) if v}
    bones = present & set(BONE_NAMES)
    assert len(BONE_NAMES) == 63
    assert len(bones) >= 60, sorted(set(BONE_NAMES) - bones)


def test_every_label_is_a_total_class(phantom, total_classes):
    values = {int(v) for v in np.unique(phantom[1]) if v}
    assert values <= set(total_classes), sorted(values - set(total_classes))
    assert {total_classes[v] for v in values} >= {"liver", "spleen", "kidney_left", "kidney_right", "lung_upper_lobe_left"}


def test_left_structures_lie_at_larger_patient_x(phantom, total_classes):
    volume, labels = phantom
    x = world_x(labels.shape, volume.affine)
    value = {name: v for v, name in total_classes.items()}

    def mean_x(name: str) -> float:
        return float(x[labels == value[name]].mean())

    pairs = [name for name in total_classes.values() if "_left" in name and value[name] in labels]
    assert len(pairs) >= 20  # kidneys, two lung lobes, five paired bones, twelve ribs
    for left in pairs:
        right = left.replace("_left", "_right")
        assert mean_x(left) > 0 > mean_x(right), (left, mean_x(left), mean_x(right))


def test_ct_holds_air_soft_tissue_and_bone(phantom, total_classes):
    volume, labels = phantom
    bone = np.isin(labels, [v for v, name in total_classes.items() if name in BONE_NAMES and name != "costal_cartilages"])
    assert volume.array.dtype == np.int16 and volume.array.shape == labels.shape
    assert np.all(volume.array[bone] == 700)
    assert volume.array[0, 0, 0] == -1000
    assert np.count_nonzero(volume.array == 40) > 0


def test_phantom_is_deterministic(phantom):
    volume, labels = make_phantom(SMALL)
    assert np.array_equal(labels, phantom[1]) and np.array_equal(volume.array, phantom[0].array)
    assert np.array_equal(volume.affine, phantom[0].affine)
    assert not np.array_equal(make_phantom(SMALL, seed=1)[1], labels)


def test_benchmark_smoke_run(tmp_path):
    """End to end on a tiny grid; only correctness is asserted, never a time."""
    results = seg_encoding.run(TINY, repeats=1, results_path=tmp_path / "seg_encoding.json")
    assert json.loads((tmp_path / "seg_encoding.json").read_text())["grid"]["shape"] == list(TINY)
    for name in ("ours_labelmap", "ours_binary"):
        assert results[name]["read_back_exact"], results[name]["mismatch"]
        assert results[name]["size_bytes"] > 0 and results[name]["seconds"]
    assert results["anchor"]["size_bytes"] > 0 and results["anchor"]["seconds"]
    assert results["input"]["schema_structures"] > 40
