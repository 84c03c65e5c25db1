"""The report's "Model comparison" section: each source's picture over every series of the run.

Why: a reviewer of a whole collection wants to know at a glance which model misses
structures the others see, agrees least, is named the outlier most, and fails which rules
on its own, and where in the skeleton. The section shows ``qc.comparison``'s overall row
per source as a table and, per skeletal region, a dot plot of the sources side by side.
Everything is aggregated, so the section has the same size for 10 series as for 100,000.
"""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from labels.schema import default_schema
from qc.comparison import OVERALL, REGION, Aggregates, summary
from qc.report_html import DPI, number, png, table_html
from qc.score import RULES

_HEADER = ("source", "series", "results", "sees what others see", "sees alone", "agreement median",
           "agreement 10th percentile", "named outlier", "rules failed on its own")


def comparison_section(parts: Aggregates) -> str:
    """The HTML section from the aggregates of a QC table (``qc.comparison.aggregate``, or shards' ``combine``)."""
    overall = summary(parts, OVERALL)
    heading = "<h2>Model comparison</h2>\n"
    if overall.empty:
        return heading + "<p>No structure was compared by two or more segmentations.</p>"
    by_region = summary(parts, REGION)
    intro = (
        "<p>Each source with all its augmentations pooled, over every series of this run where it was compared with "
        "at least one other segmentation (structures nobody found are left out). <em>Sees what others see</em>: share "
        "of its masks that have the structure where another segmentation has it; <em>sees alone</em>: share of its "
        "non-empty masks where no other segmentation has the structure; <em>agreement</em>: with the leave-one-out "
        "majority of the others, as in the score; <em>named outlier</em> and <em>rules failed on its own</em>: share "
        "of its results (a rule the consensus fails is no single model's failure and is not counted). "
        "Per structure: <code>model_comparison.parquet</code> beside this report.</p>\n"
    )
    table_rows = [
        (
            escape(str(row.source)),
            str(int(row.series)),
            str(int(row.results)),
            _percent(row.present_where_others_see),
            _percent(row.present_alone),
            number(row.agreement_median),
            number(row.agreement_p10),
            _percent(row.outlier_named),
            _rules_cell(row),
        )
        for row in overall.sort_values("source").itertuples(index=False)
    ]
    figure = _region_figure(by_region)
    caption = ("Per skeletal region (all its structures pooled) and source: agreement median (dot) down to its 10th "
               "percentile (line), share of masks that see what another segmentation sees, share of results where "
               "QC names the source the outlier.")
    return (heading + intro + table_html(_HEADER, table_rows, numeric=set(range(1, 8)))
            + f'\n<figure><img alt="model comparison per region" src="{png(figure)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _percent(value: float) -> str:
    return "–" if np.isnan(value) else f"{100 * value:.1f} %"


def _rules_cell(row: tuple) -> str:
    failed = sorted(((getattr(row, f"fails_{rule}"), rule) for rule in RULES if getattr(row, f"fails_{rule}") > 0),
                    reverse=True)
    return "<br>".join(f"{escape(rule)} {_percent(share)}" for share, rule in failed) or "–"


def _region_figure(by_region: pd.DataFrame) -> Figure:
    """Three dot plots side by side: regions down, sources as coloured dots within each region."""
    schema = default_schema()
    regions = sorted(by_region["structure"].unique(), key=lambda name: schema[name].id)
    sources = sorted(by_region["source"].unique())
    cmap = colormaps["tab10" if len(sources) <= 10 else "tab20"]
    colours = {source: cmap(i % cmap.N) for i, source in enumerate(sources)}
    step = 0.8 / len(sources)
    figure = Figure(figsize=(12.0, 1.6 + len(regions) * (0.3 + 0.12 * len(sources)) + 0.2 * len(sources)), dpi=DPI,
                    layout="constrained")
    axes = figure.subplots(1, 3, sharey=True)
    for row in by_region.itertuples(index=False):
        y = regions.index(row.structure) + (sources.index(row.source) - (len(sources) - 1) / 2) * step
        colour = colours[row.source]
        axes[0].plot([row.agreement_p10, row.agreement_median], [y, y], color=colour, linewidth=2)
        axes[0].plot([row.agreement_median], [y], "o", color=colour)
        axes[1].plot([row.present_where_others_see], [y], "o", color=colour)
        axes[2].plot([row.outlier_named], [y], "o", color=colour)
    titles = ("agreement (median, 10th percentile)", "sees what others see", "named outlier")
    for ax, title in zip(axes, titles):  # limits follow the data: the differences between sources are what matters
        ax.set_title(title, fontsize=10)
        ax.margins(x=0.08)
        ax.grid(axis="x", color="#dddddd")
    for ax in axes[1:]:
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes[0].set_yticks(range(len(regions)), [schema[name].display_name for name in regions], fontsize=9)
    axes[0].invert_yaxis()
    handles = [Line2D([], [], marker="o", color=colours[s], label=s) for s in sources]
    legend = figure.legend(handles=handles, loc="outside lower center", ncols=min(len(sources), 3), fontsize=8)
    for text in legend.get_texts():
        text.set_parse_math(False)  # source names are data: a '$' must not start mathtext
    return figure
