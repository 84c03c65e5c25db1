"""The model comparison of a sharded QC table, added up from each shard's aggregates.

``model_comparison.parquet`` and the report's comparison section pool every series of the QC
table. Recomputing them from the whole table would read all of it on every run; instead each
shard of ``qc_table`` has its ``qc.comparison.Aggregates`` in ``model_comparison_parts/part-XX.parquet``,
rewritten when its shard is, and the comparison is their sum (exactly the numbers the whole table gives).
A shard's aggregates are computed from the shard as stored after the write, under the aggregates'
own update, so a concurrent run that wrote the shard meanwhile is counted too.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from qc.comparison import COUNTS, KEYS, NEEDED, Aggregates, aggregate, combine, comparison_from
from results.blobs import join
from results.qc_shards import shard_uri, stored_shards
from results.qc_tables import TABLE
from results.table_io import read_table, update_table

PARTS = "model_comparison_parts"
_READ = (*NEEDED, "member_present")  # what aggregate reads (member_present: where the table has it)


def part_uri(qc_dir: str, shard: str) -> str:
    return join(qc_dir, PARTS, f"{shard}.parquet")


def update_parts(qc_dir: str, shards: Iterable[str]) -> None:
    """Recompute the aggregates of ``shards`` of the QC table from the shards as stored now."""
    for shard in shards:
        update_table(part_uri(qc_dir, shard), lambda _, shard=shard: _frame(aggregate(
            read_table(shard_uri(qc_dir, TABLE, shard), _READ))))


def combined_parts(qc_dir: str) -> Aggregates:
    """The aggregates of the whole QC table: the sum of every shard's (a shard without them gets them now)."""
    found = []
    for shard in stored_shards(qc_dir, TABLE):
        frame = read_table(part_uri(qc_dir, shard))
        if frame is None:  # its run stopped between the shard and its aggregates
            update_parts(qc_dir, [shard])
            frame = read_table(part_uri(qc_dir, shard))
        found.append(_aggregates(frame))
    return combine(found)


def write_comparison(qc_dir: str, name: str) -> Aggregates:
    """Write ``qc.comparison.model_comparison`` of the whole QC table to ``name`` in ``qc_dir``; return the sum.

    The sum is taken inside the comparison file's update, so the last of concurrent runs writes what
    every one of them merged.
    """
    found: list[Aggregates] = []

    def latest(_: pd.DataFrame | None) -> pd.DataFrame:
        found[:] = [combined_parts(qc_dir)]
        return comparison_from(found[0])

    update_table(join(qc_dir, name), latest)
    return found[0]


def _frame(parts: Aggregates) -> pd.DataFrame:
    """Both frames of ``parts`` as one table, told apart by ``part``."""
    return pd.concat([parts.counts.assign(part="counts"), parts.agreement.assign(part="agreement")], ignore_index=True)


def _aggregates(frame: pd.DataFrame) -> Aggregates:
    counts, agreement = frame[frame["part"] == "counts"], frame[frame["part"] == "agreement"]
    return Aggregates(counts[[*KEYS, *COUNTS]].reset_index(drop=True),
                      agreement[[*KEYS, "agreement", "count"]].reset_index(drop=True))
