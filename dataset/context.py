"""What every export format gets: where to write, what was selected, and the interface a format implements.

``dataset.export`` drives an export: it hands each series' final labels
(``dataset.final_labels.SeriesFinal``) to the format's ``add`` inside
``ExportFiles.item()`` (all of the series' files or none), then calls ``finish``
for the files that describe the whole export. A format writes through
``context.files`` only, so reruns rewrite nothing unchanged and stale files go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from dataset.files import ExportFiles
from dataset.final_labels import SeriesFinal
from dataset.selection import ExportSelection
from review.state import ReviewPlace


@dataclass(frozen=True, eq=False)
class ExportContext:
    """One export run: its folder and files, the stored results it reads, the selection and the format's options."""

    to: Path
    files: ExportFiles
    place: ReviewPlace
    selection: ExportSelection
    manifest: pd.DataFrame  # the Stage 1 manifest (sources, versions, where each CT came from, subject columns)
    provenance: pd.DataFrame  # every provenance row of the series in the filters' scope, with their collection
    options: Mapping[str, object]  # the format's own settings from the command line (recorded in the data card)


class ExportFormat(Protocol):
    """A dataset format: one call per exported series, one at the end."""

    def add(self, final: SeriesFinal) -> None:
        """Write one series' files (through ``context.files``); raise to fail only this series."""

    def finish(self, exported: list[str]) -> None:
        """Write the files that describe the whole export; ``exported``: the series whose files are in place, sorted.

        A format keeps what it needs of each series in ``add`` (never the volumes: an export holds thousands).
        """
