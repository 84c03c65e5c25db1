"""Reviewers teach the QC: how well the QC score predicted what reviewers did with the bones it doubted.

Every bone a reviewer decided on is a label (``review.feedback`` builds the
table, ``LABEL_COLUMNS``): *changed* (corrected, or rejected as unusable) or
*confirmed* (accepted as is), with the QC score and status it had when it was
reviewed and, for a correction, the Dice between the mask before and after.
*Missing* bones (no source labelled them) have no score; they are counted apart.

From those labels: the precision of ``review`` (share of reviewed bones that
needed a change), the false alarms (accepted as is), how much corrections
changed the bone, and a risk–coverage curve: for each threshold t, coverage is
the share of labelled bones with score >= t (those QC would auto-accept) and
residual error the share of them a reviewer changed; the suggested threshold is
the lowest t (most coverage) whose residual error meets the target. Reviewed
bones are mostly those QC doubted, so the curve says little above the review
threshold in use; with fewer labels than ``min_labels`` no curve is drawn, only
the counts. ``coverage_all`` gives the same threshold's share of every scored
bone in the QC table, for scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labels.errors import BoneHubInputError
from qc.results import REVIEW

LABEL_COLUMNS = ["series_uid", "bone", "score", "qc_status", "outcome", "verdict", "dice"]
CURVE_COLUMNS = ["threshold", "auto_accepted", "errors", "coverage", "residual_error", "coverage_all"]
CHANGED, CONFIRMED, UNSEGMENTED = "changed", "confirmed", "missing"
DEFAULT_TARGET_ERROR, DEFAULT_MIN_LABELS = 0.05, 20


@dataclass(frozen=True)
class FeedbackSummary:
    """The counts and figures of the report section (NaN where nothing counts)."""

    labelled: int  # bones with a score that a reviewer changed or confirmed
    review_labelled: int  # of those, QC status review when reviewed
    review_changed: int
    false_alarms: int  # review bones accepted as is
    changed: int
    confirmed: int
    missing: int  # bones reviewers found that no source labelled
    corrections: int  # bones with a correction Dice
    dice_median: float
    dice_min: float
    target_error: float
    min_labels: int
    threshold: float  # lowest threshold meeting the target; NaN when none does or there is no curve
    threshold_coverage: float
    threshold_error: float

    @property
    def precision_review(self) -> float:
        return self.review_changed / self.review_labelled if self.review_labelled else math.nan

    @property
    def curve_shown(self) -> bool:
        return self.labelled >= self.min_labels

    def describe(self) -> str:
        """A few lines for a terminal."""
        lines = [f"labelled bones: {self.labelled} ({self.changed} changed, {self.confirmed} accepted as is), "
                 f"{self.missing} missing",
                 f"precision of review: {self.review_changed}/{self.review_labelled} needed a change; "
                 f"{self.false_alarms} false alarms",
                 f"corrections: {self.corrections}, Dice before/after median {_number(self.dice_median)}, "
                 f"min {_number(self.dice_min)}"]
        if not self.curve_shown:
            lines.append(f"risk-coverage: not shown, {self.labelled} labels < {self.min_labels} needed")
        elif math.isnan(self.threshold):
            lines.append(f"risk-coverage: no threshold keeps the residual error at or below {self.target_error:.1%}")
        else:
            lines.append(f"threshold for residual error <= {self.target_error:.1%}: {self.threshold:.3f} (coverage "
                         f"{self.threshold_coverage:.1%}, residual error {self.threshold_error:.1%} of labelled bones)")
        return "\n".join(lines)


def check_settings(target_error: float, min_labels: int) -> None:
    """Refuse a target outside [0, 1] or a label minimum below 1, by name."""
    if not isinstance(target_error, (int, float)) or not 0.0 <= float(target_error) <= 1.0:
        raise BoneHubInputError(f"target error {target_error!r}: use a share between 0 and 1 (e.g. 0.05)")
    if isinstance(min_labels, bool) or not isinstance(min_labels, int) or min_labels < 1:
        raise BoneHubInputError(f"min labels {min_labels!r}: use a whole number of at least 1")


def risk_coverage(labels: pd.DataFrame, all_scores: pd.Series | None = None) -> pd.DataFrame:
    """One row per distinct score of the labelled bones, lowest first (``CURVE_COLUMNS``)."""
    scored = labels[labels["outcome"].isin([CHANGED, CONFIRMED]) & labels["score"].notna()]
    scores = scored["score"].to_numpy(float)
    wrong = (scored["outcome"] == CHANGED).to_numpy()
    every = None if all_scores is None else all_scores.dropna().to_numpy(float)
    rows = []
    for threshold in np.unique(scores):
        kept = scores >= threshold
        rows.append({
            "threshold": float(threshold), "auto_accepted": int(kept.sum()), "errors": int(wrong[kept].sum()),
            "coverage": float(kept.mean()), "residual_error": float(wrong[kept].mean()),
            "coverage_all": math.nan if every is None or not every.size else float((every >= threshold).mean()),
        })
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def summarise(labels: pd.DataFrame, all_scores: pd.Series | None = None, *, target_error: float = DEFAULT_TARGET_ERROR,
              min_labels: int = DEFAULT_MIN_LABELS) -> tuple[FeedbackSummary, pd.DataFrame]:
    """(summary, risk–coverage curve); the curve is empty below ``min_labels`` labelled bones."""
    check_settings(target_error, min_labels)
    missing = labels[labels["outcome"] == UNSEGMENTED]
    scored = labels[labels["outcome"].isin([CHANGED, CONFIRMED]) & labels["score"].notna()]
    review = scored[scored["qc_status"] == REVIEW]
    dice = labels["dice"].dropna().to_numpy(float)
    curve = risk_coverage(labels, all_scores) if len(scored) >= min_labels else pd.DataFrame(columns=CURVE_COLUMNS)
    meeting = curve[curve["residual_error"] <= target_error]
    best = meeting.iloc[0] if len(meeting) else None
    summary = FeedbackSummary(
        labelled=len(scored), review_labelled=len(review), review_changed=int((review["outcome"] == CHANGED).sum()),
        false_alarms=int((review["outcome"] == CONFIRMED).sum()), changed=int((scored["outcome"] == CHANGED).sum()),
        confirmed=int((scored["outcome"] == CONFIRMED).sum()), missing=len(missing), corrections=int(dice.size),
        dice_median=float(np.median(dice)) if dice.size else math.nan, dice_min=float(dice.min()) if dice.size else math.nan,
        target_error=float(target_error), min_labels=min_labels,
        threshold=math.nan if best is None else float(best["threshold"]),
        threshold_coverage=math.nan if best is None else float(best["coverage"]),
        threshold_error=math.nan if best is None else float(best["residual_error"]),
    )
    return summary, curve


def _number(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"
