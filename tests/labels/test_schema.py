"""The bone schema: coverage of every source, tree shape, code rules, lookups."""

import csv
import json

import numpy as np
import pytest
from pydicom.sr._concepts_dict import concepts

from labels.label_sets import (
    LabelSet,
    LabelSetError,
    NativeLabel,
    UnmappedLabelError,
    finest_comparable,
    load_label_set,
    packaged_label_sets,
)
from labels.laterality import patient_left_mask
from labels.schema import PRIVATE_SCHEME_DESIGNATOR, Code, default_schema


@pytest.fixture(scope="module")
def schema():
    return default_schema()


def _terminology_codes(folder):
    """Every (scheme, value) pair in the terminology files, CSV and JSON alike."""
    found = set()
    for path in folder.rglob("*.csv"):
        for row in csv.DictReader(path.open()):
            for key, value in row.items():
                if key and key.endswith("CodeValue") and value:
                    prefix = key[: -len("CodeValue")]
                    scheme = row.get(prefix + "CodingSchemeDesignator") or row.get(prefix + "CodingScheme")
                    found.add((scheme, value))

    def walk(node):
        if isinstance(node, dict):
            if "CodeValue" in node and "CodingSchemeDesignator" in node:
                found.add((node["CodingSchemeDesignator"], node["CodeValue"]))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    for path in folder.glob("*.json"):
        walk(json.loads(path.read_text()))
    return found


def _dicom_dictionary_codes():
    return {(scheme, value) for scheme, by_keyword in concepts.items() for entry in by_keyword.values() for value in entry}


def test_every_code_comes_from_a_terminology_source_or_is_declared_private(schema, test_data):
    known = _terminology_codes(test_data / "terminology") | _dicom_dictionary_codes()
    for s in schema:
        for code in (s.category, s.type, s.modifier):
            if code is None:
                continue
            if code.is_private:
                assert code.scheme == PRIVATE_SCHEME_DESIGNATOR, s.name
                assert "private code" in s.note, f"{s.name}: a private code must say why in the note"
            else:
                assert code.key in known, f"{s.name}: {code} is in no terminology source nor the DICOM dictionary"


def test_schema_covers_every_bone_class_of_each_source(schema):
    for name in packaged_label_sets():
        label_set = load_label_set(name)
        assert label_set.emitted(), name
        assert all(t in schema for t in label_set.emitted())
    total = load_label_set("totalsegmentator_total")
    bones = {label.name for label in total.labels.values() if label.schema_name}
    assert {"vertebrae_C1", "vertebrae_S1", "sacrum", "rib_left_12", "skull", "sternum", "hip_right", "clavicula_left"} <= bones
    assert len(bones) == 63  # 25 vertebrae C1-S1, sacrum, 24 ribs, sternum, cartilages, skull, 5 paired bones x 2
    assert len({label.schema_name for label in load_label_set("moose_clin_ct_vertebrae").labels.values()}) == 28
    assert len(load_label_set("moose_clin_ct_ribs").emitted()) == 27
    assert len(load_label_set("moose_clin_ct_peripheral_bones").emitted()) == 31
    assert len(load_label_set("totalsegmentator_appendicular_bones").emitted()) == 22


def test_every_native_label_of_totalsegmentator_is_listed(test_data):
    class_maps = json.loads((test_data / "terminology" / "totalsegmentator_class_maps.json").read_text())
    for task in ("total", "total_v1", "appendicular_bones"):
        label_set = load_label_set(f"totalsegmentator_{task}")
        assert {(int(k), v) for k, v in class_maps[task].items()} == {(l.value, l.name) for l in label_set.labels.values()}


def test_tree_has_the_documented_shape(schema):
    assert [a.name for a in schema.ancestors("vertebra_L1")] == ["lumbar_vertebrae", "spine", "skeleton"]
    assert [a.name for a in schema.ancestors("rib_left_7")] == ["ribs_left", "thoracic_cage", "skeleton"]
    assert [a.name for a in schema.ancestors("calcaneus_left")] == ["tarsals_left", "lower_limb", "skeleton"]
    assert [s.name for s in schema if s.parent is None] == ["skeleton"]  # one root: whole-skeleton sources compare there
    assert {s.name for s in schema.children("skeleton")} == {
        "skull", "spine", "thoracic_cage", "shoulder_girdle", "pelvic_girdle", "upper_limb", "lower_limb",
        "hyoid", "auditory_ossicles_left", "auditory_ossicles_right",  # BoneHub: neither is part of the skull
    }
    assert [a.name for a in schema.ancestors("vertebra_T13")] == ["thoracic_vertebrae", "spine", "skeleton"]
    assert [a.name for a in schema.ancestors("coccyx")] == ["spine", "skeleton"]
    assert [a.name for a in schema.ancestors("parietal_bone_left")] == ["parietal_bones", "cranium", "skull", "skeleton"]
    assert [a.name for a in schema.ancestors("mandible")] == ["facial_bones", "skull", "skeleton"]
    assert [a.name for a in schema.ancestors("metacarpal_3_right")] == ["metacarpals_right", "upper_limb", "skeleton"]
    assert [s.name for s in schema.children("phalanges_foot_left")][:3] == [
        "phalanx_foot_1_proximal_left", "phalanx_foot_1_distal_left", "phalanx_foot_2_proximal_left"
    ]
    assert len(schema.children("phalanges_hand_right")) == 14 and len(schema.children("metatarsals_left")) == 5
    assert {s.name for s in schema.children("carpals_right")} == {
        f"{b}_right" for b in ("scaphoid", "lunate", "triquetrum", "pisiform", "trapezium", "trapezoid", "capitate", "hamate")
    }
    assert all(s.level == "bone" for s in schema.bones()) and not any(schema.children(b.name) for b in schema.bones())


def test_laterality_and_codes(schema):
    left, right = schema["rib_left_7"], schema["rib_right_7"]
    assert left.type == right.type and left.type.value == "24915002"
    assert left.modifier.value == "7771000" and right.modifier.value == "24028007"
    assert schema["sternum"].modifier is None
    assert all(s.category.key == ("SCT", "91723000") for s in schema)
    assert schema["lunate_left"].type.scheme == PRIVATE_SCHEME_DESIGNATOR


def test_lookup_by_code_accepts_aliases(schema):
    assert schema.find_by_code(Code("SCT", "8205005", "Carpus"), "left").name == "carpals_left"
    assert schema.find_by_code(Code("SCT", "80144004", "Calcaneus"), "right").name == "calcaneus_right"
    assert schema.find_by_code(Code("SCT", "80144004", "Calcaneus"), None) is None
    assert schema.is_anatomical_category(Code("SCT", "123037004", "Anatomical Structure"))


def test_unmapped_native_label_is_a_hard_error_naming_source_and_label():
    total = load_label_set("totalsegmentator_total")
    native = np.zeros((2, 3, 4), np.uint8)
    native[0, 0, 0] = 200
    with pytest.raises(UnmappedLabelError, match=r"totalsegmentator_total.*\[200\]"):
        total.harmonize(native)


def test_harmonize_maps_bones_and_drops_declared_non_bones(schema):
    total = load_label_set("totalsegmentator_total")
    native = np.array([[[0, 5, 31, 25, 26, 92]]], np.uint8)  # background, liver, L1, sacrum, S1, left rib 1
    out = total.harmonize(native)
    assert out.dtype == np.uint16
    assert [schema[int(v)].name if v else None for v in out.ravel()] == [None, None, "vertebra_L1", "sacrum_below_s1", "vertebra_S1", "rib_left_1"]
    v1 = load_label_set("totalsegmentator_total_v1")
    assert schema[int(v1.harmonize(np.array([92], np.uint8))[0])].name == "sacrum"


def test_appendicular_labels_are_split_by_the_midline(schema):
    app = load_label_set("totalsegmentator_appendicular_bones")
    native = np.zeros((1, 1, 12), np.uint8)
    native[0, 0, [0, 1]] = 2  # a tibia on the right
    native[0, 0, [5, 6, 7]] = 4  # tarsals across the midline (centroid left of it): one component, one side
    affine = np.array([[0, 0, 1.0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])  # columns run along patient x
    ct = np.full(native.shape, 40.0)  # body everywhere: midline at x = 5.5
    left = patient_left_mask(native, app.split_values, ct, affine)  # LPS: +x is the patient's left
    out = app.harmonize(native, left).ravel()
    assert [schema[int(v)].name for v in out[[0, 1, 5, 6, 7]]] == ["tibia_right", "tibia_right"] + ["tarsals_left"] * 3
    with pytest.raises(ValueError, match="no laterality"):
        app.harmonize(native)


def test_custom_mapping_file(tmp_path, schema):
    path = tmp_path / "foot_model.csv"
    path.write_text("native_value,native_name,schema_name,split_by_side\n1,talus,talus,yes\n2,calcaneus,calcaneus,yes\n3,soft_tissue,,\n")
    foot = load_label_set(path)
    assert foot.emitted() == {"talus_left", "talus_right", "calcaneus_left", "calcaneus_right"}
    with pytest.raises(ValueError, match="not in the bone schema"):
        LabelSet("bad", [NativeLabel(1, "os_trigonum", "os_trigonum", False)])
    with pytest.raises(ValueError, match="unknown label set"):
        load_label_set("no_such_model")


def test_finest_comparable_level(schema):
    total, total_v1 = load_label_set("totalsegmentator_total"), load_label_set("totalsegmentator_total_v1")
    moose_v = load_label_set("moose_clin_ct_vertebrae")
    appendicular, moose_p = load_label_set("totalsegmentator_appendicular_bones"), load_label_set("moose_clin_ct_peripheral_bones")
    tarsal_names = ["talus", "calcaneus", "navicular", "cuboid", "cuneiform_medial", "cuneiform_intermediate", "cuneiform_lateral"]
    all_tarsals = LabelSet("tarsals", [NativeLabel(i, n, n, True) for i, n in enumerate(tarsal_names, start=1)])
    two_tarsals = LabelSet("two", [NativeLabel(1, "calcaneus_l", "calcaneus_left", False), NativeLabel(2, "talus_l", "talus_left", False)])
    carpal_names = ["scaphoid", "lunate", "triquetrum", "pisiform", "trapezium", "trapezoid", "capitate", "hamate"]
    all_carpals = LabelSet("carpals", [NativeLabel(i, n, n, True) for i, n in enumerate(carpal_names, start=1)])
    assert finest_comparable("vertebra_L3", [total, moose_v]).name == "vertebra_L3"
    assert finest_comparable("vertebra_S1", [total, moose_v]).name == "sacrum"  # MOOSE labels the whole sacrum
    assert finest_comparable("sacrum", [total, total_v1]).name == "sacrum"  # v2: S1 + the rest; v1: one sacrum
    assert finest_comparable("calcaneus_left", [all_tarsals, appendicular]).name == "tarsals_left"
    assert finest_comparable("calcaneus_left", [two_tarsals, appendicular]) is None  # two bones cannot stand for all tarsals
    assert finest_comparable("calcaneus_left", [two_tarsals, all_tarsals]).name == "calcaneus_left"
    assert finest_comparable("carpals_left", [appendicular, all_carpals]).name == "carpals_left"
    assert finest_comparable("tibia_left", [appendicular, moose_p]).name == "tibia_left"
    assert finest_comparable("femur_left", [total, moose_v]) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("native_value,native_name,schema_name\n1,a,femur_left\n", "lacks column"),
        ("native_value,native_name,schema_name,split_by_side\n1,a,femur_left,\n1,b,femur_right,\n", "listed more than once"),
        ("native_value,native_name,schema_name,split_by_side\n1,a,tibia,y\n", "must be 'yes' or empty"),
        ("native_value,native_name,schema_name,split_by_side\none,a,tibia,\n", "not an integer"),
    ],
)
def test_malformed_mapping_tables_are_rejected(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(LabelSetError, match=message):
        load_label_set(path)
