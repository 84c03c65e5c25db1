"""The bones QC doubts, in the order a reviewer should see them.

From the QC tables (or, without them, from the QC SRs in a store): every
structure with status ``review`` that no reviewer has decided on yet (corrected,
or given a verdict), lowest score first, then the one with more failed rules. ``worklist.json`` is what
``bonehub review export`` and the Slicer module read; ``worklist.csv`` is the
same list for people.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from dicom_io.stores import Store
from qc.results import REVIEW
from review.state import ReviewInputError

WORKLIST_FORMAT = "bonehub-worklist/1"


@dataclass(frozen=True)
class WorklistItem:
    """One bone of one series to review, with what QC said about it."""

    series_uid: str
    study_uid: str
    bone: str
    score: float
    flags: tuple[str, ...]
    outlier_source: str
    priority: int = 0  # 1 = first

    @property
    def item_id(self) -> str:
        return f"{self.series_uid}/{self.bone}"

    def as_json(self) -> dict[str, object]:
        data = asdict(self) | {"item_id": self.item_id, "flags": list(self.flags)}
        data["score"] = None if math.isnan(self.score) else self.score
        return data


def prioritise(items: Iterable[WorklistItem]) -> list[WorklistItem]:
    """Lowest score first (an undefined score last), then more failed rules, then by series and bone."""
    def key(item: WorklistItem) -> tuple:
        return (math.isnan(item.score), 0.0 if math.isnan(item.score) else item.score, -len(item.flags),
                item.series_uid, item.bone)
    ordered = sorted(items, key=key)
    return [WorklistItem(**{**asdict(item), "priority": rank}) for rank, item in enumerate(ordered, start=1)]


def worklist_from_tables(table: pd.DataFrame, decided: set[tuple[str, str]],
                         series_uids: Iterable[str] | None = None) -> list[WorklistItem]:
    """Items from the QC table: status review, no reviewer decision yet."""
    rows = table[table["status"] == REVIEW]
    if series_uids is not None:
        rows = rows[rows["series_uid"].isin(set(series_uids))]
    items = [WorklistItem(str(row["series_uid"]), str(row["study_uid"]), str(row["bone"]), float(row["score"]),
                          tuple(filter(None, str(row["flags"]).split(";"))), str(row["outlier_source"]))
             for _, row in rows.iterrows() if (row["series_uid"], row["bone"]) not in decided]
    return prioritise(items)


def worklist_from_store(store: Store, series_uids: Iterable[str] | None = None) -> list[WorklistItem]:
    """Items from the QC SRs in a store, when the QC tables are not at hand.

    A series can hold several QC SRs once bones were corrected; a report that a
    later one lists as its predecessor is superseded and not read.
    """
    from dicom_io.sr_reader import NotQCReportError, read_qc_sr
    from dicom_io.sr_writer import QC_NAME

    wanted = None if series_uids is None else set(series_uids)
    reports = []
    for ref in store.list_instances(modality="SR"):
        ds = store.get(ref.study_uid, ref.series_uid, ref.sop_uid)
        if ds.get("SeriesDescription") != QC_NAME:
            continue
        reports.append(ds)
    superseded = {str(item.ReferencedSOPInstanceUID) for ds in reports for study in ds.get("PredecessorDocumentsSequence", [])
                  for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    items = []
    for ds in reports:
        if str(ds.SOPInstanceUID) in superseded:
            continue
        ct_series = _ct_series_of(ds)
        if wanted is not None and ct_series not in wanted:
            continue
        try:
            groups = read_qc_sr(ds)
        except NotQCReportError:
            continue
        items += [WorklistItem(ct_series, str(ds.StudyInstanceUID), g["bone"], float(g["score"]), tuple(g["flags"]),
                               str(g["outlier_source"])) for g in groups if g["status"] == REVIEW]
    return prioritise(items)


def _ct_series_of(sr) -> str:
    """The CT series a QC SR reports on: the "Source series for segmentation" (DCM 121232) of its groups."""
    from dicom_io.sr_reader import find_content_item

    item = find_content_item(sr, "UIDREF", "121232")
    if item is None:
        raise ReviewInputError(f"SR {sr.SOPInstanceUID}: names no source series for segmentation")
    return str(item.UID)


def write_worklist(items: list[WorklistItem], folder: str | Path) -> Path:
    """``worklist.json`` (and ``worklist.csv``) in ``folder``; returns the JSON path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "worklist.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps({"format": WORKLIST_FORMAT, "items": [i.as_json() for i in items]}, indent=1))
    partial.replace(path)
    pd.DataFrame([i.as_json() | {"flags": ";".join(i.flags)} for i in items],
                 columns=["priority", "item_id", "series_uid", "study_uid", "bone", "score", "flags",
                          "outlier_source"]).to_csv(folder / "worklist.csv", index=False)
    return path


def read_worklist(path: str | Path) -> list[WorklistItem]:
    """Items of a ``worklist.json`` (a file or the folder holding it)."""
    path = Path(path)
    path = path / "worklist.json" if path.is_dir() else path
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReviewInputError(f"{path}: not a readable worklist ({error})") from None
    if not isinstance(data, dict) or data.get("format") != WORKLIST_FORMAT:
        raise ReviewInputError(f"{path}: not a {WORKLIST_FORMAT} file")
    return [WorklistItem(d["series_uid"], d["study_uid"], d["bone"], math.nan if d["score"] is None else float(d["score"]),
                         tuple(d["flags"]), d["outlier_source"], int(d["priority"])) for d in data["items"]]
