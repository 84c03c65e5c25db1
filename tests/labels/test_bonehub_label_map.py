"""BoneHub's label maps (4-digit v1, 9-digit v2): every value walked through the mapping, and the way back."""

from __future__ import annotations

import re

import numpy as np
import pytest

from labels.bonehub_labels import BONEHUB_LABEL_SETS, bonehub_label_set, bonehub_name, bonehub_targets, bonehub_value, bonehub_version
from labels.errors import BoneHubInputError
from labels.label_sets import RefusedLabelError, UnmappedLabelError
from labels.schema import default_schema

SCHEMA = default_schema()
VERSIONS = sorted(BONEHUB_LABEL_SETS)
_SIDE = re.compile(r"_(LEFT|RIGHT)$")


def _usable(version):
    return [label for label in bonehub_label_set(version).labels.values() if not label.refused]


def _side_of(name: str) -> str | None:
    match = _SIDE.search(name)
    return match.group(1).lower() if match else None


def test_every_value_is_listed_once_with_the_layout_of_its_version():
    v1, v2 = bonehub_label_set("v1"), bonehub_label_set("v2")
    assert (len(v1.labels), len(v2.labels)) == (276, 1452)
    assert all(bonehub_version(value) == "v1" for value in v1.labels)
    assert all(bonehub_version(value) == "v2" for value in v2.labels)
    for label in v2.labels.values():  # the side digit and the name's suffix agree; every sided value has all three
        side = {"left": 1, "right": 2, None: 0}[_side_of(label.name)]
        assert label.value % 10 == side, label.name
        if side == 1:
            assert {label.value - 1, label.value + 1} <= set(v2.labels), label.name


@pytest.mark.parametrize("version", VERSIONS)
def test_every_value_maps_to_schema_structures_or_is_refused_with_a_reason(version):
    label_set = bonehub_label_set(version)
    for label in label_set.labels.values():
        if label.refused:
            assert label.schema_name is None and "no schema node" in label.refused, label.name
            continue
        assert label.schema_name is not None, f"{label.name}: bone voxels must never be dropped"
        for target in label.targets():
            structure = SCHEMA[target]
            side = _side_of(label.name)
            if target == "costal_cartilages":  # one structure for every cartilage of both sides (labels/README.md)
                assert structure.laterality is None and not label.split_by_side
            elif side is not None:  # a sided value: a sided structure of that side, never split again
                assert structure.laterality == side and not label.split_by_side, label.name
            elif label.split_by_side:  # side not distinguished: split by the midline into both sides
                assert structure.laterality in ("left", "right"), label.name
            else:
                assert structure.laterality is None, label.name


@pytest.mark.parametrize("version", VERSIONS)
def test_harmonize_walks_every_value_to_its_structures(version):
    label_set = bonehub_label_set(version)
    labels = _usable(version)
    native = np.array([[[label.value for label in labels]]], np.int64)
    for side in ("left", "right"):
        out = label_set.harmonize(native, np.full(native.shape, side == "left"))
        expected = [SCHEMA[label.side_target(side) if label.split_by_side else label.schema_name].id for label in labels]
        assert out.ravel().tolist() == expected


def test_v2_parts_and_tissues_map_to_their_bone():
    v2 = bonehub_label_set("v2")
    for label in v2.labels.values():
        whole = v2.labels[label.value // 100000 * 100000 + label.value % 10]
        if label.value != whole.value and (label.value // 10) % 10000:  # a part or a tissue of a structure
            assert (label.schema_name, label.split_by_side) == (whole.schema_name, whole.split_by_side), label.name
    assert v2.by_name("FEMUR_PROXIMAL_CORTICAL_LEFT").schema_name == "femur_left"
    assert v2.by_name("VERTEBRA_L3_BODY_TRABECULAR").schema_name == "vertebra_L3"
    assert v2.by_name("HIP_BONE_PUBIS").targets() == ["hip_left", "hip_right"]
    assert v2.by_name("STERNUM_XIPHOID_PROCESS").schema_name == "sternum"
    assert v2.by_name("RIB_7_POSTERIOR").targets() == ["rib_left_7", "rib_right_7"]


def test_v1_parts_map_to_their_bone():
    v1 = bonehub_label_set("v1")
    for name, bone in (("FEMUR_DISTAL_RIGHT", "femur_right"), ("ILLIUM_LEFT", "hip_left"), ("CLAVICLE_MEDIAL_LEFT", "clavicle_left"),
                       ("PHALANGE_HAND_1_2_LEFT", "phalanx_hand_1_distal_left"), ("PHALANGE_FOOT_3_2_RIGHT", "phalanx_foot_3_middle_right"),
                       ("LATERAL_CUNEIFORM_RIGHT", "cuneiform_lateral_right"), ("RIB_13_LEFT", "rib_left_13")):
        assert v1.by_name(name).schema_name == bone


def test_aggregates_map_to_the_node_of_the_same_content_or_are_refused():
    v1, v2 = bonehub_label_set("v1"), bonehub_label_set("v2")
    assert v1.by_name("UPPER_EXTREMITY_BOTH").schema_name == "upper_limb"  # v1: without the shoulder girdle
    assert "scapula_left" not in {s.name for s in SCHEMA.descendants("upper_limb")}
    assert v2.by_name("UPPER_EXTREMITY").refused and v2.by_name("UPPER_EXTREMITY_LEFT").refused  # v2: with it
    assert v1.by_name("RIBS").targets() == ["ribs_left", "ribs_right"] and v1.by_name("RIBS_WITH_STERNUM").refused
    assert v2.by_name("THORACIC_CAGE").schema_name == "thoracic_cage"
    assert {s.name for s in SCHEMA.children("thoracic_cage")} == {"ribs_left", "ribs_right", "sternum", "costal_cartilages"}
    assert v2.by_name("THORACIC_SPINE").schema_name == "thoracic_vertebrae" and "vertebra_T13" in {
        s.name for s in SCHEMA.children("thoracic_vertebrae")}
    assert v2.by_name("VERTEBRAL_COLUMN").schema_name == "spine" and "coccyx" in {s.name for s in SCHEMA.children("spine")}
    assert v2.by_name("PRESACRAL_SPINE").refused and v1.by_name("VERTEBRAE").refused
    skull = {s.name for s in SCHEMA.descendants("skull") if s.level == "bone"}
    assert v2.by_name("SKULL").schema_name == "skull" and {"mandible", "vomer", "frontal_bone"} <= skull
    assert not skull & {"hyoid", "malleus_left", "stapes_right"}  # BoneHub's skull holds neither
    assert v2.by_name("PARIETAL_BONE").schema_name == "parietal_bones"  # the two meet in the midline: not split
    assert v2.by_name("TEMPORAL_BONE").targets() == ["temporal_bone_left", "temporal_bone_right"]
    assert v2.by_name("SACRUM_S2_S5").schema_name == v1.by_name("SACRUM_WITHOUT_S1").schema_name == "sacrum_below_s1"
    assert v2.by_name("PHALANGES_HAND_1_LEFT").refused and v2.by_name("HAND_RIGHT").refused


def test_unknown_and_refused_values_are_hard_errors_naming_them():
    for version, value in (("v1", 123), ("v2", 999999999)):
        with pytest.raises(UnmappedLabelError, match=rf"\[{value}\]"):
            bonehub_label_set(version).harmonize(np.array([0, value], np.int64))
        with pytest.raises(BoneHubInputError, match=str(value)):
            bonehub_name(value)
    with pytest.raises(RefusedLabelError, match=r"500000001 \(HAND_LEFT\) is refused: no schema node"):
        bonehub_label_set("v2").harmonize(np.array([710000001, 500000001], np.int64))
    with pytest.raises(BoneHubInputError, match="2000"):
        bonehub_targets([2101, 2000])
    for value in (0, 12345, 1_000_000_000, -1, True):
        with pytest.raises(BoneHubInputError):
            bonehub_version(value)
    with pytest.raises(BoneHubInputError, match="v3"):
        bonehub_label_set("v3")


def test_the_reverse_map_round_trips_for_every_schema_bone():
    v2 = bonehub_label_set("v2")
    for structure in SCHEMA:
        if structure.name in ("upper_limb", "lower_limb", "pelvic_girdle"):  # BoneHub has no structure of that content
            with pytest.raises(BoneHubInputError, match=structure.name):
                bonehub_value(structure.name)
            continue
        value = bonehub_value(structure.name)
        assert v2.labels[value].targets() == [structure.name], structure.name
        assert bonehub_name(value) == v2.labels[value].name
    assert bonehub_value("femur_left") == 710000001 and bonehub_name(710000001) == "FEMUR_LEFT"
    assert bonehub_value("rib_right_13") == 311300002 and bonehub_value("costal_cartilages") == 330000000
    assert bonehub_targets([710000001, 2101]) == {"femur_left", "vertebra_C1"}


_PART_WORDS = {1: "PROXIMAL", 2: "SHAFT", 3: "DISTAL", 4: "BASE", 5: "HEAD", 6: "MEDIAL", 7: "LATERAL", 8: "ANTERIOR",
               9: "POSTERIOR", 10: "BODY", 11: "ARCH", 12: "MANUBRIUM", 13: "XIPHOID_PROCESS", 20: "ILIUM", 21: "ISCHIUM",
               22: "PUBIS"}
_TISSUE_WORDS = {1: "CORTICAL", 2: "TRABECULAR", 3: "MEDULLARY_CAVITY"}


def test_v2_names_spell_their_value_and_each_region_has_its_count():
    """Checked value by value against BoneHub's 9-digit ``BoneLabelMap``: every name is STRUCTURE[_PART][_TISSUE][_SIDE]."""
    labels = bonehub_label_set("v2").labels
    for value, label in labels.items():
        part, tissue, side = value // 1000 % 100, value // 10 % 100, value % 10
        assert (part in _PART_WORDS or not part) and (tissue in _TISSUE_WORDS or not tissue) and side in (0, 1, 2), value
        expected = labels[value // 100000 * 100000].name + "".join(
            f"_{word}" for word in (_PART_WORDS.get(part), _TISSUE_WORDS.get(tissue), {1: "LEFT", 2: "RIGHT"}.get(side)) if word)
        assert label.name == expected, value
    per_region = np.bincount([value // 100000000 for value in labels], minlength=10).tolist()
    assert per_region == [0, 54, 225, 199, 183, 291, 37, 159, 300, 4]  # head, spine, thorax, arm, hand, pelvis, leg, foot, whole body
    assert np.bincount([value // 10 % 100 for value in labels]).tolist() == [1046, 167, 167, 72]  # whole, cortical, trabecular, medullary
