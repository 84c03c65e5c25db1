"""The run manifest: one row per output (series × source × augmentation), kept as parquet.

Each row says what was asked, what came out and where it is, or why it failed.
A rerun merges its rows into the existing manifest by output key, so the file
always describes the latest attempt at every output and never holds duplicates.
Stage 2 reads the rows whose status is ``written`` or ``exists`` to find the SEGs
and the CT they were made from.

Each row also says whose CT it was, from the CT's own headers (``subject_from_headers``), for every
kind of input: BoneHub dataset and subject ids (ClinicalTrialProtocolID / ClinicalTrialSubjectID of a CT
whose ClinicalTrialSponsorName is BoneHub), PatientAge, PatientSex, PatientWeight and PatientSize, and for
a CT made from a volume file that file's path (``source_path``). These are tables only, never logged. An
output found in the store keeps those of the row that recorded it, as it keeps its counts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import pandas as pd
from pydicom.dataset import Dataset

from labels.coded_values import CodedValue
from dicom_io.stores.redact import redact_urls
from results.table_io import merge_table, read_table


class OutputStatus(CodedValue):
    """What became of one output; stored as its text in the manifest's ``status`` column."""

    WRITTEN = "written"  # made and stored by this run
    EXISTS = "exists"  # found in the store from an earlier run; not recomputed
    FAILED = "failed"  # see ``error``; retried by the next run


WRITTEN, EXISTS, FAILED = OutputStatus.WRITTEN, OutputStatus.EXISTS, OutputStatus.FAILED

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
    status: OutputStatus  # given as an OutputStatus or its text; kept as the OutputStatus
    error: str = ""
    segments: int = 0  # structures (segments) in the SEG
    seconds: float = 0.0  # wall time of this element on its worker
    finished_at: str = ""  # UTC, ISO 8601
    ct_kind: str = ""  # where the CT came from (results.series_ref SeriesRef): local, idc or store ...
    ct_location: str = ""  # ... its folder, s3:// series URL or store URI ...
    ct_instances: int = 0  # ... and its number of instances (0: unknown); Stage 2 fetches the CT from there
    vocabulary: str = ""  # schema ids the source can label, as id ranges (dicom_io.vocabulary); empty: unknown
    source_path: str = ""  # the CT volume file the series was made from, relative to its input root; empty: DICOM input
    bonehub_dataset: str = ""  # BoneHub dataset id ("001") of a BoneHub CT, else empty
    bonehub_subject: str = ""  # BoneHub subject id ("001_000001") of a BoneHub CT, else empty
    patient_age: str = ""  # PatientAge as recorded (DICOM AS: "065Y", "006M"); empty: unknown
    patient_sex: str = ""  # PatientSex: M, F or O; empty: unknown
    patient_weight: float = math.nan  # PatientWeight, kg
    patient_height: float = math.nan  # PatientSize, m

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", OutputStatus(self.status))  # raises on text that is not a status

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in KEY)


COLUMNS = [f.name for f in fields(ManifestRow)]
SUBJECT_COLUMNS = ("bonehub_dataset", "bonehub_subject", "patient_age", "patient_sex", "patient_weight", "patient_height")
BONEHUB_SPONSOR = "BoneHub"  # ClinicalTrialSponsorName of CTs made from BoneHub-Dataset images (dicom_io.subject_headers)


def subject_from_headers(ds: Dataset) -> dict[str, str | float]:
    """The subject columns of a row from one CT slice header (empty / NaN where the header has no value)."""
    bonehub = str(ds.get("ClinicalTrialSponsorName", "") or "").strip() == BONEHUB_SPONSOR
    return {
        "bonehub_dataset": str(ds.get("ClinicalTrialProtocolID", "") or "").strip() if bonehub else "",
        "bonehub_subject": str(ds.get("ClinicalTrialSubjectID", "") or "").strip() if bonehub else "",
        "patient_age": str(ds.get("PatientAge", "") or "").strip(),
        "patient_sex": str(ds.get("PatientSex", "") or "").strip(),
        "patient_weight": _number(ds, "PatientWeight"),
        "patient_height": _number(ds, "PatientSize"),
    }


def _number(ds: Dataset, keyword: str) -> float:
    try:
        value = float(ds.get(keyword) or math.nan)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) and value > 0 else math.nan


def to_frame(rows: list[ManifestRow]) -> pd.DataFrame:
    """The rows as a table, with every URL in them redacted (no credentials in a manifest)."""
    frame = pd.DataFrame([asdict(row) for row in rows], columns=COLUMNS)
    for column in ("location", "ct_location", "error"):
        frame[column] = frame[column].map(redact_urls)
    return frame.astype({"segments": "int64", "seconds": "float64", "ct_instances": "int64",
                         "patient_weight": "float64", "patient_height": "float64"})


def read_manifest(uri: str | os.PathLike) -> pd.DataFrame:
    """The manifest at ``uri`` (local path or ``gs://``); an empty frame when there is none yet."""
    frame = read_table(uri)
    if frame is None:
        return to_frame([])
    for field in fields(ManifestRow):  # manifests written before a column existed get its default
        if field.name not in frame.columns:
            frame[field.name] = field.default
        elif isinstance(field.default, str):  # ... also in their rows merged with newer ones
            frame[field.name] = frame[field.name].fillna(field.default)
    return frame[COLUMNS]


def merge_into_manifest(uri: str | os.PathLike, rows: list[ManifestRow],
                        count_stored: Callable[[pd.Series], int] | None = None) -> pd.DataFrame:
    """Replace the rows of the same outputs in the manifest at ``uri`` by ``rows``; write and return it.

    The manifest is read once, under the write lock. ``count_stored(row)``: the segment count of an output
    found in the store that no stored row counts (a run killed between storing its SEG and its manifest).
    """
    new = to_frame(rows).drop_duplicates(subset=list(KEY), keep="last")

    def adjust(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
        new = _keep_earlier_counts(new, _filled(old)) if len(old) else new
        if count_stored is not None:
            uncounted = (new["status"] == EXISTS) & (new["segments"] == 0)
            for index in new.index[uncounted]:
                new.loc[index, "segments"] = count_stored(new.loc[index])
        return new

    return merge_table(uri, new, replace=KEY, order=KEY, adjust=adjust)


def _filled(frame: pd.DataFrame) -> pd.DataFrame:
    """A stored manifest with the columns of today (see ``read_manifest``)."""
    for field in fields(ManifestRow):
        if field.name not in frame.columns:
            frame[field.name] = field.default
    return frame


def _keep_earlier_counts(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """An output found in the store keeps the segment count and time of the run that made it, and the
    subject columns it recorded where this run has none (a skipped output's CT is not read)."""
    earlier = old.set_index("seg_sop_instance_uid")[["segments", "seconds", *SUBJECT_COLUMNS]]
    earlier = earlier[~earlier.index.duplicated(keep="last")]
    found = (new["status"] == EXISTS) & new["seg_sop_instance_uid"].isin(earlier.index)
    for column in ("segments", "seconds"):
        new.loc[found, column] = earlier.loc[new.loc[found, "seg_sop_instance_uid"], column].to_numpy()
    for column in SUBJECT_COLUMNS:
        blank = found & (new[column].isna() | (new[column] == ""))
        new.loc[blank, column] = earlier.loc[new.loc[blank, "seg_sop_instance_uid"], column].to_numpy()
    return new
