"""The run manifest: one row per output (series × source × augmentation), kept as parquet.

Each row says what was asked, what came out and where it is, or why it failed.
A rerun merges its rows into the existing manifest by output key, so the file
always describes the latest attempt at every output and never holds duplicates.
Stage 2 reads the rows whose status is ``written`` or ``exists`` to find the SEGs.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

WRITTEN = "written"  # made and stored by this run
EXISTS = "exists"  # found in the store from an earlier run; not recomputed
FAILED = "failed"  # see ``error``; retried by the next run
STATUSES = (WRITTEN, EXISTS, FAILED)

KEY = ("series_instance_uid", "source", "source_version", "augmentation", "seg_type")


@dataclass(frozen=True)
class ManifestRow:
    """One output of Stage 1. ``error`` is ``"<step>: <reason>"`` for failures, else empty."""

    series_instance_uid: str
    study_instance_uid: str
    source: str
    source_version: str
    augmentation: str
    seg_type: str
    seg_series_instance_uid: str
    seg_sop_instance_uid: str
    location: str
    status: str
    error: str = ""
    segments: int = 0  # structures (segments) in the SEG
    seconds: float = 0.0  # wall time of this element on its worker
    finished_at: str = ""  # UTC, ISO 8601

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"manifest status must be one of {STATUSES}, got {self.status!r}")

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in KEY)


COLUMNS = [f.name for f in fields(ManifestRow)]


def to_frame(rows: list[ManifestRow]) -> pd.DataFrame:
    frame = pd.DataFrame([asdict(row) for row in rows], columns=COLUMNS)
    return frame.astype({"segments": "int64", "seconds": "float64"})


def read_manifest(uri: str | os.PathLike) -> pd.DataFrame:
    """The manifest at ``uri`` (local path or ``gs://``); an empty frame when there is none yet."""
    data = _read_bytes(str(uri))
    if data is None:
        return to_frame([])
    return pd.read_parquet(io.BytesIO(data))


def merge_into_manifest(uri: str | os.PathLike, rows: list[ManifestRow]) -> pd.DataFrame:
    """Replace the rows of the same outputs in the manifest at ``uri`` by ``rows``; write and return it."""
    new = to_frame(rows).drop_duplicates(subset=list(KEY), keep="last")
    old = read_manifest(uri)
    if len(old):
        new = _keep_earlier_counts(new, old)
        keys = set(map(tuple, new[list(KEY)].itertuples(index=False)))
        old = old[[tuple(k) not in keys for k in old[list(KEY)].itertuples(index=False)]]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    merged = new.sort_values(list(KEY), kind="stable").reset_index(drop=True)
    buffer = io.BytesIO()
    merged.to_parquet(buffer, index=False)
    _write_bytes(str(uri), buffer.getvalue())
    return merged


def _keep_earlier_counts(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """An output found in the store keeps the segment count and time of the run that made it."""
    earlier = old.set_index("seg_sop_instance_uid")[["segments", "seconds"]]
    earlier = earlier[~earlier.index.duplicated(keep="last")]
    found = (new["status"] == EXISTS) & new["seg_sop_instance_uid"].isin(earlier.index)
    for column in ("segments", "seconds"):
        new.loc[found, column] = earlier.loc[new.loc[found, "seg_sop_instance_uid"], column].to_numpy()
    return new


def _read_bytes(uri: str) -> bytes | None:
    if uri.startswith("gs://"):
        blob = _gcs_blob(uri)
        return blob.download_as_bytes() if blob.exists() else None
    path = Path(uri)
    return path.read_bytes() if path.is_file() else None


def _write_bytes(uri: str, data: bytes) -> None:
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
        raise ValueError(f"manifest URI {uri!r} is not of the form gs://bucket/path/manifest.parquet")
    return gcs_client().bucket(bucket).blob(name)
