"""Run tables on GCS go through the generation-matched read-change-write (against the GCS emulator)."""

from __future__ import annotations

import pandas as pd

from results.blobs import read_versioned, write_if_unchanged
from results.table_io import append_table, merge_table, read_table


def test_tables_merge_and_append_on_gcs(gcs_bucket):
    uri = f"gs://{gcs_bucket}/run/qc_table.parquet"
    merge_table(uri, pd.DataFrame({"key": ["a", "b"], "value": [1, 2]}), replace=["key"], order=["key"])
    merge_table(uri, pd.DataFrame({"key": ["b", "c"], "value": [20, 30]}), replace=["key"], order=["key"])
    assert read_table(uri).to_dict("list") == {"key": ["a", "b", "c"], "value": [1, 20, 30]}

    log = f"gs://{gcs_bucket}/run/corrections.parquet"
    append_table(log, pd.DataFrame({"key": ["x"]}))
    append_table(log, pd.DataFrame({"key": ["y"]}))
    assert read_table(log)["key"].tolist() == ["x", "y"]


def test_versioned_read_of_a_missing_object_is_generation_zero(gcs_bucket):
    uri = f"gs://{gcs_bucket}/run/new.bin"
    assert read_versioned(uri) == (None, 0)
    assert write_if_unchanged(uri, b"first", 0)
    data, generation = read_versioned(uri)
    assert data == b"first"
