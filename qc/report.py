"""The human-readable report of a QC run: one self-contained HTML file.

Everything, pictures included (base64 PNG), is inline, so the file opens from a
bucket or a mail without a server. Series are named by UID only: patient names
and IDs are not in the QC table, and this module never looks them up. Figures
are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, so no global
pyplot state or backend is touched inside a worker. The report stays readable
and quick for a whole collection (100,000 series: ``bench/report_scale.py``):
sections over series aggregate, and those that show single series show a capped
number of them, saying so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_hex, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from labels.schema import default_schema
from qc.comparison import NEEDED as COMPARISON_NEEDED
from qc.comparison import Aggregates, aggregate
from qc.report_comparison import comparison_section
from qc.report_html import DPI, number, png, table_html
from qc.report_review import review_section
from qc.results import ABSENT, INSUFFICIENT, QC_STATUSES, REVIEW, STATUSES
from qc.review_feedback import DEFAULT_MIN_LABELS, DEFAULT_TARGET_ERROR, summarise
from qc.snapshot import Snapshot

WORST_ROWS = 20
MAX_HEATMAP_SERIES = 60  # more columns are unreadable: the heatmap then shows the series with the lowest mean score
MAX_SERIES_ROWS = 100  # more series: the series table lists only those the other sections name
MAX_SNAPSHOTS = 50  # more: the snapshots of the lowest scores
# the QC table columns the report reads besides the model comparison's (``COMPARISON_NEEDED``): a whole collection's
# QC job reads only these, and gives the comparison as aggregates kept per shard
COLUMNS = ("series_uid", "study_uid", "bone", "status", "score", "flags", "outlier_source", "dice_mean", "hd95_mm")
BONE_WINDOW = (400.0, 1800.0)  # level, width in HU
SCORE_CMAP = "RdYlGn"
NO_SCORE_COLOURS = {  # heatmap cells without a score, each kind visibly different
    ABSENT: "#e6e6e6",
    INSUFFICIENT: "#7a7a7a",
    "other": "#b3b3b3",  # a NaN score under any other status
    "not compared": "#ffffff",  # the bone has no row for that series
}
_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.uid { font-family: monospace; font-size: 0.85em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: middle; }
.outlier { font-weight: bold; }
figure { margin: 1em 0 2em; }
pre { background: #f7f7f7; padding: 0.8em; white-space: pre-wrap; }
"""


def write_report(
    table: pd.DataFrame,
    snapshots: Sequence[Snapshot],
    path: Path,
    *,
    title: str = "BoneHub QC report",
    settings_text: str = "",
    review_labels: pd.DataFrame | None = None,
    target_error: float = DEFAULT_TARGET_ERROR,
    min_labels: int = DEFAULT_MIN_LABELS,
    comparison: Aggregates | None = None,
) -> Path:
    """Write the QC report of ``table`` (columns ``COLUMNS``) with one figure per snapshot.

    ``comparison``: the table's model comparison aggregates (``qc.comparison.aggregate``, or the sum of its
    shards'); without them the table needs the comparison's columns too, and they are computed from it.
    With ``review_labels`` (``qc.review_feedback.LABEL_COLUMNS``, from ``bonehub review feedback``) the
    report ends with what the reviewers' verdicts and corrections say about the score.
    """
    _check_table(table, COLUMNS if comparison is not None else (*COLUMNS, *COMPARISON_NEEDED))
    labels = _series_labels(table)
    heatmap, worst, shown = _heatmap_series(table, labels), _worst_rows(table), _chosen_snapshots(snapshots)
    named = {*heatmap, *worst["series_uid"], *(s.series_uid for s in shown)}
    sections = [
        f"<h1>{escape(title)}</h1>",
        _summary(table),
        f"<h2>Settings</h2>\n<pre>{escape(settings_text)}</pre>" if settings_text else "",
        _heatmap_section(table, labels, heatmap),
        _bones_section(table),
        comparison_section(aggregate(table) if comparison is None else comparison),
        _series_section(table, labels, named),
        _worst_section(worst, labels),
        _snapshots_section(shown, labels, len(snapshots)),
        "" if review_labels is None else review_section(*summarise(review_labels, table["score"], target_error=target_error,
                                                                   min_labels=min_labels)),
    ]
    return _write_document(title, sections, path)


def write_review_report(review_labels: pd.DataFrame, table: pd.DataFrame, path: Path, *,
                        target_error: float = DEFAULT_TARGET_ERROR, min_labels: int = DEFAULT_MIN_LABELS,
                        title: str = "BoneHub QC: what reviewers taught it") -> Path:
    """The review section alone as a page (``bonehub review feedback``), scores of ``table`` for scale."""
    summary, curve = summarise(review_labels, table["score"], target_error=target_error, min_labels=min_labels)
    return _write_document(title, [f"<h1>{escape(title)}</h1>", review_section(summary, curve)], path)


def _write_document(title: str, sections: Sequence[str], path: Path) -> Path:
    body = "\n".join(s for s in sections if s)
    document = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


def _check_table(table: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in table.columns]
    if missing:
        raise ValueError(f"QC table lacks columns {missing}")
    unknown = sorted(set(table["status"]) - set(STATUSES))
    if unknown:
        raise ValueError(f"QC table has unknown statuses {unknown}; allowed: {STATUSES}")
    twice = table[table.duplicated(["series_uid", "bone"])]
    if not twice.empty:
        first = twice.iloc[0]
        raise ValueError(f"QC table has more than one row for bone {first['bone']!r} of series {first['series_uid']}")
    for bone in table["bone"].unique():
        default_schema()[bone]  # an unknown name fails here, naming it


def _series_labels(table: pd.DataFrame) -> dict[str, str]:
    """Short labels S1, S2, ... in order of first appearance: full UIDs do not fit on a heatmap axis."""
    return {uid: f"S{i}" for i, uid in enumerate(pd.unique(table["series_uid"]), start=1)}


def _bone_order(bones: Sequence[str]) -> list[str]:
    schema = default_schema()
    return sorted(bones, key=lambda name: schema[name].id)


def _items(value: object) -> list[str]:
    """The parts of a ';'-joined table cell."""
    text = _text(value)
    return text.split(";") if text else []


def _text(value: object) -> str:
    """A text cell; an empty one may come back from parquet as None/NaN."""
    return value if isinstance(value, str) else ""


def _summary(table: pd.DataFrame) -> str:
    n = len(table)
    counts = table["status"].value_counts()
    flagged = int(table["flags"].fillna("").ne("").sum())
    share = f"{100 * flagged / n:.1f} %" if n else "–"
    rows = [
        ("Series", str(table["series_uid"].nunique())),
        ("Bones (distinct structures)", str(table["bone"].nunique())),
        ("Results (series × bone)", str(n)),
        *((f"Status {status}", str(int(counts.get(status, 0)))) for status in QC_STATUSES),
        ("Flagged by at least one rule", f"{flagged} ({share})"),
    ]
    return "<h2>Summary</h2>\n" + table_html(("", "count"), [(escape(k), v) for k, v in rows], numeric={1})


def _heatmap_series(table: pd.DataFrame, labels: dict[str, str]) -> list[str]:
    """The series the heatmap shows: all, or the ``MAX_HEATMAP_SERIES`` with the lowest mean score (label order)."""
    if len(labels) <= MAX_HEATMAP_SERIES:
        return list(labels)
    worst = set(table.groupby("series_uid")["score"].mean().sort_values(na_position="last").index[:MAX_HEATMAP_SERIES])
    return [uid for uid in labels if uid in worst]


def _heatmap_section(table: pd.DataFrame, labels: dict[str, str], series: list[str]) -> str:
    if table.empty:
        return "<h2>Scores</h2>\n<p>No results.</p>"
    note = f" Showing the {len(series)} of {len(labels)} series with the lowest mean score." if len(series) < len(labels) else ""
    bones = _bone_order(list(table["bone"].unique()))
    shown = table[table["series_uid"].isin(series)]
    scores = shown.pivot(index="bone", columns="series_uid", values="score").reindex(index=bones, columns=series)
    statuses = shown.pivot(index="bone", columns="series_uid", values="status").reindex(index=bones, columns=series)
    figure = _heatmap_figure(scores, statuses, [labels[uid] for uid in series])
    return (
        "<h2>Scores</h2>\n"
        f'<figure><img alt="QC score per bone and series" src="{png(figure)}">'
        f"<figcaption>QC score per bone (rows, schema order) and series (columns, see the series table).{escape(note)}"
        "</figcaption></figure>"
    )


def _heatmap_figure(scores: pd.DataFrame, statuses: pd.DataFrame, column_labels: list[str]) -> Figure:
    cmap, norm = colormaps[SCORE_CMAP], Normalize(0.0, 1.0)
    values = scores.to_numpy(dtype=float)
    rgba = cmap(norm(np.nan_to_num(values, nan=0.0)))
    for (i, j), status in np.ndenumerate(statuses.to_numpy(dtype=object)):
        if math.isnan(values[i, j]):
            rgba[i, j] = to_rgba(NO_SCORE_COLOURS[_no_score_kind(status)])
    n_bones, n_series = values.shape
    figure = Figure(figsize=(min(3.5 + 0.3 * n_series, 22.0), 1.8 + 0.2 * n_bones), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(rgba, aspect="auto", interpolation="nearest")
    review_rows, review_cols = np.nonzero(statuses.to_numpy(dtype=object) == REVIEW)
    axes.scatter(review_cols, review_rows, marker="x", color="black", s=25, linewidths=1.2)
    schema = default_schema()
    axes.set_yticks(range(n_bones), [schema[name].display_name for name in scores.index], fontsize=8)
    axes.set_xticks(range(n_series), column_labels, fontsize=8, rotation=90 if n_series > 12 else 0)
    axes.set_xlabel("series")
    figure.colorbar(ScalarMappable(norm, cmap), ax=axes, label="QC score")
    legend = [Line2D([], [], marker="x", color="black", linestyle="", label=f"status {REVIEW}")]
    legend += [Patch(facecolor=c, edgecolor="#444444", label=f"no score: {kind}") for kind, c in NO_SCORE_COLOURS.items()]
    figure.legend(handles=legend, loc="outside lower center", ncols=1, fontsize=8)
    return figure


def _no_score_kind(status: object) -> str:
    """Which grey a cell without a score gets; a missing status means the bone has no row for that series."""
    if not isinstance(status, str):
        return "not compared"
    return status if status in NO_SCORE_COLOURS else "other"


def _bones_section(table: pd.DataFrame) -> str:
    schema = default_schema()
    by_bone = table.groupby("bone")
    sizes, medians, counts = by_bone.size(), by_bone["score"].median(), table.groupby(["bone", "status"]).size()
    rows = [
        (
            escape(schema[bone].display_name),
            f'<span class="uid">{escape(bone)}</span>',
            str(int(sizes[bone])),
            *(str(int(counts.get((bone, status), 0))) for status in QC_STATUSES),
            number(medians[bone]),
        )
        for bone in _bone_order(list(sizes.index))
    ]
    header = ("bone", "schema name", "series", *QC_STATUSES, "median score")
    return "<h2>Bones</h2>\n" + table_html(header, rows, numeric=set(range(2, len(header))))


def _series_section(table: pd.DataFrame, labels: dict[str, str], named: set[str]) -> str:
    """Every series, or past ``MAX_SERIES_ROWS`` those the other sections name (their S-labels need a row here)."""
    shown = list(labels) if len(labels) <= MAX_SERIES_ROWS else [uid for uid in labels if uid in named]
    note = "" if len(shown) == len(labels) else (
        f"<p>Showing the {len(shown)} of {len(labels)} series that the score heatmap, the lowest scores and the "
        "snapshots name.</p>\n")
    by_series = table.groupby("series_uid", sort=False)
    study = table.drop_duplicates("series_uid").set_index("series_uid")["study_uid"]
    bones, lowest = by_series.size(), by_series["score"].min()
    review = (table["status"] == REVIEW).groupby(table["series_uid"], sort=False).sum()
    rows = [
        (
            escape(labels[uid]),
            f'<span class="uid">{escape(uid)}</span>',
            f'<span class="uid">{escape(str(study[uid]))}</span>',
            str(int(bones[uid])),
            str(int(review[uid])),
            number(lowest[uid]),
        )
        for uid in shown
    ]
    header = ("", "series UID", "study UID", "bones", "review", "lowest score")
    return "<h2>Series</h2>\n" + note + table_html(header, rows, numeric={3, 4, 5})


def _worst_rows(table: pd.DataFrame) -> pd.DataFrame:
    scores = table["score"].to_numpy(dtype=float)
    order = np.argsort(scores, kind="stable")  # NaN last; sorting the scores alone, not the whole table
    return table.iloc[order[~np.isnan(scores[order])][:WORST_ROWS]]


def _worst_section(scored: pd.DataFrame, labels: dict[str, str]) -> str:
    if scored.empty:
        return "<h2>Lowest scores</h2>\n<p>No scored results.</p>"
    schema = default_schema()
    rows = [
        (
            escape(labels[row.series_uid]),
            escape(schema[row.bone].display_name),
            escape(row.status),
            number(row.score),
            number(row.dice_mean),
            number(row.hd95_mm, 1),
            "<br>".join(escape(flag) for flag in _items(row.flags)),
            escape(_text(row.outlier_source)),
        )
        for row in scored.itertuples(index=False)
    ]
    header = ("series", "bone", "status", "score", "mean Dice", "HD95 mm", "flags", "outlier source")
    return f"<h2>Lowest scores (up to {WORST_ROWS})</h2>\n" + table_html(header, rows, numeric={3, 4, 5})


def _chosen_snapshots(snapshots: Sequence[Snapshot]) -> list[Snapshot]:
    """All snapshots, or past ``MAX_SNAPSHOTS`` those of the lowest scores (in the order given)."""
    if len(snapshots) <= MAX_SNAPSHOTS:
        return list(snapshots)
    lowest = sorted(range(len(snapshots)), key=lambda i: (math.isnan(snapshots[i].score), snapshots[i].score))
    keep = set(lowest[:MAX_SNAPSHOTS])
    return [s for i, s in enumerate(snapshots) if i in keep]


def _snapshots_section(snapshots: Sequence[Snapshot], labels: dict[str, str], total: int) -> str:
    if not snapshots:
        return ""
    note = f"<p>Showing the {len(snapshots)} of {total} snapshots with the lowest scores.</p>\n" if total > len(snapshots) else ""
    return "<h2>Snapshots</h2>\n" + note + "\n".join(_snapshot_html(s, labels.get(s.series_uid, "")) for s in snapshots)


def _member_colours(names: Sequence[str]) -> dict[str, str]:
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: to_hex(cmap(i % cmap.N)) for i, name in enumerate(names)}


def _snapshot_html(snapshot: Snapshot, series_label: str) -> str:
    colours = _member_colours(list(snapshot.masks))
    members = "".join(_member_item(name, colour, snapshot) for name, colour in colours.items())
    bone = default_schema()[snapshot.bone].display_name
    heading = f"{bone} — {series_label}" if series_label else bone
    caption = (
        f'Series <span class="uid">{escape(snapshot.series_uid)}</span>, status {escape(snapshot.status)}, '
        f"score {number(snapshot.score)}; {escape(snapshot.slice_axis)} slice {snapshot.slice_index}, "
        f"crop from row {snapshot.crop_origin[0]}, column {snapshot.crop_origin[1]}; "
        f"window level {BONE_WINDOW[0]:g} width {BONE_WINDOW[1]:g} HU."
    )
    return (
        f"<h3>{escape(heading)}</h3>\n"
        f'<figure><img alt="{escape(bone)} snapshot" src="{png(_snapshot_figure(snapshot, colours))}">'
        f"<figcaption>{caption}<ul>{members}</ul></figcaption></figure>"
    )


def _member_item(name: str, colour: str, snapshot: Snapshot) -> str:
    """One legend line in HTML text, so member names are searchable and readable without the picture."""
    outlier = name == snapshot.outlier_source
    notes = (" (outlier)" if outlier else "") + ("" if snapshot.masks[name].any() else " (empty on this slice)")
    attribute = ' class="outlier"' if outlier else ""
    return f'<li{attribute}><span class="swatch" style="background:{colour}"></span>{escape(name + notes)}</li>'


def _snapshot_figure(snapshot: Snapshot, colours: dict[str, str]) -> Figure:
    """CT crop in the bone window, in mm so the pixel aspect is true, with one outline per member."""
    row_mm, col_mm = snapshot.pixel_spacing
    height, width = snapshot.ct.shape
    inch_per_mm = 5.0 / max(height * row_mm, width * col_mm)  # the longer side of the image is 5 inches
    axes_labels, legend = 0.8, 0.4 + 0.2 * len(colours)  # inches around the image
    figsize = (max(width * col_mm * inch_per_mm + axes_labels, 3.5), height * row_mm * inch_per_mm + axes_labels + legend)
    figure = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    level, window = BONE_WINDOW
    axes.imshow(
        snapshot.ct, cmap="gray", vmin=level - window / 2, vmax=level + window / 2,
        extent=(0, width * col_mm, height * row_mm, 0), interpolation="nearest",
    )  # fmt: skip
    x, y = (np.arange(width) + 0.5) * col_mm, (np.arange(height) + 0.5) * row_mm
    handles = []
    for name, colour in colours.items():
        mask, outlier = snapshot.masks[name], name == snapshot.outlier_source
        line_width = 2.4 if outlier else 1.2
        if mask.any() and not mask.all():
            axes.contour(x, y, mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=line_width)
        handles.append(Line2D([], [], color=colour, linewidth=line_width, label=name + (" (outlier)" if outlier else "")))
    axes.set(xlabel="mm", ylabel="mm")
    legend = figure.legend(handles=handles, loc="outside lower center", ncols=1, fontsize=8)
    for text in legend.get_texts():
        text.set_parse_math(False)  # member names are data: a '$' must not start mathtext
    return figure
