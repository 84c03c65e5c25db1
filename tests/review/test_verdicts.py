"""Verdicts besides corrections on the real sample: QC → worklist → one correction, one accept as is, one reject,
one missing → every bone's provenance state and BoneHub status, the revised SR chain, and the feedback tables.

The expected state of every structure is written out from the QC table and the four decisions, so a bone
landing in any other state fails. Repeats are no-ops and stale items are refused, with nothing written.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest

from dicom_io.sr_reader import read_qc_sr
from dicom_io.stores import open_store
from review.provenance import provenance_table
from tests.review.test_review_loop import chosen_voxels, edit_mask, export, store_files, world
from tests.review.test_slicer_logic import MODULE_DIR
from tests.support.dciodvfy import errors_reported

sys.path.insert(0, str(MODULE_DIR))
from BoneHubReviewLib import logic as slicer_logic  # noqa: E402
from results.qc_shards import read_qc_table

CORRECTED, ACCEPTED, REJECTED, MISSING = "vertebra_L1", "vertebra_T12", "rib_left_8", "vertebra_L3"
QC_STATE = {"accept": ("automatic_accepted", 11), "review": ("automatic_failed", 12), "absent": ("absent", 0)}


def series_uid(run) -> str:
    return str(read_qc_table(str(run.root / "qc"), "qc_series").series_uid[0])


def log(run) -> pd.DataFrame:
    return pd.read_parquet(run.root / "qc" / "corrections.parquet")


def states(run) -> dict[str, tuple[str, int]]:
    table = provenance_table(str(run.root / "qc"))
    return {row.structure: (row.state, int(row.bonehub_status)) for row in table.itertuples()}


def written(run) -> tuple[dict[str, str], bytes | None]:
    path = run.root / "qc" / "corrections.parquet"
    return store_files(run.root / "seg"), path.read_bytes() if path.exists() else None


def refused(run, capsys, *args: str) -> str:
    """A review command that must fail (exit 2) and write nothing; what it printed, on one line."""
    before = written(run)
    capsys.readouterr()
    assert run.review(*args) == 2
    assert written(run) == before
    printed = capsys.readouterr()
    return " ".join((printed.out + printed.err).split())


def correct_l1(run, folder) -> None:
    """Three voxels added next to L1 and three removed, as a reviewer's tool would save them."""
    from dicom_io.ct_series import read_ct_series
    from dicom_io.seg_reader import read_seg

    record = json.loads((folder / "item.json").read_text())
    ct = read_ct_series(run.ct_folder)
    base = record["base"]
    consensus = read_seg(open_store(run.root / "seg").get(base["study_uid"], base["series_uid"], base["sop_uid"]), ct).volume.array
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    add, remove = chosen_voxels(consensus, box)
    edit_mask(folder, world(ct, add), world(ct, remove))
    assert run.review("import", str(folder), "--reviewer", "Doe^Jane") == 0


@pytest.fixture
def decided(reviewed_sample):
    """The sample with the four decisions made through the command line; (run, store files before them)."""
    run = reviewed_sample
    before = store_files(run.root / "seg")
    folders = {bone: export(run, bone) for bone in (CORRECTED, ACCEPTED, REJECTED)}
    correct_l1(run, folders[CORRECTED])
    assert run.review("verdict", str(folders[ACCEPTED]), "--accept", "--reviewer", "Doe^Jane") == 0
    assert run.review("verdict", str(folders[REJECTED]), "--reject", "fused with rib 9 in every source",
                      "--reviewer", "Roe^Rick") == 0
    assert run.review("verdict", "--missing", "--series-uid", series_uid(run), "--structure", MISSING,
                      "--reviewer", "Roe^Rick", "--reason", "visible below L2") == 0
    return run, before


def test_every_bone_lands_in_exactly_its_state(decided):
    run, before = decided
    table = read_qc_table(str(run.root / "qc"), "qc_table")
    expected = {row.bone: QC_STATE[row.status] for row in table.itertuples()}
    expected |= {CORRECTED: ("human_corrected", 23), ACCEPTED: ("human_accepted", 13),
                 REJECTED: ("human_rejected", 14), MISSING: ("missing", 4)}
    assert states(run) == expected
    assert expected["rib_left_7"] == ("automatic_accepted", 11)  # QC's only accept: automatic check passed, never 13

    provenance = provenance_table(str(run.root / "qc")).set_index("structure")
    assert provenance.loc[REJECTED, "reason"] == "fused with rib 9 in every source"
    assert provenance.loc[REJECTED, "reviewer"] == "Roe^Rick" and provenance.loc[ACCEPTED, "reviewer"] == "Doe^Jane"
    assert provenance.loc[MISSING, "qc_status"] == "absent" and math.isnan(provenance.loc[MISSING, "score"])
    rows = log(run)
    assert list(rows.verdict) == ["corrected", "accepted", "rejected", "missing"]
    # one head per series: the corrected SEG (verdicts add no SEG) and the latest SR
    assert set(provenance.seg_sop_uid) == {rows.seg_sop_uid[0]} and set(provenance.sr_sop_uid) == {rows.sr_sop_uid[3]}
    assert list(rows.seg_sop_uid) == [rows.seg_sop_uid[0]] * 4
    new = set(store_files(run.root / "seg")) - set(before)
    assert len(new) == 5  # one corrected SEG and four revised SRs; nothing stored before changed
    assert 0 < rows.dice[0] < 1 and rows.dice[1:].isna().all()


def test_the_revised_sr_chain_says_each_bones_state(decided):
    run, _ = decided
    store = open_store(run.root / "seg")
    rows = log(run)
    study = str(rows.study_uid[0])
    table = read_qc_table(str(run.root / "qc"), "qc_table")
    qc_status = dict(zip(table.bone, table.status))
    chain, sop, series_of = [], str(rows.sr_sop_uid.iloc[-1]), str(rows.sr_series_uid.iloc[-1])
    revised = set(rows.sr_sop_uid)
    while sop in revised:  # from the head SR back through Predecessor Documents to QC's own SR
        sr = store.get(study, series_of, sop)
        chain.append(sr)
        reference = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
        sop, series_of = str(reference.ReferencedSOPSequence[0].ReferencedSOPInstanceUID), str(reference.SeriesInstanceUID)
    qc_series = read_qc_table(str(run.root / "qc"), "qc_series")
    assert sop == qc_series.sr_sop_uid[0] and len(chain) == 4
    said = [{g["bone"]: g["status"] for g in read_qc_sr(sr)} for sr in reversed(chain)]
    decided = {CORRECTED: "corrected", ACCEPTED: "accepted", REJECTED: "rejected", MISSING: "missing"}
    for step, statuses in enumerate(said, start=1):  # each revision adds its decision, keeping the earlier ones
        made = dict(list(decided.items())[:step])
        assert statuses == qc_status | made
    assert not errors_reported(next((run.root / "seg").rglob(f"{rows.sr_sop_uid.iloc[-1]}.dcm")))  # dciodvfy
    head = {g["bone"]: g for g in read_qc_sr(chain[0])}
    assert head[MISSING]["consensus_segment"] == 0 and head[ACCEPTED]["referenced_seg_sop_uid"] == rows.seg_sop_uid[0]
    # the worklist, from the tables and from the SRs, has none of the four any more
    for extra in ([], ["--from-store"]):
        assert run.review("worklist", "--to", str(run.root / f"wl{len(extra)}"), *extra) == 0
        items = json.loads((run.root / f"wl{len(extra)}" / "worklist.json").read_text())["items"]
        assert items and not {i["bone"] for i in items} & set(decided)


def test_feedback_tables_on_the_four_decisions(decided, capsys):
    run, _ = decided
    capsys.readouterr()
    assert run.review("feedback") == 0
    out = capsys.readouterr().out
    assert "precision of review: 2/3 needed a change; 1 false alarms" in out and "not shown, 3 labels < 20" in out
    labels = pd.read_parquet(run.root / "qc" / "review_labels.parquet").set_index("bone")
    assert dict(labels.outcome) == {CORRECTED: "changed", ACCEPTED: "confirmed", REJECTED: "changed", MISSING: "missing"}
    table = read_qc_table(str(run.root / "qc"), "qc_table").set_index("bone")
    for bone in (CORRECTED, ACCEPTED, REJECTED):
        assert labels.loc[bone, "score"] == table.loc[bone, "score"] and labels.loc[bone, "qc_status"] == "review"
    assert 0 < labels.loc[CORRECTED, "dice"] < 1 and labels.drop(CORRECTED).dice.isna().all()
    assert pd.read_parquet(run.root / "qc" / "risk_coverage.parquet").empty
    page = (run.root / "qc" / "review_feedback.html").read_text()
    assert "No risk–coverage curve: 3 labelled bones, at least 20 needed" in page

    assert run.review("feedback", "--min-labels", "3") == 0
    curve = pd.read_parquet(run.root / "qc" / "risk_coverage.parquet")
    scores = sorted(table.loc[[CORRECTED, ACCEPTED, REJECTED], "score"])  # rib_left_8 < L1 < T12 on the sample
    assert list(curve.threshold) == scores
    assert list(curve.auto_accepted) == [3, 2, 1] and list(curve.errors) == [2, 1, 0]
    np.testing.assert_allclose(curve.residual_error, [2 / 3, 1 / 2, 0])
    assert "<strong>" + f"{scores[-1]:.3f}" in (run.root / "qc" / "review_feedback.html").read_text()


def test_repeats_are_no_ops_and_stale_or_wrong_verdicts_are_refused(reviewed_sample, capsys):
    run = reviewed_sample
    series = series_uid(run)
    l1, t12 = export(run, CORRECTED), export(run, ACCEPTED)
    assert run.review("verdict", str(t12), "--accept", "--reviewer", "Doe^Jane") == 0
    assert run.review("verdict", "--missing", "--series-uid", series, "--structure", MISSING, "--reviewer", "Doe^Jane") == 0
    before = written(run)
    capsys.readouterr()
    assert run.review("verdict", str(t12), "--accept", "--reviewer", "Roe^Rick") == 0
    assert run.review("verdict", "--missing", "--series-uid", series, "--structure", MISSING, "--reviewer", "Doe^Jane") == 0
    out = capsys.readouterr().out
    assert out.count("already accepted by Doe^Jane") == 1 and out.count("already missing by Doe^Jane") == 1
    assert written(run) == before

    # L1 corrected so that it takes T12 voxels: the T12 item exported before no longer shows what is stored
    from dicom_io.ct_series import read_ct_series
    from dicom_io.seg_reader import read_seg

    record = json.loads((l1 / "item.json").read_text())
    ct = read_ct_series(run.ct_folder)
    base = record["base"]
    labels = read_seg(open_store(run.root / "seg").get(base["study_uid"], base["series_uid"], base["sop_uid"]), ct).volume.array
    box = tuple(slice(a, b) for a, b in zip(record["roi"]["start"], record["roi"]["stop"]))
    from labels.schema import default_schema

    claimed = [tuple(int(v) for v in p) for p in np.argwhere(labels[box] == default_schema()[ACCEPTED].id)[:2]
               + [b.start for b in box]]
    edit_mask(l1, world(ct, claimed), [])
    assert run.review("import", str(l1), "--reviewer", "Doe^Jane", "--neighbours", "overwrite") == 0
    out = refused(run, capsys, "verdict", str(t12), "--reject", "too small", "--reviewer", "Doe^Jane")
    assert "StaleItemError" in out and "changed since the item was exported" in out

    # missing for a bone QC has a mask of, reject without a reason, accept of a series/structure: refused by name
    out = refused(run, capsys, "verdict", "--missing", "--series-uid", series, "--structure", "vertebra_T11",
                  "--reviewer", "Doe^Jane")
    assert "vertebra_T11: QC has a mask of it (status 'review')" in out
    assert "a rejection needs a reason" in refused(run, capsys, "verdict", str(l1), "--reject", " ", "--reviewer", "X")
    assert "takes exported item folders" in refused(run, capsys, "verdict", "--accept", "--series-uid", series,
                                                    "--structure", ACCEPTED, "--reviewer", "X")
    assert "not a structure of the bone schema" in refused(run, capsys, "verdict", "--missing", "--series-uid", series,
                                                           "--structure", "vertebra_L9", "--reviewer", "X")


def test_the_latest_decision_wins_and_slicer_verdict_files_import(reviewed_sample, capsys):
    run = reviewed_sample
    series = series_uid(run)
    l1, t12 = export(run, CORRECTED), export(run, ACCEPTED)
    # accept, then a correction of the same item (the mask did not change: not stale), then reject that correction
    assert run.review("verdict", str(l1), "--accept", "--reviewer", "Doe^Jane") == 0
    assert states(run)[CORRECTED] == ("human_accepted", 13)
    correct_l1(run, l1)
    assert states(run)[CORRECTED] == ("human_corrected", 23)
    assert run.review("verdict", str(l1), "--reject", "the correction cut the arch", "--reviewer", "Doe^Jane") == 0
    assert states(run)[CORRECTED] == ("human_rejected", 24)  # corrected, then rejected: human-edited and rejected
    capsys.readouterr()
    assert run.review("export", "--to", str(run.root / "export"), "--item", f"{series}/{CORRECTED}") == 2
    assert "already rejected by Doe^Jane" in capsys.readouterr().out

    # the Slicer module's buttons write verdict.json; `bonehub review import` records them
    item = slicer_logic.read_item(t12)
    slicer_logic.write_verdict(t12, item, slicer_logic.REJECTED, "Roe^Rick", "blurred by motion")
    missing = slicer_logic.write_missing(run.root / "export", series, "vertebra_L4", "Roe^Rick", "visible")
    assert slicer_logic.item_state(t12) == "rejected"
    assert run.review("import", str(t12), str(missing.parent)) == 0
    after = states(run)
    assert after[ACCEPTED] == ("human_rejected", 14) and after["vertebra_L4"] == ("missing", 4)
    rows = log(run)
    assert list(rows.tool[-2:]) == [slicer_logic.VERDICT_TOOL] * 2 and list(rows.reviewer[-2:]) == ["Roe^Rick"] * 2
    assert rows.reason.iloc[-2] == "blurred by motion"
