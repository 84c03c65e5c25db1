"""The report's "What reviewers taught the QC" section: the QC score against reviewers' verdicts and corrections.

Why: the review threshold was chosen without ground truth; every verdict and
correction is a label that says whether the QC was right to doubt a bone. The
section shows the counts first (so a figure on five labels is never mistaken for
evidence), the precision of ``review``, how much corrections changed the bones,
and, with enough labels, the risk–coverage curve and the threshold meeting the
chosen residual error (``qc.review_feedback``).
"""

from __future__ import annotations

import math
from html import escape

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from qc.report_html import DPI, number, png, table_html
from qc.review_feedback import FeedbackSummary


def review_section(summary: FeedbackSummary, curve: pd.DataFrame) -> str:
    """The HTML section for a summary and its curve (``qc.review_feedback.summarise``)."""
    heading = "<h2>What reviewers taught the QC</h2>\n"
    if not summary.labelled and not summary.missing:
        return heading + "<p>No reviewer verdict or correction yet.</p>"
    rows = [
        ("bones reviewers decided on (with a QC score)", str(summary.labelled)),
        ("changed: corrected or rejected", str(summary.changed)),
        ("accepted as is", str(summary.confirmed)),
        ("QC status review among them", str(summary.review_labelled)),
        ("precision of review (needed a change)", _share(summary.review_changed, summary.review_labelled)),
        ("false alarms (review, accepted as is)", str(summary.false_alarms)),
        ("missing: in the image, no source labelled it", str(summary.missing)),
        ("corrections with a Dice before/after", str(summary.corrections)),
        ("Dice before/after: median", number(summary.dice_median)),
        ("Dice before/after: lowest", number(summary.dice_min)),
    ]
    text = ("<p>Each bone a reviewer decided on is a label: <em>changed</em> (corrected or rejected) or "
            "<em>accepted as is</em>, with the QC score it had when reviewed. Reviewed bones are mostly those QC "
            "doubted, so these figures say how well the score ranks doubted bones, not how many accepted bones are "
            "wrong. Per bone: <code>review_labels.parquet</code>; the curve: <code>risk_coverage.parquet</code>.</p>\n")
    body = heading + text + table_html(("", "count"), rows, numeric={1})
    if not summary.curve_shown:
        return body + (f"\n<p>No risk–coverage curve: {summary.labelled} labelled bones, at least {summary.min_labels} "
                       "needed.</p>")
    if math.isnan(summary.threshold):
        verdict = f"No threshold keeps the residual error at or below {summary.target_error:.1%} on these labels."
    else:
        verdict = (f"Lowest threshold with residual error at or below {summary.target_error:.1%}: "
                   f"<strong>{summary.threshold:.3f}</strong> (auto-accepts {summary.threshold_coverage:.1%} of the "
                   f"labelled bones, of which {summary.threshold_error:.1%} a reviewer changed).")
    caption = ("Risk–coverage on the labelled bones: auto-accepting every bone with score at or above a threshold "
               "covers the share on the x axis and leaves the share on the y axis that a reviewer changed.")
    return (body + f"\n<p>{verdict}</p>\n<figure><img alt=\"risk-coverage curve\" src=\"{png(_curve_figure(curve, summary))}\">"
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _share(part: int, whole: int) -> str:
    return "–" if not whole else f"{part}/{whole} ({part / whole:.0%})"


def _curve_figure(curve: pd.DataFrame, summary: FeedbackSummary) -> Figure:
    figure = Figure(figsize=(6, 4), dpi=DPI)
    axes = figure.subplots()
    axes.step(curve["coverage"], curve["residual_error"], where="post", color="#1f77b4")
    axes.axhline(summary.target_error, color="#d62728", linestyle="--", linewidth=1, label="target residual error")
    if not math.isnan(summary.threshold):
        axes.plot([summary.threshold_coverage], [summary.threshold_error], "o", color="#d62728",
                  label=f"threshold {summary.threshold:.3f}")
    axes.set_xlabel("coverage (share auto-accepted)")
    axes.set_ylabel("residual error (share changed)")
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, max(1e-3, float(curve["residual_error"].max()) * 1.1, summary.target_error * 1.5))
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure
