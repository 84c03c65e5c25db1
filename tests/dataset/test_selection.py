"""The export selection: states refused by name, the minimum score only for automatic states, series and
collection filters; on a provenance table written out by hand."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from dataset.errors import ExportInputError
from dataset.selection import ExportSelection, select
from labels.errors import BoneHubInputError

A, B = "1.2.3.1", "1.2.3.2"


def provenance() -> pd.DataFrame:
    rows = [(A, "vertebra_L1", "human_corrected", 0.4), (A, "vertebra_T12", "human_accepted", 0.5),
            (A, "rib_left_8", "human_rejected", 0.3), (A, "vertebra_L3", "missing", math.nan),
            (A, "rib_left_7", "automatic_accepted", 0.97), (A, "rib_left_9", "automatic_failed", 0.7),
            (B, "vertebra_L1", "automatic_accepted", 0.85), (B, "sacrum", "absent", math.nan)]
    frame = pd.DataFrame(rows, columns=["series_uid", "structure", "state", "score"])
    frame["collection"] = frame["series_uid"].map({A: "nlst", B: "BoneHub-Dataset_001"})
    return frame


def chosen(selection: ExportSelection) -> set[tuple[str, str]]:
    return set(zip(*select(provenance(), selection)[["series_uid", "structure"]].T.values))


def test_default_trusts_accepted_and_corrected_bones_only():
    assert chosen(ExportSelection()) == {(A, "vertebra_L1"), (A, "vertebra_T12"), (A, "rib_left_7"), (B, "vertebra_L1")}


def test_min_score_applies_to_automatic_states_only():
    assert chosen(ExportSelection(min_score=0.9)) == {(A, "vertebra_L1"), (A, "vertebra_T12"), (A, "rib_left_7")}
    failed = ExportSelection(states=frozenset({"automatic_failed", "missing"}), min_score=0.6)
    assert chosen(failed) == {(A, "rib_left_9"), (A, "vertebra_L3")}  # missing: a row without voxels, noted


def test_series_and_collection_filters():
    assert chosen(ExportSelection(series_uids=frozenset({B}))) == {(B, "vertebra_L1")}
    assert chosen(ExportSelection(collections=frozenset({"nlst"}))) == {(A, "vertebra_L1"), (A, "vertebra_T12"),
                                                                       (A, "rib_left_7")}
    with pytest.raises(ExportInputError, match="collection column"):
        select(provenance().drop(columns="collection"), ExportSelection(collections=frozenset({"nlst"})))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"states": frozenset({"human_accepted", "accepted_by_qc"})}, "unknown provenance state(s) 'accepted_by_qc'"),
    ({"states": frozenset()}, "at least one provenance state"),
    ({"min_score": 1.5}, "between 0 and 1"),
    ({"series_uids": frozenset({"1.2.x"})}, "series UID"),
    ({"collections": frozenset({" "})}, "empty collection"),
])
def test_bad_selections_are_refused_by_name(kwargs, message):
    with pytest.raises(BoneHubInputError, match=re.escape(message)):
        ExportSelection(**kwargs)
