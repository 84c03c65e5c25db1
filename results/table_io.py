"""Parquet tables of a run (manifest, QC tables, review log) kept whole in a local folder or on GCS.

A rerun replaces the rows of what it redid and keeps the rest, so a table
always holds the latest result of everything ever run into it, without duplicates.
Every change is a read-change-write that is safe when several runs write one table at
once: under an exclusive lock on a sidecar file for a local table (``flock``, which works
on local disks), and as a generation-matched upload on GCS, redone on a conflict. So no
run ever drops another run's rows.
"""

from __future__ import annotations

import fcntl
import io
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from results.blobs import read_bytes, read_versioned, write_bytes, write_if_unchanged

PARQUET = "application/vnd.apache.parquet"
_GCS_ATTEMPTS = 50  # conflicts only happen while other runs write the same table


def read_table(uri: str | os.PathLike, columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """The table at ``uri`` (local path or ``gs://``), or None when there is none yet.

    ``columns``: only those of them the table has (an older table may lack newer columns).
    """
    return _frame(read_bytes(str(uri)), columns)


def write_table(uri: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Replace the table at ``uri`` by ``frame`` (for tables that one step owns whole)."""
    write_bytes(str(uri), _parquet(frame), content_type=PARQUET)


def update_table(uri: str | os.PathLike, change: Callable[[pd.DataFrame | None], pd.DataFrame]) -> pd.DataFrame:
    """Write ``change(stored table or None)`` to ``uri``, with no concurrent writer in between; return it."""
    uri = str(uri)
    if not uri.startswith("gs://"):
        with _locked(uri):
            changed = change(read_table(uri))
            write_table(uri, changed)
            return changed
    for _ in range(_GCS_ATTEMPTS):
        data, generation = read_versioned(uri)
        changed = change(_frame(data))
        if write_if_unchanged(uri, _parquet(changed), generation, content_type=PARQUET):
            return changed
        time.sleep(random.uniform(0.05, 0.5))  # another run wrote it meanwhile: redo the change on its table
    raise TimeoutError(f"table {uri} kept changing under {_GCS_ATTEMPTS} attempts to update it")


def merge_table(uri: str | os.PathLike, new: pd.DataFrame, replace: Sequence[str], order: Sequence[str],
                adjust: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame] | None = None) -> pd.DataFrame:
    """Drop the stored rows whose ``replace`` columns match a row of ``new``, add ``new``, sort, write, return.

    ``adjust(new, stored)`` may change the new rows in view of the stored ones (empty when there are none),
    within the same update.
    """
    def merged(old: pd.DataFrame | None) -> pd.DataFrame:
        old = old if old is not None else pd.DataFrame(columns=new.columns)
        rows = adjust(new.copy(), old) if adjust else new
        if len(old):
            keys = set(map(tuple, rows[list(replace)].itertuples(index=False)))
            old = old[[tuple(k) not in keys for k in old[list(replace)].itertuples(index=False)]]
            rows = pd.concat([old, rows], ignore_index=True) if len(old) else rows
        return rows.sort_values(list(order), kind="stable").reset_index(drop=True)

    return update_table(uri, merged)


def append_table(uri: str | os.PathLike, rows: pd.DataFrame) -> pd.DataFrame:
    """Add ``rows`` at the end of the table at ``uri`` (a log); return the whole table."""
    return update_table(uri, lambda old: rows if old is None or not len(old) else pd.concat([old, rows], ignore_index=True))


@contextmanager
def _locked(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``.<name>.lock`` beside the table while it is read and rewritten."""
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _frame(data: bytes | None, columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    if data is None:
        return None
    if columns is None:
        return pd.read_parquet(io.BytesIO(data))
    stored = set(pq.read_schema(io.BytesIO(data)).names)
    return pd.read_parquet(io.BytesIO(data), columns=[c for c in columns if c in stored])


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
