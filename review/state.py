"""What Stage 3 reads (QC tables, the store, the manifest) and the one thing it adds: the corrections log.

Originals are never changed: every correction is a new SEG and a new SR, every
other verdict (accepted, rejected, missing) a new SR, and ``corrections.parquet``
(next to the QC tables) lists them all in order, one row each. The latest row of
a series is its *head*: the SEG the next correction starts from and the SR the
next revision replaces; a series without rows starts from its consensus SEG and
QC SR. The latest row of a (series, structure) is the reviewers' word on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from dicom_io.errors import DicomInputError
from dicom_io.uids import validate_uid
from labels.coded_values import CodedValue
from results.qc_shards import read_qc_table
from results.qc_tables import SERIES_TABLE, TABLE, output_uri
from results.table_io import append_table, read_table

CORRECTIONS = "corrections.parquet"
CORRECTION_COLUMNS = [
    "series_uid", "study_uid", "bone", "reviewer", "method", "tool", "policy", "imported_at",
    "base_seg_series_uid", "base_seg_sop_uid", "base_digest", "corrected_digest",
    "seg_series_uid", "seg_sop_uid", "sr_series_uid", "sr_sop_uid", "added", "removed", "contested", "taken",
    "verdict", "reason", "qc_status", "score", "dice", "roi_digest",
]
# Logs written before verdicts existed lack the newer columns: every row of them was a correction.
_OLDER_LOG_DEFAULTS = {"verdict": "corrected", "reason": "", "qc_status": "", "score": float("nan"),
                       "dice": float("nan"), "roi_digest": ""}


class Verdict(CodedValue):
    """What a reviewer said about one structure (the ``verdict`` column of the log)."""

    CORRECTED = "corrected"  # its mask was corrected (a new SEG)
    ACCEPTED = "accepted"  # right as it is, though QC doubted it
    REJECTED = "rejected"  # unusable (a reason is required)
    MISSING = "missing"  # in the image, but no source labelled it


class ReviewInputError(DicomInputError):
    """A review request that cannot be done as asked: nothing was written."""


class StaleItemError(ReviewInputError):
    """The item no longer describes the stored results (QC rerun, or the bone changed since export)."""


@dataclass(frozen=True)
class ReviewPlace:
    """Where Stages 1 and 2 stored their results; review reads them and adds its own next to them."""

    store_uri: str  # the SEGs, consensus SEGs and QC SRs; corrected SEGs and SRs go there too
    manifest_uri: str
    qc_dir: str
    cache_dir: str
    ct_folder: str | None = None  # read CT series here instead of where the manifest says
    idc_endpoint_url: str | None = None


@dataclass(frozen=True)
class SegRef:
    """One stored instance by its UIDs (the store's key)."""

    study_uid: str
    series_uid: str
    sop_uid: str


def qc_tables(place: ReviewPlace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-structure QC table, per-series QC table); an error naming the folder when QC has not run."""
    table, series = read_qc_table(place.qc_dir, TABLE), read_qc_table(place.qc_dir, SERIES_TABLE)
    if table is None or series is None:
        raise ReviewInputError(f"no QC results in {place.qc_dir}: run `bonehub qc` first")
    return table, series


def corrections(place: ReviewPlace) -> pd.DataFrame:
    """Every correction imported so far, oldest first (empty when none)."""
    return read_corrections(place.qc_dir)


def read_corrections(qc_dir: str) -> pd.DataFrame:
    """The corrections log of a QC folder, every column present (rows of older logs are corrections)."""
    log = read_table(output_uri(qc_dir, CORRECTIONS))
    if log is None:
        return pd.DataFrame(columns=CORRECTION_COLUMNS)
    for column, default in _OLDER_LOG_DEFAULTS.items():
        log[column] = log[column].fillna(default) if column in log else default
    return log


def record_correction(place: ReviewPlace, row: dict[str, object]) -> None:
    """Append one correction or verdict to the log (the log is small: one row per reviewer decision)."""
    append_table(output_uri(place.qc_dir, CORRECTIONS), pd.DataFrame([row], columns=CORRECTION_COLUMNS))


def series_row(series_table: pd.DataFrame, series_uid: str) -> pd.Series:
    """The QC outcome of one series; it must have a consensus SEG and an SR to review against."""
    validate_uid(series_uid, "series UID of a review item")
    rows = series_table[series_table["series_uid"] == series_uid]
    if rows.empty:
        raise ReviewInputError(f"series {series_uid}: not in the QC results; run `bonehub qc` for it first")
    row = rows.iloc[-1]
    if row["status"] != "done" or not row.get("consensus_sop_uid"):
        raise ReviewInputError(f"series {series_uid}: QC did not finish ({row['status']}: {row['error'] or 'no structure found'})")
    if not row.get("consensus_series_uid"):
        raise ReviewInputError(f"series {series_uid}: the QC table predates review (no consensus series UID); rerun `bonehub qc`")
    return row


def head(series: pd.Series, log: pd.DataFrame) -> tuple[SegRef, SegRef]:
    """(SEG, SR) a new correction of this series starts from: the latest correction, else QC's consensus and SR."""
    mine = log[log["series_uid"] == series["series_uid"]]
    study = str(series["study_uid"])
    if len(mine):
        last = mine.iloc[-1]
        return SegRef(study, last["seg_series_uid"], last["seg_sop_uid"]), SegRef(study, last["sr_series_uid"], last["sr_sop_uid"])
    return (SegRef(study, series["consensus_series_uid"], series["consensus_sop_uid"]),
            SegRef(study, series["sr_series_uid"], series["sr_sop_uid"]))


def reviewed_bones(log: pd.DataFrame) -> set[tuple[str, str]]:
    """(series, structure) pairs a reviewer has decided on (corrected, or any other verdict)."""
    return set(zip(log["series_uid"], log["bone"]))


def bone_rows(log: pd.DataFrame, series_uid: str, bone: str) -> pd.DataFrame:
    """The log rows of one structure of one series, oldest first."""
    return log[(log["series_uid"] == series_uid) & (log["bone"] == bone)]


def safe_name(text: str, what: str) -> str:
    """``text`` as one path component, refused when it could leave its folder."""
    if not text or text in (".", "..") or os.sep in text or "/" in text or "\0" in text:
        raise ReviewInputError(f"{what} {text!r} cannot be used as a folder name")
    return text
