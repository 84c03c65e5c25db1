"""The model comparison over a multi-series QC run equals a plain computation from the per-bone table.

The run: the bundled real CT with TotalSegmentator full, fast and full after a rotation round trip
(``bench.qc_detection.sample_series``), assessed as four series, each with other known errors
(``bench.error_injection``) in other members, so the sources' numbers differ between series.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from bench import error_injection as inject
from bench.qc_detection import SAMPLE_FAST, SAMPLE_FULL, sample_series
from labels.schema import default_schema
from qc.assess import assess_series
from qc.comparison import ALL, COLUMNS, model_comparison
from qc.report import write_report
from qc.results import TABLE_COLUMNS
from qc.score import RULES
from tests.qc.test_report import _Page

FULL, FAST, ROTATED = 0, 1, 2  # member indices of sample_series


@pytest.fixture(scope="module")
def run_table(sample_ct, sample_schema_maps) -> pd.DataFrame:
    """Four series of one QC run: undamaged; fast L1 eroded; rotated full without T12; fast L2 moved and left rib 9
    deleted, with a second piece of L1 in full."""
    series = sample_series(sample_ct.volume, sample_schema_maps[SAMPLE_FULL], sample_schema_maps[SAMPLE_FAST])
    maps = series.label_maps
    variants = [
        {},
        {FAST: inject.erode(maps[FAST], "vertebra_L1", 2).label_map},
        {ROTATED: inject.delete(maps[ROTATED], "vertebra_T12").label_map},
        {FAST: inject.delete(inject.shift(maps[FAST], "vertebra_L2", 9.0, series.affine).label_map, "rib_left_9").label_map,
         FULL: _with_extra_piece(maps[FULL], "vertebra_L1")},
    ]
    rows = []
    for index, changed in enumerate(variants):
        label_maps = [changed.get(i, m) for i, m in enumerate(maps)]
        qc = assess_series(f"1.2.826.0.1.3680043.8.498.77{index}", "1.2.826.0.1.3680043.8.498.7", series.members,
                           label_maps, series.affine)
        rows += [r.as_row() for r in qc.results]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _with_extra_piece(label_map: np.ndarray, bone: str) -> np.ndarray:
    """A second 2 x 8 x 8 piece of ``bone`` in background away from the volume's faces: an extra component."""
    out = label_map.copy()
    piece = (slice(10, 12), slice(20, 28), slice(20, 28))
    assert not out[piece].any()
    out[piece] = default_schema()[bone].id
    return out


def _percentile_10(values: list[float]) -> float:
    """Linear interpolation between the two closest ranks."""
    ordered = sorted(values)
    position = 0.1 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _median(values: list[float]) -> float:
    ordered, middle = sorted(values), len(values) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _expected(table: pd.DataFrame) -> dict[tuple[str, str], dict[str, float]]:
    """(source, structure) -> column values, by a loop over the table's rows."""
    found: dict[tuple[str, str], dict] = defaultdict(lambda: {"series": set(), "results": 0, "seen": [], "alone": [],
                                                              "agreement": [], "outlier": 0, "fails": defaultdict(int)})
    for row in table.to_dict("records"):
        members = row["members"].split(";")
        if row["status"] == "absent" or len(members) < 2:
            continue
        agreements = [float(v) for v in row["member_agreement"].split(";")]
        text = row.get("member_present") or ""
        present = [v == "1" for v in text.split(";")] if len(text.split(";")) == len(members) else None
        if present is None and row["n_present"] == len(members):
            present = [True] * len(members)
        member_flags = [f.split("@", 1) for f in (row["flags"] or "").split(";") if "@" in f]
        sources = [m.split(" [")[0] for m in members]
        for structure in (row["bone"], ALL):
            for i, source in enumerate(sources):
                entry = found[(source, structure)]
                if not math.isnan(agreements[i]):
                    entry["agreement"].append(agreements[i])
                if present is not None:
                    others = sum(present) - present[i]
                    if others:
                        entry["seen"].append(float(present[i]))
                    if present[i]:
                        entry["alone"].append(float(others == 0))
            for source in set(sources):
                entry = found[(source, structure)]
                entry["series"].add(row["series_uid"])
                entry["results"] += 1
                entry["outlier"] += row["outlier_source"] == source
                for rule in {rule for rule, member in member_flags if member.split(" [")[0] == source}:
                    entry["fails"][rule] += 1
    expected = {}
    for key, e in found.items():
        n = e["results"]
        expected[key] = {
            "series": len(e["series"]), "results": n,
            "present_where_others_see": np.mean(e["seen"]) if e["seen"] else math.nan,
            "present_alone": np.mean(e["alone"]) if e["alone"] else math.nan,
            "agreement_median": _median(e["agreement"]) if e["agreement"] else math.nan,
            "agreement_p10": _percentile_10(e["agreement"]) if e["agreement"] else math.nan,
            "outlier_named": e["outlier"] / n,
            **{f"fails_{rule}": e["fails"][rule] / n for rule in RULES},
        }
    return expected


def _assert_matches(comparison: pd.DataFrame, expected: dict) -> None:
    assert list(comparison.columns) == COLUMNS
    assert not comparison.duplicated(["source", "structure"]).any()
    assert set(zip(comparison["source"], comparison["structure"])) == set(expected)
    for row in comparison.to_dict("records"):
        want = expected[(row["source"], row["structure"])]
        for column, value in want.items():
            assert row[column] == pytest.approx(value, abs=1e-12, nan_ok=True), (row["source"], row["structure"], column)


def test_the_run_differs_between_series_and_sources(run_table):
    """The fixture is what the comparison is checked on: several series, augmentations pooled, errors named."""
    assert run_table["series_uid"].nunique() == 4
    assert {"TotalSegmentator full", "TotalSegmentator fast"} <= set(run_table["outlier_source"])
    assert run_table["flags"].str.contains("extra_components@TotalSegmentator full", regex=False).any()
    assert (run_table["status"] == "absent").any()  # left out of the comparison
    assert run_table["member_present"].str.contains("0").any()


def test_comparison_equals_a_plain_computation_from_the_table(run_table):
    comparison = model_comparison(run_table)
    _assert_matches(comparison, _expected(run_table))
    overall = comparison[comparison["structure"] == ALL].set_index("source")
    assert list(overall.index) == ["TotalSegmentator fast", "TotalSegmentator full"]  # rotated full pooled with full
    assert (overall["series"] == 4).all()
    fast, full = overall.loc["TotalSegmentator fast"], overall.loc["TotalSegmentator full"]
    assert fast["outlier_named"] > full["outlier_named"] > 0
    assert full["fails_extra_components"] > 0 and fast["fails_extra_components"] == 0
    assert full["present_where_others_see"] < 1 and fast["present_where_others_see"] < 1  # T12 missed; L2, rib 9
    first = comparison.groupby("source").head(1)
    assert (first["structure"] == ALL).all()  # each source's overall row first, then its structures in schema order


def test_older_tables_without_member_presence(run_table):
    """Presence is then known only where every member has the structure: the misses are not seen."""
    older = run_table.drop(columns="member_present")
    comparison = model_comparison(older)
    _assert_matches(comparison, _expected(older))
    assert (comparison["present_where_others_see"].dropna() == 1).all()


def test_definitions_on_a_small_table():
    """Augmentations pool into their source; consensus flags, absent rows and one-member rows do not count."""
    a, a_rot, b = "A 1", "A 1 [rotate(0,0,5)]", "B 2"

    def row(series, bone, status, members, agreement, present, flags="", outlier=""):
        return {"series_uid": series, "bone": bone, "status": status, "members": ";".join(members),
                "member_agreement": ";".join(agreement), "member_present": ";".join(present), "flags": flags,
                "outlier_source": outlier, "n_sources": len(members), "n_present": present.count("1")}

    table = pd.DataFrame([
        row("s1", "vertebra_L1", "review", [a, a_rot, b], ["0.9", "0.8", "0"], ["1", "1", "0"],
            f"too_small@{a_rot};fov_cutoff", outlier=b),
        row("s2", "vertebra_L1", "accept", [a, a_rot, b], ["0.95", "0.9", "0.85"], ["1", "1", "1"], "fov_cutoff"),
        row("s3", "vertebra_L1", "absent", [a, a_rot, b], ["1", "1", "1"], ["0", "0", "0"]),
        row("s3", "vertebra_L2", "insufficient_sources", [a], ["1"], ["1"], f"too_small@{a}"),
    ])
    comparison = model_comparison(table).set_index(["source", "structure"])
    assert set(comparison.index) == {("A 1", ALL), ("A 1", "vertebra_L1"), ("B 2", ALL), ("B 2", "vertebra_L1")}
    l1_a, l1_b = comparison.loc[("A 1", "vertebra_L1")], comparison.loc[("B 2", "vertebra_L1")]
    assert (l1_a["series"], l1_a["results"]) == (2, 2)
    assert l1_a["present_where_others_see"] == 1.0 and l1_b["present_where_others_see"] == 0.5
    assert l1_a["agreement_median"] == pytest.approx(0.9) and l1_b["agreement_median"] == pytest.approx(0.425)
    assert l1_a["agreement_p10"] == pytest.approx(0.8 + 0.3 * 0.1)  # 0.8, 0.9, 0.9, 0.95: rank 0.3
    assert l1_a["fails_too_small"] == 0.5 and l1_a["fails_fov_cutoff"] == 0 and l1_b["fails_too_small"] == 0
    assert l1_b["outlier_named"] == 0.5 and l1_a["outlier_named"] == 0
    assert l1_a["present_alone"] == 0 and l1_b["present_alone"] == 0


def test_report_has_the_model_comparison_section(run_table, tmp_path):
    path = write_report(run_table, [], tmp_path / "qc.html")
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    rows = page.tables["Model comparison"]
    assert rows[0][:3] == ["source", "series", "results"]
    overall = model_comparison(run_table).query("structure == @ALL").set_index("source")
    assert [r[0] for r in rows[1:]] == list(overall.index)
    for cells in rows[1:]:
        source = overall.loc[cells[0]]
        assert cells[1:3] == [str(source["series"]), str(source["results"])]
        assert cells[5] == f"{source['agreement_median']:.3f}"
    assert len(page.images) == 2  # the score heatmap and the comparison figure
    assert re.search(r"model_comparison\.parquet", "".join(page.text))
