"""The Slicer module's verdict buttons (Accept as is, Reject, Missing) as pure logic, on a tiny export (no Slicer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.review.test_slicer_logic import BONE, OTHER_SERIES, SERIES, _folder, _mask, _partial, export, logic  # noqa: F401


def test_accept_as_is_and_reject_write_a_verdict_and_mark_the_item(export: Path) -> None:
    folder = _folder(export)
    item = logic.read_item(folder)
    path = logic.write_verdict(folder, item, logic.ACCEPTED, " Dr. Ada ")
    record = json.loads(path.read_text())
    assert path == folder / "verdict.json"
    assert {k: record[k] for k in ("format", "item_id", "series_uid", "bone", "verdict", "reviewer", "reason")} == {
        "format": "bonehub-verdict/1", "item_id": f"{SERIES}/{BONE}", "series_uid": SERIES, "bone": BONE,
        "verdict": "accepted", "reviewer": "Dr. Ada", "reason": ""}
    assert logic.item_state(folder) == "accepted"
    _, statuses = logic.list_items(export)
    assert logic.next_item_id(statuses, None, set()) == f"{OTHER_SERIES}/{BONE}"  # a decided item is not offered again

    logic.write_verdict(folder, item, logic.REJECTED, "Ada", "  fused\nwith T11 ")
    assert json.loads(path.read_text())["reason"] == "fused with T11" and logic.item_state(folder) == "rejected"


def test_the_last_decision_in_a_folder_counts(export: Path) -> None:
    folder = _folder(export)
    item = logic.read_item(folder)
    logic.finalize_correction(folder, item, _partial(folder, _mask()), "Ada", "manual")
    assert logic.item_state(folder) == "corrected"
    logic.write_verdict(folder, item, logic.REJECTED, "Ada", "the correction is worse")
    assert not (folder / "correction.json").exists() and (folder / "corrected.nrrd").exists()  # the mask stays
    assert logic.item_state(folder) == "rejected"
    logic.finalize_correction(folder, item, _partial(folder, _mask()), "Ada", "manual")
    assert not (folder / "verdict.json").exists() and logic.item_state(folder) == "corrected"


@pytest.mark.parametrize(("verdict", "reviewer", "reason", "message"), [
    ("rejected", "Ada", "  ", "a rejection needs a reason"),
    ("accepted", " ", "", "enter the reviewer's name before Accept as is"),
    ("rejected", "", "bad", "enter the reviewer's name before Reject"),
    ("accepted", "Ada\nBob", "", "one line of printable text"),
    ("missing", "Ada", "", "not one of 'accepted', 'rejected' for an exported item"),
])
def test_a_bad_verdict_writes_nothing(export: Path, verdict, reviewer, reason, message) -> None:
    folder = _folder(export)
    (folder / "correction.json").write_text("{}")
    with pytest.raises(logic.ReviewError, match=message):
        logic.write_verdict(folder, logic.read_item(folder), verdict, reviewer, reason)
    assert not (folder / "verdict.json").exists() and (folder / "correction.json").exists()


def test_missing_writes_a_folder_for_a_bone_no_source_labelled(export: Path) -> None:
    path = logic.write_missing(export, SERIES, " vertebra_L3 ", "Ada", "visible below L2")
    assert path == export / SERIES / "vertebra_L3" / "verdict.json"
    record = json.loads(path.read_text())
    assert (record["verdict"], record["item_id"], record["reason"]) == ("missing", f"{SERIES}/vertebra_L3", "visible below L2")
    assert logic.verdict_state(path.parent) == "missing"
    with pytest.raises(logic.ReviewError, match="exported with a mask: correct it or reject it instead"):
        logic.write_missing(export, SERIES, BONE, "Ada")
    for name in ("../vertebra_L3", "vertebra L3", ""):
        with pytest.raises(logic.ReviewError, match="is not a bone name"):
            logic.write_missing(export, SERIES, name, "Ada")
    with pytest.raises(logic.ReviewError, match="is not a series UID"):
        logic.write_missing(export, "../..", "vertebra_L3", "Ada")
    (path.parent / "verdict.json").write_text("{not json")
    assert logic.verdict_state(path.parent) is None  # unreadable: no verdict
