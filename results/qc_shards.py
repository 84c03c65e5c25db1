"""Stage 2's per-series tables kept in shards, so a run rewrites only the shards of its series.

A whole collection's QC table has millions of rows (200,000 series x ~60 structures); kept as one
file, every run would read and rewrite all of it. Each of ``qc_table`` and ``qc_series`` is a folder
of ``part-XX.parquet`` files instead: a series' rows live in the shard named by the first byte of the
SHA-256 of its UID (256 shards, the same on every run and machine). A run merges its rows into its
shards only, each through ``results.table_io.update_table`` (a lock locally, a generation-matched
upload on GCS), so concurrent runs keep each other's rows. ``read_qc_table`` is the one reader: it
puts the shards back together (only some columns, or only some series' shards, if asked), sorted by
series as the single file was. A QC folder from before the shards (``qc_table.parquet``) reads too,
and the next write moves its rows into the shards and removes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterator, Sequence

import numpy as np
import pandas as pd

from results.blobs import delete, join, list_uris
from results.table_io import merge_table, read_table, update_table

_SHARD = re.compile(r"part-[0-9a-f]{2}$")


def shard_of(series_uid: str) -> str:
    """The shard of a series: ``part-`` and the first byte of the SHA-256 of its UID in hex."""
    return f"part-{hashlib.sha256(series_uid.encode()).digest()[0]:02x}"


def shard_uri(qc_dir: str, table: str, shard: str) -> str:
    """The file of one shard of ``table`` (``results.qc_tables.TABLE`` or ``SERIES_TABLE``)."""
    return join(qc_dir, table, f"{shard}.parquet")


def legacy_uri(qc_dir: str, table: str) -> str:
    """Where a QC folder from before the shards keeps ``table`` whole."""
    return join(qc_dir, f"{table}.parquet")


def stored_shards(qc_dir: str, table: str) -> list[str]:
    """The shards of ``table`` stored now, sorted."""
    names = (uri.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".parquet") for uri in list_uris(join(qc_dir, table)))
    return sorted(name for name in names if _SHARD.fullmatch(name))


def read_qc_table(qc_dir: str, table: str, columns: Sequence[str] | None = None,
                  series: Collection[str] | None = None) -> pd.DataFrame | None:
    """``table`` whole, sorted by series (rows of a series in their stored order); None when QC never wrote it.

    ``columns``: only these; ``series``: only these series' rows (and only their shards are read).
    """
    read = None if columns is None else list(dict.fromkeys(["series_uid", *columns]))
    legacy = read_table(legacy_uri(qc_dir, table), read)  # before the shards: a write moving it deletes it last
    shards = stored_shards(qc_dir, table)
    if series is not None:
        wanted = {shard_of(uid) for uid in series}
        shards = [shard for shard in shards if shard in wanted]
    frames = [frame for shard in shards if (frame := read_table(shard_uri(qc_dir, table, shard), read)) is not None]
    if legacy is not None:
        sharded = set().union(*(frame["series_uid"] for frame in frames))
        frames.append(legacy[~legacy["series_uid"].isin(sharded)])
    if not frames:
        return None
    found = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    if series is not None:
        found = found[found["series_uid"].isin(set(series))]
    found = found.sort_values("series_uid", kind="stable").reset_index(drop=True)
    return found if columns is None else found[list(columns)]


def merge_qc_table(qc_dir: str, table: str, new: pd.DataFrame) -> list[str]:
    """Replace the rows of ``new``'s series in their shards; return the shards written (older rows moved in too)."""
    moved = _move_legacy(qc_dir, table)
    written = []
    for shard, rows in _by_shard(new):
        merge_table(shard_uri(qc_dir, table, shard), rows, replace=["series_uid"], order=["series_uid"])
        written.append(shard)
    return sorted({*moved, *written})


def _by_shard(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    if len(frame):
        codes, uids = pd.factorize(frame["series_uid"])  # one digest per series, not per row
        yield from frame.groupby(np.asarray([shard_of(uid) for uid in uids], dtype=object)[codes], sort=True)


def _move_legacy(qc_dir: str, table: str) -> list[str]:
    """Move a single-file table into the shards (its rows only for series no shard holds yet), then delete it."""
    uri = legacy_uri(qc_dir, table)
    old = read_table(uri)
    if old is None:
        return []
    shards = []
    for shard, rows in _by_shard(old):
        update_table(shard_uri(qc_dir, table, shard), lambda stored, rows=rows: _added(stored, rows))
        shards.append(shard)
    delete(uri)
    return shards


def _added(stored: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame:
    """``stored`` with the ``rows`` of the series it does not hold, sorted by series."""
    if stored is not None and len(stored):
        rows = pd.concat([stored, rows[~rows["series_uid"].isin(set(stored["series_uid"]))]], ignore_index=True)
    return rows.sort_values("series_uid", kind="stable").reset_index(drop=True)
