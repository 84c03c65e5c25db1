"""The model comparison from per-shard aggregates equals the comparison of the whole table, to the last bit."""

from __future__ import annotations

import hashlib

import pandas as pd

from bench.report_scale import synthetic_table
from qc.comparison import REGION, aggregate, combine, comparison_from, member_rows, model_comparison, regions, summary
from tests.qc.test_model_comparison import run_table  # noqa: F401


def _shards(table: pd.DataFrame) -> list[pd.DataFrame]:
    key = table["series_uid"].map(lambda uid: hashlib.sha256(uid.encode()).digest()[0])
    return [rows for _, rows in table.groupby(key)]


def test_shards_aggregates_add_up_to_the_whole_tables_comparison(run_table):
    table = pd.concat([synthetic_table(80, seed=1), run_table], ignore_index=True)
    shards = _shards(table)
    assert len(shards) > 50
    pd.testing.assert_frame_equal(comparison_from(combine([aggregate(s) for s in shards])), model_comparison(table),
                                  check_exact=True)


def test_regions_from_aggregates_equal_a_plain_grouping():
    """Per region: each source's agreement median and 10th percentile as pandas gives them on the member values."""
    table = synthetic_table(100, seed=2)
    by_region = summary(aggregate(table), REGION).set_index(["source", "structure"])
    rows = member_rows(table)
    members = rows.members.assign(region=regions(rows.bones)[rows.members["result"].to_numpy()],
                                  source=rows.names.to_numpy()[rows.members["source"].to_numpy()])
    grouped = members.groupby(["source", "region"])["agreement"]
    assert set(by_region.index) == set(grouped.groups)
    for key, values in grouped:
        assert by_region.loc[key, "agreement_median"] == values.median()
        assert by_region.loc[key, "agreement_p10"] == values.quantile(0.1)


def test_no_compared_result_gives_an_empty_comparison():
    table = synthetic_table(3).assign(status="absent")
    assert comparison_from(combine([aggregate(table)])).empty
    assert comparison_from(combine([])).empty
