"""Reviewers teach the QC: the figures and the risk–coverage curve on a labelled set with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from labels.errors import BoneHubInputError
from qc.report import write_review_report
from qc.review_feedback import CURVE_COLUMNS, LABEL_COLUMNS, risk_coverage, summarise


def labels(outcomes: list[tuple[float, str]], missing: int = 0) -> pd.DataFrame:
    """Reviewed bones with (score, outcome), all QC review; corrections get Dice 0.9, 0.8, ..."""
    rows = [{"series_uid": f"1.2.{i}", "bone": "vertebra_L1", "score": score, "qc_status": "review", "outcome": outcome,
             "verdict": "corrected" if outcome == "changed" else "accepted",
             "dice": 0.9 - 0.1 * i if outcome == "changed" else math.nan} for i, (score, outcome) in enumerate(outcomes)]
    rows += [{"series_uid": "1.3", "bone": "vertebra_L3", "score": math.nan, "qc_status": "absent", "outcome": "missing",
              "verdict": "missing", "dice": math.nan}] * missing
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def test_the_curve_counts_what_a_threshold_would_have_auto_accepted():
    # scores 0.1 .. 0.9: the three lowest were changed, and 0.6; the rest accepted as is
    outcomes = [(0.1, "changed"), (0.2, "changed"), (0.3, "changed"), (0.4, "confirmed"), (0.5, "confirmed"),
                (0.6, "changed"), (0.7, "confirmed"), (0.8, "confirmed"), (0.9, "confirmed")]
    table_scores = pd.Series([0.05, 0.5, 0.95, 0.99, math.nan])
    curve = risk_coverage(labels(outcomes), table_scores)
    assert list(curve.columns) == CURVE_COLUMNS
    np.testing.assert_allclose(curve.threshold, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert list(curve.auto_accepted) == [9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert list(curve.errors) == [4, 3, 2, 1, 1, 1, 0, 0, 0]
    np.testing.assert_allclose(curve.residual_error, [4 / 9, 3 / 8, 2 / 7, 1 / 6, 1 / 5, 1 / 4, 0, 0, 0])
    np.testing.assert_allclose(curve.coverage_all[:5], [0.75, 0.75, 0.75, 0.75, 0.75])  # 3 of 4 scored bones >= t
    np.testing.assert_allclose(curve.coverage_all[5:], [0.5] * 4)

    summary, shown = summarise(labels(outcomes, missing=2), table_scores, target_error=0.05, min_labels=9)
    assert (summary.labelled, summary.changed, summary.confirmed, summary.missing) == (9, 4, 5, 2)
    assert (summary.review_labelled, summary.review_changed, summary.false_alarms) == (9, 4, 5)
    assert summary.precision_review == pytest.approx(4 / 9)
    assert summary.corrections == 4 and summary.dice_min == pytest.approx(0.4)
    assert summary.dice_median == pytest.approx(np.median([0.9, 0.8, 0.7, 0.4]))
    assert summary.threshold == pytest.approx(0.7) and summary.threshold_coverage == pytest.approx(3 / 9)
    assert len(shown) == 9
    # a looser target is met lower, with more coverage; none met keeps the threshold undefined
    assert summarise(labels(outcomes), target_error=0.2, min_labels=9)[0].threshold == pytest.approx(0.4)
    assert math.isnan(summarise(labels([(0.5, "changed")] * 3), target_error=0.05, min_labels=3)[0].threshold)


def test_too_few_labels_give_counts_and_no_curve(tmp_path):
    few = labels([(0.3, "changed"), (0.8, "confirmed")], missing=1)
    summary, curve = summarise(few, min_labels=20)
    assert curve.empty and not summary.curve_shown and math.isnan(summary.threshold)
    assert "not shown, 2 labels < 20 needed" in summary.describe()
    page = write_review_report(few, pd.DataFrame({"score": [0.3, 0.8]}), tmp_path / "r.html").read_text()
    assert "No risk–coverage curve: 2 labelled bones, at least 20 needed" in page and "<img" not in page
    assert "1/2 (50%)" in page  # precision of review, with its counts
    enough = write_review_report(few, pd.DataFrame({"score": [0.3, 0.8]}), tmp_path / "s.html", min_labels=2).read_text()
    assert "risk-coverage curve" in enough and "<strong>0.800</strong>" in enough
    empty = write_review_report(labels([]), pd.DataFrame({"score": []}), tmp_path / "e.html").read_text()
    assert "No reviewer verdict or correction yet." in empty


@pytest.mark.parametrize(("target", "minimum", "message"), [
    (1.5, 20, "target error 1.5"), (-0.1, 20, "target error -0.1"), (float("nan"), 20, "target error nan"),
    (0.05, 0, "min labels 0"), (0.05, 2.5, "min labels 2.5"),
])
def test_settings_are_refused_by_name(target, minimum, message):
    with pytest.raises(BoneHubInputError, match=message):
        summarise(labels([(0.5, "changed")]), target_error=target, min_labels=minimum)


def test_the_qc_report_ends_with_the_review_section(tmp_path):
    from qc.report import write_report
    from qc.results import TABLE_COLUMNS, BoneResult

    row = BoneResult("1.2.3", "1.2", "vertebra_L1", "bone", ("a 1", "b 1"), 2, 2, 0.8, 0.8, 2.0, 1.0, 0.9, 1.0, 50.0,
                     0.1, 0.5, "review", (), "", (0.8, 0.8), 1, (True, True)).as_row()
    table = pd.DataFrame([row], columns=TABLE_COLUMNS)
    plain = write_report(table, [], tmp_path / "plain.html").read_text()
    assert "What reviewers taught the QC" not in plain and "Status corrected" not in plain
    taught = write_report(table, [], tmp_path / "taught.html", review_labels=labels([(0.5, "changed")])).read_text()
    assert taught.index("What reviewers taught the QC") > taught.index("<h2>Summary</h2>")
