"""QC across sources of different label granularity: what a source can label decides where it is compared.

The whole-skeleton phantom written in three numberings with the same voxels: TotalSegmentator
v2 (S1 apart from the rest of the sacrum), v1 and MOOSE ``clin_ct_vertebrae`` (the sacrum whole;
MOOSE labels no ribs). With those three sources every vertebra must be compared by all three.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench import error_injection as inject
from bench import phantom_numberings as numberings
from bench.qc_detection import PHANTOM_NOISE, granularity_series
from bench.skeleton_phantom import make_phantom
from labels.label_sets import finest_comparable, load_label_set, packaged_label_sets
from labels.schema import default_schema
from qc.assess import assess_series
from qc.levels import is_vertebra
from qc.results import ACCEPT, INSUFFICIENT, REVIEW, Member
from qc.units import comparison_units, inferred_vocabulary

SCHEMA = default_schema()
SHAPE = (300, 154, 154)  # the benchmark's phantom grid: 5 x 3 x 3 mm
NAMES = (numberings.V2, numberings.V1, numberings.MOOSE_VERTEBRAE)


@pytest.fixture(scope="module")
def phantom():
    volume, native = make_phantom(SHAPE)
    return volume.affine, {name: numberings.schema_map(native, name) for name in NAMES}


def _assess(affine, maps: dict[str, np.ndarray], record_vocabulary: bool) -> dict:
    members = [Member(name, "1", "none", f"1.2.3.{i}", f"1.2.3.{i}.1",
                      numberings.vocabulary(name) if record_vocabulary else None) for i, name in enumerate(maps, start=1)]
    qc = assess_series("1.2.3", "1.2", members, list(maps.values()), affine)
    return {r.bone: r for r in qc.results}


def test_the_numberings_hold_the_same_voxels(phantom):
    _, maps = phantom
    v2, v1, moose = (maps[name] for name in NAMES)
    sacrum = [SCHEMA[n].id for n in ("vertebra_S1", "sacrum_below_s1")]
    assert np.array_equal(np.isin(v2, sacrum), v1 == SCHEMA["sacrum"].id)
    assert np.array_equal(np.isin(v2, sacrum), moose == SCHEMA["sacrum"].id)
    vertebrae = [s.id for s in SCHEMA.bones() if is_vertebra(s.name) and s.name != "vertebra_S1"]
    assert np.array_equal(np.where(np.isin(v2, vertebrae), v2, 0), np.where(np.isin(moose, vertebrae), moose, 0))
    assert not np.isin(moose, [SCHEMA[f"rib_left_{k}"].id for k in range(1, 13)]).any()  # MOOSE vertebrae: no ribs


@pytest.mark.parametrize("record_vocabulary", [True, False], ids=["recorded", "inferred"])
def test_every_vertebra_is_compared_by_all_three_sources(phantom, record_vocabulary):
    affine, maps = phantom
    results = _assess(affine, maps, record_vocabulary)
    vertebrae = [r for b, r in results.items() if is_vertebra(b) and r.n_present]
    assert len(vertebrae) == 25  # C1-L5 and S1
    for r in vertebrae:
        if r.bone == "vertebra_S1":  # only v2 names S1; the others meet it at the sacrum
            assert r.status == INSUFFICIENT
            continue
        assert (r.n_sources, r.n_present, r.status) == (3, 3, ACCEPT), r
    assert (results["sacrum"].n_sources, results["sacrum"].status) == (3, ACCEPT)
    assert results["rib_left_7"].n_sources == 2  # MOOSE's vertebra model is not asked about ribs


@pytest.mark.parametrize("record_vocabulary", [True, False], ids=["recorded", "inferred"])
def test_v2_against_a_whole_sacrum_source_alone(phantom, record_vocabulary):
    """The flagship failure: with one S1-labelling source and one whole-sacrum source, no vertebra was ever checked."""
    affine, maps = phantom
    results = _assess(affine, {name: maps[name] for name in NAMES[:2]}, record_vocabulary)
    vertebrae = [r for b, r in results.items() if is_vertebra(b) and b != "vertebra_S1" and r.n_present]
    assert len(vertebrae) == 24
    assert all((r.n_sources, r.status) == (2, ACCEPT) for r in vertebrae), [r for r in vertebrae if r.n_sources != 2]


def test_a_structure_the_source_can_label_but_did_not_is_a_presence_disagreement(phantom):
    """The deletion blind spot: MOOSE drops L1; with its vocabulary recorded it is compared there with an empty mask."""
    affine, maps = phantom
    damaged = dict(maps)
    damaged[numberings.MOOSE_VERTEBRAE] = inject.delete(maps[numberings.MOOSE_VERTEBRAE], "vertebra_L1").label_map
    r = _assess(affine, damaged, record_vocabulary=True)["vertebra_L1"]
    assert (r.n_sources, r.n_present, r.status) == (3, 2, REVIEW)
    assert r.member_present == (True, True, False) and "presence" in r.flags


@pytest.mark.parametrize("first, second", list(itertools.combinations_with_replacement(packaged_label_sets(), 2)))
def test_vocabulary_rule_for_every_packaged_label_set_pair(first, second):
    """Two sources that label everything they can meet at the node ``finest_comparable`` names, for every structure."""
    sets = [load_label_set(first), load_label_set(second)]
    vocabularies = [s.emitted() for s in sets]
    units = {u.structure: u for u in comparison_units(vocabularies, SCHEMA, vocabularies)}
    for structure in sorted(vocabularies[0] | vocabularies[1]):
        node = finest_comparable(structure, sets)
        if node is not None:
            assert units[node.name].members == (0, 1), (structure, node.name, units[node.name])
    for unit in units.values():  # nobody takes part where it labels something coarser above
        for index in unit.members:
            assert not vocabularies[index] & {a.name for a in SCHEMA.ancestors(unit.structure)}, (unit, index)


def test_inference_is_family_local():
    assert inferred_vocabulary(["sacrum"], SCHEMA) == {"sacrum"}  # says nothing about the vertebra groups beside it
    lumbar = inferred_vocabulary(["vertebra_L2"], SCHEMA)
    assert {"vertebra_L1", "vertebra_L6"} <= lumbar and "vertebra_T12" not in lumbar
    assert {"rib_left_1", "rib_right_12"} <= inferred_vocabulary(["rib_left_3"], SCHEMA)  # a sided bone: its mirror too
    assert inferred_vocabulary(["femur_left"], SCHEMA) == {"femur_left", "femur_right"}  # not every bone of the limb


@pytest.fixture(scope="module")
def granularity():
    return granularity_series(SHAPE)


ONE_SOURCE_ERRORS = {
    "swap": lambda m: inject.swap(m, "vertebra_L1", "vertebra_L2"),
    "one level off": lambda m: inject.shift_levels(m, ["vertebra_T10", "vertebra_T11", "vertebra_T12"]),
    "erode": lambda m: inject.erode(m, "vertebra_L3", 2),
    "delete": lambda m: inject.delete(m, "vertebra_C5"),
}


@pytest.mark.parametrize("error", list(ONE_SOURCE_ERRORS))
def test_errors_in_one_source_are_scored_reviewed_and_named(granularity, error):
    """MOOSE's vertebrae damaged, against TotalSegmentator v2 and v1: each damaged bone is scored, reviewed, MOOSE named."""
    assert PHANTOM_NOISE > 0  # the other members are not copies of each other
    injury = ONE_SOURCE_ERRORS[error](granularity.label_maps[granularity.damaged_member])
    results = granularity.assess(injury.label_map)
    for bone in sorted(injury.damaged):
        r = results[bone]
        assert r.n_sources == 3 and r.status == REVIEW, (bone, r)
        assert r.outlier_source == granularity.damaged_source, (bone, r.outlier_source, r.member_agreement)
