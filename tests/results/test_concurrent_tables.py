"""Several processes writing one table at once lose no row (manifest, QC tables, review log)."""

from __future__ import annotations

import multiprocessing

import pandas as pd
import pytest

from results.table_io import append_table, merge_table, read_table

WRITERS, ROWS_EACH = 4, 20


def _merge_rows(uri: str, writer: int) -> None:
    for i in range(ROWS_EACH):
        merge_table(uri, pd.DataFrame({"key": [f"{writer}-{i:02d}"], "value": [i]}), replace=["key"], order=["key"])


def _append_rows(uri: str, writer: int) -> None:
    for i in range(ROWS_EACH):
        append_table(uri, pd.DataFrame({"key": [f"{writer}-{i:02d}"]}))


def _run_together(target, uri: str) -> None:
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as separate `bonehub` runs are
    processes = [context.Process(target=target, args=(uri, w)) for w in range(WRITERS)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
        assert p.exitcode == 0


@pytest.mark.parametrize("target", [_merge_rows, _append_rows], ids=["merge", "append"])
def test_four_writers_keep_every_row(tmp_path, target):
    uri = str(tmp_path / "table.parquet")
    _run_together(target, uri)
    table = read_table(uri)
    assert sorted(table["key"]) == sorted(f"{w}-{i:02d}" for w in range(WRITERS) for i in range(ROWS_EACH))


def test_merge_replaces_by_key_and_adjusts_within_the_update(tmp_path):
    uri = str(tmp_path / "table.parquet")
    merge_table(uri, pd.DataFrame({"key": ["a", "b"], "value": [1, 2]}), replace=["key"], order=["key"])
    keep_old_value = lambda new, old: new.assign(value=new["key"].map(old.set_index("key")["value"]).fillna(new["value"]))  # noqa: E731
    merged = merge_table(uri, pd.DataFrame({"key": ["b", "c"], "value": [20, 30]}), replace=["key"], order=["key"],
                         adjust=keep_old_value)
    assert merged.to_dict("list") == {"key": ["a", "b", "c"], "value": [1, 2, 30]}
    assert read_table(uri).to_dict("list") == merged.to_dict("list")
