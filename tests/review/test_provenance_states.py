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


def test_provenance_table_from_the_tables_alone(tmp_path):
    """Two series, one with decisions: heads from the log or QC, every state, no store read."""
    import math

    import pandas as pd

    from qc.results import BoneResult
    from review.provenance import COLUMNS, provenance_table
    from review.state import CORRECTION_COLUMNS

    def result(series: str, bone: str, status: str, segment: int) -> dict:
        nan = math.nan
        score = nan if status in ("absent", "insufficient_sources") else 0.5
        return BoneResult(series, "1.9", bone, "bone", ("a 1",), 1, int(segment > 0), nan, nan, nan, nan, nan, nan, 1.0,
                          nan, score, status, (), "", (nan,), segment).as_row()

    table = pd.DataFrame([result("1.1", "vertebra_L1", "review", 1), result("1.1", "vertebra_T12", "accept", 2),
                          result("1.1", "rib_left_1", "insufficient_sources", 3), result("1.2", "vertebra_L1", "review", 1),
                          result("1.2", "vertebra_L3", "absent", 0), result("1.3", "vertebra_L1", "accept", 1)])
    series = pd.DataFrame([{"series_uid": uid, "study_uid": "1.9", "status": status, "error": "",
                            "consensus_series_uid": f"{uid}.5", "consensus_sop_uid": f"{uid}.5.1" if status == "done" else "",
                            "sr_series_uid": f"{uid}.6", "sr_sop_uid": f"{uid}.6.1"}
                           for uid, status in (("1.1", "done"), ("1.2", "done"), ("1.3", "failed"))])
    log = pd.DataFrame([{c: "" for c in CORRECTION_COLUMNS} | {
        "series_uid": "1.2", "bone": bone, "verdict": verdict, "reviewer": "Ada", "reason": reason, "imported_at": at,
        "seg_series_uid": seg, "seg_sop_uid": seg + ".1", "sr_series_uid": sr, "sr_sop_uid": sr + ".1",
        "added": 0, "removed": 0, "contested": 0, "taken": 0, "score": math.nan, "dice": math.nan}
        for bone, verdict, reason, at, seg, sr in (("vertebra_L1", "corrected", "", "t1", "1.2.7", "1.2.8"),
                                                   ("vertebra_L3", "missing", "seen", "t2", "1.2.7", "1.2.9"))])
    table.to_parquet(tmp_path / "qc_table.parquet")
    series.to_parquet(tmp_path / "qc_series.parquet")
    log.to_parquet(tmp_path / "corrections.parquet")

    out = provenance_table(str(tmp_path))
    assert list(out.columns) == COLUMNS
    got = {(r.series_uid, r.structure): (r.state, r.bonehub_status, r.seg_sop_uid, r.sr_sop_uid) for r in out.itertuples()}
    assert got == {  # 1.3 failed QC: not in the table; the decided series' head is its latest log row
        ("1.1", "vertebra_T12"): ("automatic_accepted", 11, "1.1.5.1", "1.1.6.1"),
        ("1.1", "vertebra_L1"): ("automatic_failed", 12, "1.1.5.1", "1.1.6.1"),
        ("1.1", "rib_left_1"): ("unverified", 10, "1.1.5.1", "1.1.6.1"),
        ("1.2", "vertebra_L1"): ("human_corrected", 23, "1.2.7.1", "1.2.9.1"),
        ("1.2", "vertebra_L3"): ("missing", 4, "1.2.7.1", "1.2.9.1"),
    }
    assert list(out.structure[out.series_uid == "1.1"]) == ["vertebra_T12", "vertebra_L1", "rib_left_1"]  # schema order
    assert out.set_index("structure").loc["vertebra_L3"].reason == "seen"
