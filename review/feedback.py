"""Reviewers' verdicts and corrections as labels for the QC score: ``bonehub review feedback``.

One label per (series, structure) a reviewer decided on, from the corrections
log: *changed* when it was ever corrected or its latest verdict is a rejection,
*confirmed* when accepted as is, *missing* for a structure no source labelled;
with the QC score and status it had when first reviewed (the log keeps them;
the current QC table for logs older than that) and the Dice of its first
correction (the change from the automatic mask QC scored). ``qc.review_feedback``
turns the labels into the figures; this module writes them beside the QC tables.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from qc.review_feedback import CHANGED, CONFIRMED, LABEL_COLUMNS, UNSEGMENTED, FeedbackSummary, summarise
from results.blobs import write_bytes
from results.qc_shards import read_qc_table
from results.qc_tables import REVIEW_LABELS, REVIEW_REPORT, RISK_COVERAGE, TABLE, output_uri
from results.table_io import write_table
from review.state import ReviewInputError, Verdict, read_corrections


def review_labels(table: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """One row per reviewed (series, structure), ``qc.review_feedback.LABEL_COLUMNS``."""
    current = {(r["series_uid"], r["bone"]): r for _, r in table.iterrows()}
    rows = []
    for (series_uid, bone), mine in log.groupby(["series_uid", "bone"], sort=True):
        verdicts = list(mine["verdict"])
        first, latest = mine.iloc[0], verdicts[-1]
        if latest == Verdict.MISSING:
            outcome = UNSEGMENTED
        elif Verdict.CORRECTED in verdicts or latest == Verdict.REJECTED:
            outcome = CHANGED
        else:
            outcome = CONFIRMED
        now = current.get((series_uid, bone))
        score, status = float(first["score"]), str(first["qc_status"] or "")
        if pd.isna(score) and now is not None and outcome != UNSEGMENTED:
            score, status = float(now["score"]), status or str(now["status"])
        corrections = mine[mine["verdict"] == Verdict.CORRECTED]["dice"].dropna()
        rows.append({"series_uid": series_uid, "bone": bone, "score": score, "qc_status": status, "outcome": outcome,
                     "verdict": str(latest), "dice": float(corrections.iloc[0]) if len(corrections) else float("nan")})
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def write_feedback(qc_dir: str, *, target_error: float, min_labels: int) -> FeedbackSummary:
    """``review_labels.parquet``, ``risk_coverage.parquet`` and ``review_feedback.html`` in ``qc_dir``."""
    from qc.report import write_review_report

    table = read_qc_table(qc_dir, TABLE)
    if table is None:
        raise ReviewInputError(f"no QC results in {qc_dir}: run `bonehub qc` first")
    labels = review_labels(table, read_corrections(qc_dir))
    summary, curve = summarise(labels, table["score"], target_error=target_error, min_labels=min_labels)
    write_table(output_uri(qc_dir, REVIEW_LABELS), labels)
    write_table(output_uri(qc_dir, RISK_COVERAGE), curve)
    with tempfile.TemporaryDirectory() as folder:
        page = write_review_report(labels, table, Path(folder) / REVIEW_REPORT, target_error=target_error,
                                   min_labels=min_labels)
        write_bytes(output_uri(qc_dir, REVIEW_REPORT), page.read_bytes(), content_type="text/html")
    return summary
