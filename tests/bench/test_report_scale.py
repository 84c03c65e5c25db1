"""The report-scale benchmark's synthetic QC table is a consistent QC table, and the benchmark runs at a tiny size."""

from __future__ import annotations

import json

import numpy as np

from bench import report_scale
from qc.results import STATUSES, TABLE_COLUMNS, result_from_row


def test_synthetic_table_is_a_consistent_qc_table():
    table = report_scale.synthetic_table(5)
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 5 * len(report_scale.structures()) and not table.duplicated(["series_uid", "bone"]).any()
    assert set(table["status"]) <= set(STATUSES) and {"accept", "review", "absent"} <= set(table["status"])
    for row in table.to_dict("records"):
        result = result_from_row(row)  # the table's own reader accepts every row
        assert len(result.member_agreement) == len(result.member_present) == result.n_sources == 3
        assert sum(result.member_present) == result.n_present
        assert (result.status == "absent") == (result.n_present == 0)
        assert result.status == "absent" or np.isclose(result.score, min(result.member_agreement) * (
            0.5 if "fov_cutoff" in result.flags else 1.0))


def test_benchmark_runs_and_reports(tmp_path, capsys):
    results = report_scale.run(series=8, anchor_series=4, results_path=tmp_path / "report_scale.json")
    assert json.loads((tmp_path / "report_scale.json").read_text()) == results
    assert results["ours"]["rows"] == 8 * len(report_scale.structures()) and results["anchor"]["series"] == 4
    assert results["ours"]["comparison_rows"] > 0 and results["ours"]["report_mib"] > 0
    assert "report_scale: QC table of 8 series" in capsys.readouterr().out
