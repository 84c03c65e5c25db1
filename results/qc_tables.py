"""Where Stage 2 keeps its tables and report under the QC folder, for the stages that read them back.

``qc_table.parquet`` holds one row per (series, structure) (``qc.results.TABLE_COLUMNS``),
``qc_series.parquet`` one row per series (done or failed, SEGs left out, the consensus SEG and
SR UIDs), ``qc_report.html`` the human-readable report. Stage 2 writes them; review reads them
and keeps its corrections log beside them, and ``bonehub review feedback`` adds what reviewers'
verdicts say about the score: ``review_labels.parquet`` (one row per reviewed bone, which the QC
report's review section reads), ``risk_coverage.parquet`` and ``review_feedback.html``.
"""

from __future__ import annotations

from results.blobs import join

TABLE, SERIES_TABLE, REPORT = "qc_table.parquet", "qc_series.parquet", "qc_report.html"
REVIEW_LABELS, RISK_COVERAGE, REVIEW_REPORT = "review_labels.parquet", "risk_coverage.parquet", "review_feedback.html"


def output_uri(qc_dir: str, name: str) -> str:
    """``name`` in the QC folder ``qc_dir`` (a local folder or a ``gs://`` prefix)."""
    return join(qc_dir, name)
