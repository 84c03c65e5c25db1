"""Every provenance state and its BoneHub status code, from QC's status and the verdicts in order (no store)."""

from __future__ import annotations

import pytest

from labels.bonehub_status import BoneHubStatus
from labels.errors import BoneHubInputError
from review.provenance import STATE_STATUS, ProvenanceState, bone_state


@pytest.mark.parametrize(("qc_status", "has_mask", "verdicts", "state", "code"), [
    ("accept", True, [], "automatic_accepted", 11),  # automatic check passed, never "expert accepted"
    ("review", True, [], "automatic_failed", 12),
    ("review", True, ["accepted"], "human_accepted", 13),
    ("review", True, ["corrected"], "human_corrected", 23),
    ("review", True, ["corrected", "accepted"], "human_corrected", 23),  # accepting a correction keeps it human-edited
    ("review", True, ["accepted", "corrected"], "human_corrected", 23),  # latest wins
    ("review", True, ["rejected"], "human_rejected", 14),
    ("review", True, ["corrected", "rejected"], "human_rejected", 24),
    ("review", True, ["rejected", "accepted"], "human_accepted", 13),
    ("accept", True, ["rejected"], "human_rejected", 14),  # QC rerun since the verdict: the reviewer's word stands
    ("absent", False, ["missing"], "missing", 4),  # present in the image, not yet segmented
    ("insufficient_sources", False, ["missing"], "missing", 4),
    ("absent", False, [], "absent", 0),
    ("insufficient_sources", False, [], "absent", 0),
    ("insufficient_sources", True, [], "unverified", 10),  # one segmentation: nothing to compare it with
])
def test_each_history_gives_one_state_and_code(qc_status, has_mask, verdicts, state, code):
    found, status = bone_state(qc_status, has_mask, verdicts)
    assert (found, status.code) == (state, code)
    assert status == BoneHubStatus.parse(code)


def test_every_state_has_a_valid_status_and_unknown_words_are_refused():
    assert set(STATE_STATUS) == set(ProvenanceState)
    assert {s.code for s in STATE_STATUS.values()} == {11, 12, 13, 23, 14, 4, 10, 0}
    with pytest.raises(BoneHubInputError, match="'acepted' is not a valid Verdict"):
        bone_state("review", True, ["acepted"])
    with pytest.raises(BoneHubInputError, match="'fine' is not a valid QcStatus"):
        bone_state("fine", True, [])
