"""Parquet tables of a run (manifest, QC table) kept whole in a local folder or on GCS.

A rerun replaces the rows of what it redid and keeps the rest, so a table
always holds the latest result of everything ever run into it, without duplicates.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def read_table(uri: str | os.PathLike) -> pd.DataFrame | None:
    """The table at ``uri`` (local path or ``gs://``), or None when there is none yet."""
    data = read_bytes(str(uri))
    return None if data is None else pd.read_parquet(io.BytesIO(data))


def write_table(uri: str | os.PathLike, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes(str(uri), buffer.getvalue())


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


def read_bytes(uri: str) -> bytes | None:
    if uri.startswith("gs://"):
        blob = _gcs_blob(uri)
        return blob.download_as_bytes() if blob.exists() else None
    path = Path(uri)
    return path.read_bytes() if path.is_file() else None


def write_bytes(uri: str, data: bytes) -> None:
    """Whole-file replace: a temporary file renamed locally; a single upload on GCS (atomic per object)."""
    if uri.startswith("gs://"):
        _gcs_blob(uri).upload_from_string(data, content_type="application/vnd.apache.parquet")
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _gcs_blob(uri: str):
    from dicom_io.stores import gcs_client

    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not bucket or not name:
        raise ValueError(f"table URI {uri!r} is not of the form gs://bucket/path/table.parquet")
    return gcs_client().bucket(bucket).blob(name)
