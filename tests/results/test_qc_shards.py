"""QC tables in shards by series: stable shards, reruns that touch only their shards, concurrent runs, old folders."""

from __future__ import annotations

import multiprocessing

import pandas as pd
import pytest

from bench.report_scale import synthetic_table
from qc.comparison import model_comparison
from results.comparison_parts import update_parts, write_comparison
from results.qc_shards import legacy_uri, merge_qc_table, read_qc_table, shard_of, shard_uri, stored_shards
from results.qc_tables import SERIES_TABLE, TABLE

WRITERS, SERIES_EACH = 4, 10


def _table(series: int, seed: int = 0) -> pd.DataFrame:
    """A QC table of ``series`` series with distinct UIDs per seed (and so per writer)."""
    table = synthetic_table(series, seed=seed)
    uids = table["series_uid"] + f".{seed}"
    return table.assign(series_uid=uids, study_uid=uids)


def _same_shard_pairs(table: pd.DataFrame) -> int:
    shards = table.drop_duplicates("series_uid")["series_uid"].map(shard_of)
    return int(shards.duplicated().sum())


def test_a_series_shard_is_stable_and_holds_its_rows(tmp_path):
    assert shard_of("1.2.3") == "part-c4"  # the first byte of SHA-256("1.2.3"): the same on every run and machine
    assert shard_of("1.2.826.0.1.3680043.8.498.1") == "part-6d"
    table = _table(20)
    written = merge_qc_table(str(tmp_path), TABLE, table)
    assert written == stored_shards(str(tmp_path), TABLE) == sorted(set(table["series_uid"].map(shard_of)))
    for shard in written:
        rows = pd.read_parquet(shard_uri(str(tmp_path), TABLE, shard))
        assert set(rows["series_uid"].map(shard_of)) == {shard}
    pd.testing.assert_frame_equal(read_qc_table(str(tmp_path), TABLE), table.sort_values("series_uid", kind="stable")
                                  .reset_index(drop=True))


def test_reader_takes_only_the_columns_and_series_asked_for(tmp_path):
    table = _table(10)
    merge_qc_table(str(tmp_path), TABLE, table)
    some = sorted(table["series_uid"].unique())[3:5]
    found = read_qc_table(str(tmp_path), TABLE, ["bone", "score"], series=some)
    expected = table[table["series_uid"].isin(some)].sort_values("series_uid", kind="stable")[["bone", "score"]]
    pd.testing.assert_frame_equal(found, expected.reset_index(drop=True))
    assert read_qc_table(str(tmp_path / "nothing"), TABLE) is None


def test_a_rerun_replaces_only_its_series_rows_and_rewrites_only_their_shards(tmp_path):
    first = _table(30)
    merge_qc_table(str(tmp_path), TABLE, first)
    before = {s: (tmp_path / TABLE / f"{s}.parquet").read_bytes() for s in stored_shards(str(tmp_path), TABLE)}
    redone_uid = first["series_uid"].iloc[0]
    redone = first[first["series_uid"] == redone_uid].iloc[:5].assign(score=0.123)  # fewer structures this time
    assert merge_qc_table(str(tmp_path), TABLE, redone) == [shard_of(redone_uid)]
    after = {s: (tmp_path / TABLE / f"{s}.parquet").read_bytes() for s in before}
    assert {s for s in before if before[s] != after[s]} == {shard_of(redone_uid)}
    table = read_qc_table(str(tmp_path), TABLE)
    assert (table[table["series_uid"] == redone_uid]["score"] == 0.123).all()
    assert (table["series_uid"] == redone_uid).sum() == 5
    others = first[first["series_uid"] != redone_uid].sort_values("series_uid", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(table[table["series_uid"] != redone_uid].reset_index(drop=True), others)


def _write_run(qc_dir: str, writer: int) -> None:
    """What the QC job does with one run's rows: merge, then the shards' aggregates and the comparison."""
    table = _table(SERIES_EACH, seed=writer)
    update_parts(qc_dir, merge_qc_table(qc_dir, TABLE, table))
    merge_qc_table(qc_dir, SERIES_TABLE, table.drop_duplicates("series_uid")[["series_uid", "study_uid"]])
    write_comparison(qc_dir, "model_comparison.parquet")


def test_concurrent_runs_keep_every_row_and_the_comparison_counts_them_all(tmp_path):
    every = pd.concat([_table(SERIES_EACH, seed=w) for w in range(WRITERS)], ignore_index=True)
    assert _same_shard_pairs(every) > 0  # some runs' series share a shard, so they write the same files
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as separate `bonehub qc` runs are
    processes = [context.Process(target=_write_run, args=(str(tmp_path), w)) for w in range(WRITERS)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
        assert p.exitcode == 0
    table = read_qc_table(str(tmp_path), TABLE)
    pd.testing.assert_frame_equal(table, every.sort_values("series_uid", kind="stable").reset_index(drop=True))
    assert sorted(read_qc_table(str(tmp_path), SERIES_TABLE)["series_uid"]) == sorted(every["series_uid"].unique())
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "model_comparison.parquet"), model_comparison(every))


@pytest.mark.parametrize("name", [TABLE, SERIES_TABLE])
def test_an_old_single_file_table_reads_and_moves_into_shards_on_the_next_write(tmp_path, name):
    old = _table(12).sort_values("series_uid", kind="stable").reset_index(drop=True)
    old.to_parquet(legacy_uri(str(tmp_path), name), index=False)
    pd.testing.assert_frame_equal(read_qc_table(str(tmp_path), name), old)
    redone_uid = old["series_uid"].iloc[-1]
    redone = old[old["series_uid"] == redone_uid].assign(score=0.5)
    merge_qc_table(str(tmp_path), name, redone)
    assert not (tmp_path / f"{name}.parquet").exists()
    expected = pd.concat([old[old["series_uid"] != redone_uid], redone], ignore_index=True)
    pd.testing.assert_frame_equal(read_qc_table(str(tmp_path), name),
                                  expected.sort_values("series_uid", kind="stable").reset_index(drop=True))


def test_the_reader_prefers_shard_rows_to_an_old_files_rows(tmp_path):
    """While a write moves an old table into the shards, a series in both reads once, from its shard."""
    old = _table(4)
    old.to_parquet(legacy_uri(str(tmp_path), TABLE), index=False)
    uid = old["series_uid"].iloc[0]
    newer = old[old["series_uid"] == uid].assign(score=0.25)
    newer.to_parquet(tmp_path / "shard.parquet", index=False)
    (tmp_path / TABLE).mkdir()
    (tmp_path / "shard.parquet").rename(shard_uri(str(tmp_path), TABLE, shard_of(uid)))
    table = read_qc_table(str(tmp_path), TABLE)
    assert len(table) == len(old) and (table[table["series_uid"] == uid]["score"] == 0.25).all()


def test_a_shard_left_without_its_aggregates_gets_them_for_the_comparison(tmp_path):
    """A run that stopped between writing a shard and its aggregates leaves the comparison right for the next one."""
    table = _table(8)
    shards = merge_qc_table(str(tmp_path), TABLE, table)
    update_parts(str(tmp_path), shards[1:])
    write_comparison(str(tmp_path), "model_comparison.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "model_comparison.parquet"), model_comparison(table))
