"""Which labels a dataset export trusts: provenance states, a minimum QC score, series and collection filters.

``review.provenance.provenance_table`` gives every (series, structure) one state;
an export takes only the rows an ``ExportSelection`` trusts and leaves every other
bone out (DICOM, BoneHub) or marks it as ignored (nnU-Net). The minimum score
applies to the automatic states only: a reviewer's verdict is what a human said
about a bone QC doubted, so QC's score no longer decides it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from dataset.errors import ExportInputError
from dicom_io.uids import validate_uid
from review.provenance import ProvenanceState

DEFAULT_STATES = frozenset({ProvenanceState.AUTOMATIC_ACCEPTED.value, ProvenanceState.HUMAN_ACCEPTED.value,
                            ProvenanceState.HUMAN_CORRECTED.value})
STATES = tuple(state.value for state in ProvenanceState)
# States only QC decided; the minimum score applies to these.
AUTOMATIC_STATES = frozenset({ProvenanceState.AUTOMATIC_ACCEPTED.value, ProvenanceState.AUTOMATIC_FAILED.value,
                              ProvenanceState.UNVERIFIED.value})
COLLECTION = "collection"  # the column ``select`` filters on when collections are given


@dataclass(frozen=True)
class ExportSelection:
    """The states an export trusts, and optional filters; validated on creation."""

    states: frozenset[str] = DEFAULT_STATES
    min_score: float | None = None
    series_uids: frozenset[str] | None = None
    collections: frozenset[str] | None = None

    def __post_init__(self) -> None:
        states = frozenset(str(s) for s in self.states)
        if unknown := sorted(states - set(STATES)):
            raise ExportInputError(f"unknown provenance state(s) {', '.join(map(repr, unknown))}: "
                                   f"choose from {', '.join(STATES)}")
        if not states:
            raise ExportInputError("an export needs at least one provenance state to include")
        object.__setattr__(self, "states", states)
        if self.min_score is not None and not 0 <= float(self.min_score) <= 1:
            raise ExportInputError(f"--min-score {self.min_score}: a QC score is between 0 and 1")
        if self.series_uids is not None:
            object.__setattr__(self, "series_uids", _non_empty(
                (validate_uid(uid, "series UID of the export selection") for uid in self.series_uids), "series UID"))
        if self.collections is not None:
            object.__setattr__(self, "collections", _non_empty(self.collections, "collection"))

    def settings(self) -> dict[str, object]:
        """The selection as plain JSON values, sorted (the data card records it)."""
        return {"states": sorted(self.states), "min_score": self.min_score,
                "series_uids": sorted(self.series_uids) if self.series_uids is not None else None,
                "collections": sorted(self.collections) if self.collections is not None else None}


def select(provenance: pd.DataFrame, selection: ExportSelection) -> pd.DataFrame:
    """The rows of ``provenance`` (``review.provenance.COLUMNS``) the selection trusts, in their order.

    Selected bones without voxels (``missing``, ``absent``) stay rows: the export notes them.
    Filtering by collection needs a ``collection`` column (``dataset.inputs``).
    """
    keep = provenance["state"].isin(selection.states)
    if selection.min_score is not None:
        automatic = provenance["state"].isin(AUTOMATIC_STATES)
        keep &= ~automatic | (provenance["score"].astype(float) >= selection.min_score)
    if selection.series_uids is not None:
        keep &= provenance["series_uid"].isin(selection.series_uids)
    if selection.collections is not None:
        if COLLECTION not in provenance:
            raise ExportInputError("a selection by collection needs the provenance table with its collection column")
        keep &= provenance[COLLECTION].isin(selection.collections)
    return provenance[keep]


def _non_empty(values: Iterable[str], what: str) -> frozenset[str]:
    chosen = frozenset(str(v).strip() for v in values)
    if not chosen or "" in chosen:
        raise ExportInputError(f"an empty {what} in the export selection")
    return chosen
