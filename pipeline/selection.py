"""The series a Stage 1 job covers, as data the job reads: a JSON-lines file, not part of the job graph.

A Beam ``Create`` of the series list puts the whole list into the pipeline itself; for a collection of
200,000 series that made a job graph Dataflow refuses ("job graph too large"). The list is written once
(named by its content, so a rerun of the same selection reuses it) where the workers read it: the staging
area (a folder, or ``gs://`` on Dataflow); the graph only names the file, whatever the selection's size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Sequence

from results import blobs
from results.series_ref import SeriesRef


def selection_line(ref: SeriesRef) -> str:
    return json.dumps({**dataclasses.asdict(ref), "kind": str(ref.kind)}, sort_keys=True)


def series_from_line(line: str) -> SeriesRef:
    return SeriesRef(**json.loads(line))


def write_selection(series: Sequence[SeriesRef], root: str | None = None) -> str:
    """Write the selection under ``root`` (default: a new local temp folder, for a pipeline only built); its URI."""
    text = "".join(selection_line(ref) + "\n" for ref in series)
    name = f"selection-{hashlib.sha256(text.encode()).hexdigest()[:16]}.jsonl"
    uri = blobs.join(root or tempfile.mkdtemp(prefix="bonehub-selection-"), "selection", name)
    if not blobs.exists(uri):
        blobs.write_bytes(uri, text.encode(), content_type="application/jsonl")
    return uri
