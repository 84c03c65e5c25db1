"""HTML and picture pieces shared by the sections of the QC report (``qc.report``, ``qc.report_comparison``).

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, so no global
pyplot state or backend is touched inside a worker; they go inline as base64 PNG.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Collection, Sequence
from html import escape

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def number(value: object, digits: int = 3) -> str:
    """A number for a table cell; NaN as a dash."""
    value = float(value)  # type: ignore[arg-type]
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def table_html(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Collection[int] = ()) -> str:
    """An HTML table; cells are given already escaped (some carry markup)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "\n".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def png(figure: Figure) -> str:
    """The figure as an inline <img> source."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
