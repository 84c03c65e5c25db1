"""Parquet tables of a run (manifest, QC table) kept whole in a local folder or on GCS.

A rerun replaces the rows of what it redid and keeps the rest, so a table
always holds the latest result of everything ever run into it, without duplicates.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import pandas as pd

from results.blobs import read_bytes, write_bytes


def read_table(uri: str | os.PathLike) -> pd.DataFrame | None:
    """The table at ``uri`` (local path or ``gs://``), or None when there is none yet."""
    data = read_bytes(str(uri))
    return None if data is None else pd.read_parquet(io.BytesIO(data))


def write_table(uri: str | os.PathLike, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes(str(uri), buffer.getvalue(), content_type="application/vnd.apache.parquet")


def merge_table(uri: str | os.PathLike, new: pd.DataFrame, replace: Sequence[str], order: Sequence[str]) -> pd.DataFrame:
    """Drop the stored rows whose ``replace`` columns match a row of ``new``, add ``new``, sort, write, return."""
    old = read_table(uri)
    if old is not None and len(old):
        keys = set(map(tuple, new[list(replace)].itertuples(index=False)))
        old = old[[tuple(k) not in keys for k in old[list(replace)].itertuples(index=False)]]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    merged = new.sort_values(list(order), kind="stable").reset_index(drop=True)
    write_table(uri, merged)
    return merged
