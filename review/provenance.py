"""One provenance state per structure of every series, and its BoneHub status code: what a dataset may trust.

QC says what it thinks of each structure (``qc_table``); reviewers say
what they found since (``corrections.parquet``, latest row last). This module
turns both into exactly one state per (series, structure) and maps the state to
BoneHub's status code (``labels.bonehub_status``: origin * 10 + review), so the
dataset export and the revised QC SRs tell an automatic accept ("automatic
check passed") from an expert's word, and a corrected mask from an automatic
one. The mapping (review/README.md):

==================  ==============================================  ======
state               when                                            status
==================  ==============================================  ======
automatic_accepted  QC accept, no reviewer verdict                  11
automatic_failed    QC review, no verdict yet (pending)             12
human_accepted      latest verdict accepted, never corrected        13
human_corrected     latest verdict corrected (or accepted after)    23
human_rejected      latest verdict rejected                         14 (24 when corrected before)
missing             latest verdict missing: no source labelled it   04
unverified          QC insufficient_sources, one mask, no verdict   10
absent              QC absent (or insufficient, no mask)            00
==================  ==============================================  ======

Beam-free and store-free: it reads the two tables only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from labels.bonehub_status import BoneHubStatus, StatusOrigin, StatusReview
from labels.coded_values import CodedValue
from labels.schema import default_schema
from qc.results import ACCEPT, ACCEPTED, CORRECTED, MISSING, QcStatus, REJECTED, REVIEW
from results.qc_shards import read_qc_table
from results.qc_tables import SERIES_TABLE, TABLE
from review.state import ReviewInputError, Verdict, read_corrections


class ProvenanceState(CodedValue):
    """Where a structure's label stands; ``STATE_STATUS`` gives its BoneHub status."""

    AUTOMATIC_ACCEPTED = "automatic_accepted"
    AUTOMATIC_FAILED = "automatic_failed"
    HUMAN_ACCEPTED = "human_accepted"
    HUMAN_CORRECTED = "human_corrected"
    HUMAN_REJECTED = "human_rejected"
    MISSING = "missing"
    UNVERIFIED = "unverified"
    ABSENT = "absent"


_AUTOMATIC, _HUMAN = StatusOrigin.BONEHUB_AUTOMATIC, StatusOrigin.BONEHUB_HUMAN
STATE_STATUS = {  # human_rejected after a correction is BONEHUB_HUMAN instead: see bone_state
    ProvenanceState.AUTOMATIC_ACCEPTED: BoneHubStatus(_AUTOMATIC, StatusReview.AUTOMATIC_PASSED),
    ProvenanceState.AUTOMATIC_FAILED: BoneHubStatus(_AUTOMATIC, StatusReview.AUTOMATIC_FAILED),
    ProvenanceState.HUMAN_ACCEPTED: BoneHubStatus(_AUTOMATIC, StatusReview.EXPERT_ACCEPTED),
    ProvenanceState.HUMAN_CORRECTED: BoneHubStatus(_HUMAN, StatusReview.EXPERT_ACCEPTED),
    ProvenanceState.HUMAN_REJECTED: BoneHubStatus(_AUTOMATIC, StatusReview.EXPERT_REJECTED),
    ProvenanceState.MISSING: BoneHubStatus(StatusOrigin.NOT_AVAILABLE, StatusReview.EXPERT_REJECTED),
    ProvenanceState.UNVERIFIED: BoneHubStatus(_AUTOMATIC, StatusReview.NOT_REVIEWED),
    ProvenanceState.ABSENT: BoneHubStatus(StatusOrigin.NOT_AVAILABLE, StatusReview.NOT_REVIEWED),
}
# The status a revised QC SR gives a structure in each reviewer state (the others keep QC's status).
SR_STATUS = {ProvenanceState.HUMAN_ACCEPTED: ACCEPTED, ProvenanceState.HUMAN_CORRECTED: CORRECTED,
             ProvenanceState.HUMAN_REJECTED: REJECTED, ProvenanceState.MISSING: MISSING}
COLUMNS = ["series_uid", "study_uid", "structure", "state", "bonehub_status", "score", "qc_status", "verdict",
           "reviewer", "reason", "decided_at", "seg_series_uid", "seg_sop_uid", "sr_series_uid", "sr_sop_uid"]


def bone_state(qc_status: str, has_mask: bool, verdicts: Sequence[str]) -> tuple[ProvenanceState, BoneHubStatus]:
    """(state, BoneHub status) of one structure from QC's status, whether QC has a mask, and the verdicts in order.

    The latest verdict wins; a correction anywhere before it makes the mask human-edited (origin 2).
    """
    verdicts = [Verdict(v) for v in verdicts]
    if verdicts:
        last, corrected = verdicts[-1], Verdict.CORRECTED in verdicts
        if last == Verdict.MISSING:
            state = ProvenanceState.MISSING
        elif last == Verdict.REJECTED:
            state = ProvenanceState.HUMAN_REJECTED
            if corrected:
                return state, BoneHubStatus(_HUMAN, StatusReview.EXPERT_REJECTED)
        else:
            state = ProvenanceState.HUMAN_CORRECTED if corrected else ProvenanceState.HUMAN_ACCEPTED
        return state, STATE_STATUS[state]
    status = QcStatus(qc_status)
    if status == ACCEPT:
        state = ProvenanceState.AUTOMATIC_ACCEPTED
    elif status == REVIEW:
        state = ProvenanceState.AUTOMATIC_FAILED
    elif status == QcStatus.INSUFFICIENT and has_mask:
        state = ProvenanceState.UNVERIFIED
    else:
        state = ProvenanceState.ABSENT
    return state, STATE_STATUS[state]


def series_states(table: pd.DataFrame, log: pd.DataFrame, series_uid: str) -> dict[str, ProvenanceState]:
    """Every structure of one series (QC's and those only reviewers name) with its state."""
    states = _states(table[table["series_uid"] == series_uid], log[log["series_uid"] == series_uid])
    return {structure: ProvenanceState(state) for structure, state in zip(states["structure"], states["state"])}


def provenance_table(qc_dir: str) -> pd.DataFrame:
    """One row per (series, structure) of every series QC finished (``COLUMNS``), sorted by series and schema id.

    ``seg_*`` / ``sr_*`` name the series' head: the SEG holding its final label
    map (latest correction, else the consensus) and the latest QC SR.
    Vectorised over the QC table: a collection's table has millions of rows.
    """
    table, series = read_qc_table(qc_dir, TABLE), read_qc_table(qc_dir, SERIES_TABLE)
    if table is None or series is None:
        raise ReviewInputError(f"no QC results in {qc_dir}: run `bonehub qc` first")
    log = read_corrections(qc_dir)
    done = series[(series["status"] == "done") & series["consensus_sop_uid"].fillna("").astype(bool)]
    heads = done.set_index("series_uid")[["study_uid", "consensus_series_uid", "consensus_sop_uid", "sr_series_uid",
                                          "sr_sop_uid"]].rename(columns={"consensus_series_uid": "seg_series_uid",
                                                                         "consensus_sop_uid": "seg_sop_uid"})
    latest = log.groupby("series_uid").last()[["seg_series_uid", "seg_sop_uid", "sr_series_uid", "sr_sop_uid"]]
    heads.update(latest)  # a series with corrections or verdicts: its latest row (as review.state.head)
    states = _states(table[table["series_uid"].isin(heads.index)], log[log["series_uid"].isin(heads.index)])
    return states.join(heads.astype(str), on="series_uid")[COLUMNS]


def _states(table: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """The state rows (``COLUMNS`` up to ``decided_at``) of the QC rows and log rows given, by series and schema id."""
    qc = pd.DataFrame({"series_uid": table["series_uid"], "structure": table["bone"], "score": table["score"].astype(float),
                       "qc_status": table["status"].astype(str), "has_mask": table["consensus_segment"].astype(int) > 0})
    decided = (log.groupby(["series_uid", "bone"], sort=False)
               .agg(verdicts=("verdict", list), verdict=("verdict", "last"), reviewer=("reviewer", "last"),
                    reason=("reason", "last"), decided_at=("imported_at", "last"))
               .reset_index().rename(columns={"bone": "structure"}))
    rows = qc.merge(decided, on=["series_uid", "structure"], how="outer")
    rows["qc_status"] = rows["qc_status"].fillna("")
    rows["has_mask"] = rows["has_mask"].fillna(False).astype(bool)
    status = rows["qc_status"]
    automatic = np.select([status == ACCEPT, status == REVIEW, (status == QcStatus.INSUFFICIENT) & rows["has_mask"]],
                          [ProvenanceState.AUTOMATIC_ACCEPTED, ProvenanceState.AUTOMATIC_FAILED,
                           ProvenanceState.UNVERIFIED], default=ProvenanceState.ABSENT).astype(object)
    rows["state"] = automatic
    rows["bonehub_status"] = [STATE_STATUS[ProvenanceState(state)].code for state in automatic]
    human = rows["verdicts"].notna()
    for index in rows.index[human]:  # the few structures reviewers decided on
        state, code = bone_state(rows.at[index, "qc_status"] or QcStatus.ABSENT, rows.at[index, "has_mask"],
                                 rows.at[index, "verdicts"])
        rows.at[index, "state"], rows.at[index, "bonehub_status"] = str(state), code.code
    for column in ("verdict", "reviewer", "reason", "decided_at"):
        rows[column] = rows[column].fillna("").astype(str)
    rows["state"] = rows["state"].astype(str)
    schema = default_schema()
    rows["order"] = [schema[name].id for name in rows["structure"]]
    rows = rows.sort_values(["series_uid", "order"], kind="stable").reset_index(drop=True)
    return rows[COLUMNS[:1] + COLUMNS[2:11]]
