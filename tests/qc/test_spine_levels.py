"""Spine level rules: errors every source makes alike, and anatomical variants that must not flood review.

On the real sample (ribs 7-12, T11-L2) and on the whole-skeleton phantom, three members each.
A run of vertebrae labelled one level off in every member must send every shifted vertebra and
the ribs on them to review with a level flag and the likely shift; the undamaged series none of
them; left and right ribs swapped in every member every rib. Variants (eleven or thirteen rib
pairs, L6, a sacralised L5, a partial field of view) are recorded, not sent to review.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import error_injection as inject
from bench.qc_detection import SAMPLE_FAST, SAMPLE_FULL, Series, phantom_series, sample_series
from labels.schema import default_schema
from qc.levels import is_rib, is_vertebra
from qc.results import REVIEW

SCHEMA = default_schema()
SHAPE = (300, 154, 154)
LEVEL_RULES = {"level_shift", "level_gap", "level_order", "rib_vertebra_level"}


@pytest.fixture(scope="module")
def sample(sample_ct, sample_schema_maps) -> Series:
    return sample_series(sample_ct.volume, sample_schema_maps[SAMPLE_FULL], sample_schema_maps[SAMPLE_FAST])


@pytest.fixture(scope="module")
def phantom() -> Series:
    return phantom_series(SHAPE)


def _alike(series: Series, damage) -> tuple[frozenset[str], dict]:
    injuries = [damage(m) for m in series.label_maps]
    return injuries[0].damaged, series.assess(maps=[i.label_map for i in injuries])


def _spine(results: dict) -> dict:
    return {b: r for b, r in results.items() if is_vertebra(b) or is_rib(b)}


def _level_flagged(results: dict) -> set[str]:
    return {b for b, r in _spine(results).items() if r.status == REVIEW and LEVEL_RULES & set(r.flags)}


@pytest.mark.parametrize("series_name", ["sample", "phantom"])
def test_undamaged_spines_raise_no_level_flag(request, series_name):
    results = request.getfixturevalue(series_name).assess()
    assert not _level_flagged(results)
    assert not any(f.split("@")[0] in LEVEL_RULES for r in _spine(results).values() for f in r.flags)


@pytest.mark.parametrize("series_name, run", [
    ("sample", ["vertebra_T11", "vertebra_T12", "vertebra_L1"]),
    ("sample", ["vertebra_T12", "vertebra_L1", "vertebra_L2"]),
    ("phantom", ["vertebra_T11", "vertebra_T12", "vertebra_L1"]),
    ("phantom", ["vertebra_L1", "vertebra_L2", "vertebra_L3"]),
    ("phantom", ["vertebra_T4", "vertebra_T5", "vertebra_T6"]),
])
def test_a_run_one_level_off_in_every_source_goes_to_review(request, series_name, run):
    series = request.getfixturevalue(series_name)
    damaged, results = _alike(series, lambda m: inject.shift_levels(m, run))
    for bone in sorted(damaged):
        r = results[bone]
        assert r.status == REVIEW and "level_shift" in r.flags, (bone, r.status, r.flags)
        assert r.level_shift == 1, (bone, r.level_shift)  # labelled one level too low
    on_shifted = {b for b, r in results.items() if is_rib(b) and "rib_vertebra_level" in r.flags}
    assert all(results[rib].status == REVIEW and "level_shift" in results[rib].flags for rib in on_shifted)
    untouched = {b for b in _spine(results) if b not in damaged and not np.isnan(results[b].score)}
    collateral = _level_flagged(results) - damaged - on_shifted
    assert len(collateral) <= 2, collateral  # at most the vertebrae between the run and the next anchor
    assert untouched


@pytest.mark.parametrize("series_name", ["sample", "phantom"])
def test_left_and_right_ribs_swapped_in_every_source_sends_every_rib(request, series_name):
    series = request.getfixturevalue(series_name)
    ribs = [b for b, r in series.assess().items() if is_rib(b) and r.n_present == r.n_sources]
    damaged, results = _alike(series, lambda m: inject.swap_sides(m, ribs))
    assert damaged == set(ribs)
    assert all(results[rib].status == REVIEW and "wrong_side" in results[rib].flags for rib in ribs)


def _relabel(series: Series, change) -> dict:
    maps = []
    for label_map in series.label_maps:
        out = label_map.copy()
        change(out, label_map)
        maps.append(out)
    return series.assess(maps=maps)


def _id(name: str) -> int:
    return SCHEMA[name].id


def test_eleven_rib_pairs_is_a_variant(phantom):
    def change(out, original):
        out[np.isin(original, [_id("rib_left_12"), _id("rib_right_12")])] = 0
    results = _relabel(phantom, change)
    assert not _level_flagged(results)
    assert "spine_variant" in results["vertebra_T12"].flags


def test_thirteen_rib_pairs_is_a_variant(phantom):
    slices = int(round(28.5 / np.linalg.norm(phantom.affine[:3, 0])))  # one vertebra down: T12 to L1 centres

    def change(out, original):
        for side in ("left", "right"):
            moved = inject.translate((original == _id(f"rib_{side}_12")).astype(np.uint16), (slices, 0, 0)).astype(bool)
            out[moved & (original == 0)] = _id(f"rib_{side}_13")
    results = _relabel(phantom, change)
    assert not _level_flagged(results)
    assert "spine_variant" in results["rib_left_13"].flags


def test_six_lumbar_vertebrae_is_a_variant(phantom):
    def change(out, original):
        out[original == _id("vertebra_S1")] = _id("vertebra_L6")  # a lumbarised S1
    results = _relabel(phantom, change)
    assert not _level_flagged(results)
    assert "spine_variant" in results["vertebra_L6"].flags


def test_a_sacralised_l5_is_a_variant(phantom):
    def change(out, original):
        out[original == _id("vertebra_L5")] = _id("vertebra_S1")
        out[original == _id("vertebra_S1")] = _id("sacrum_below_s1")
    results = _relabel(phantom, change)
    assert not _level_flagged(results)
    assert "spine_variant" in results["vertebra_L4"].flags


@pytest.mark.parametrize("window", [(60, 140), (120, 200), (150, 300)], ids=["chest", "abdomen", "pelvis"])
def test_a_partial_field_of_view_raises_no_level_flag(phantom, window):
    start, stop = window

    def change(out, original):
        out[:start] = 0
        out[stop:] = 0
    results = _relabel(phantom, change)
    assert not _level_flagged(results)


def test_thirteen_thoracic_vertebrae_is_a_variant(phantom):
    lumbar = [_id(f"vertebra_L{n}") for n in range(1, 6)]

    def change(out, original):  # the first lumbar vertebra becomes T13; the others move up one label
        out[original == lumbar[0]] = _id("vertebra_T13")
        for upper, lower in zip(lumbar, lumbar[1:]):
            out[original == lower] = upper
    results = _relabel(phantom, change)
    assert not _level_flagged(results)
    assert "spine_variant" in results["vertebra_T13"].flags and results["vertebra_T13"].status != REVIEW


def test_t13_out_of_place_breaks_the_order(phantom):
    def change(out, original):  # T13 above T12
        out[original == _id("vertebra_T11")] = _id("vertebra_T13")
    results = _relabel(phantom, change)
    assert "level_order" in results["vertebra_T13"].flags


def _coccyx(phantom, at: str) -> dict:
    sacrum = np.argwhere(phantom.label_maps[0] == _id("sacrum_below_s1"))
    axis = int(np.argmax(np.abs(phantom.affine[2, :3])))  # the array axis along patient z
    towards_feet = np.sign(phantom.affine[2, axis])  # +1: higher index is higher z

    def change(out, original):
        z = sacrum[:, axis]
        tip = z <= np.percentile(z, 15) if towards_feet > 0 else z >= np.percentile(z, 85)
        if at == "below":
            out[tuple(sacrum[tip].T)] = _id("coccyx")
        else:
            out[original == _id("vertebra_L5")] = _id("coccyx")
    return _relabel(phantom, change)


def test_a_coccyx_below_the_sacrum_is_in_order(phantom):
    results = _coccyx(phantom, "below")
    assert "level_order" not in results["coccyx"].flags
    assert not _level_flagged(results)


def test_a_coccyx_above_the_sacrum_breaks_the_order(phantom):
    assert "level_order" in _coccyx(phantom, "above")["coccyx"].flags
