"""Where Stage 2 keeps its tables and report under the QC folder, for the stages that read them back.

``qc_table`` holds one row per (series, structure) (``qc.results.TABLE_COLUMNS``), ``qc_series``
one row per series (done or failed, SEGs left out, the consensus SEG and SR UIDs), each a folder of
shards by series that ``results.qc_shards.read_qc_table`` reads back whole (a QC folder from before
the shards has them as ``qc_table.parquet`` and ``qc_series.parquet``); ``qc_report.html`` is the
human-readable report. Stage 2 writes them; review reads them
and keeps its corrections log beside them, and ``bonehub review feedback`` adds what reviewers'
verdicts say about the score: ``review_labels.parquet`` (one row per reviewed bone, which the QC
report's review section reads), ``risk_coverage.parquet`` and ``review_feedback.html``.
"""

from __future__ import annotations

from results.blobs import join

TABLE, SERIES_TABLE, REPORT = "qc_table", "qc_series", "qc_report.html"  # the first two sharded (results.qc_shards)
REVIEW_LABELS, RISK_COVERAGE, REVIEW_REPORT = "review_labels.parquet", "risk_coverage.parquet", "review_feedback.html"


def output_uri(qc_dir: str, name: str) -> str:
    """``name`` in the QC folder ``qc_dir`` (a local folder or a ``gs://`` prefix)."""
    return join(qc_dir, name)
