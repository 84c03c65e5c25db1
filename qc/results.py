"""What Stage 2 says about one bone of one series: the record behind the table, the SR and the report.

One ``BoneResult`` per compared structure (a bone, or a coarser node where a
source labels only coarsely) of one series. Distances are in mm, volumes in mL;
a metric that is undefined (no pair where both masks exist) is NaN, never inf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
import dataclasses
from dataclasses import asdict, dataclass, fields

from labels.coded_values import CodedValue


class QcStatus(CodedValue):
    """The verdict on one structure; stored as its text in the QC table and the SR."""

    ACCEPT = "accept"  # sources agree and no rule fails
    REVIEW = "review"  # score below the threshold: a human should look
    ABSENT = "absent"  # no source found the structure (it is outside the field of view or missing)
    INSUFFICIENT = "insufficient_sources"  # fewer than two segmentations compare at this structure
    CORRECTED = "corrected"  # a reviewer corrected it (Stage 3)
    ACCEPTED = "accepted"  # a reviewer accepted it as is: QC doubted it, but it is right (Stage 3)
    REJECTED = "rejected"  # a reviewer rejected it as unusable (Stage 3)
    MISSING = "missing"  # a reviewer found it in the image where no source labelled it (Stage 3)


ACCEPT, REVIEW, ABSENT, INSUFFICIENT, CORRECTED = (QcStatus.ACCEPT, QcStatus.REVIEW, QcStatus.ABSENT, QcStatus.INSUFFICIENT,
                                               QcStatus.CORRECTED)
ACCEPTED, REJECTED, MISSING = QcStatus.ACCEPTED, QcStatus.REJECTED, QcStatus.MISSING
STATUSES = tuple(QcStatus)
QC_STATUSES = (ACCEPT, REVIEW, ABSENT, INSUFFICIENT)  # what QC itself says; the rest are reviewers' (revised SRs only)


@dataclass(frozen=True)
class Member:
    """One segmentation being compared: a source under one augmentation, stored as one SEG."""

    source: str
    version: str
    augmentation: str
    seg_series_uid: str
    seg_sop_uid: str
    # Schema structures the source can label (its mapping's targets), recorded with its SEG; None when the SEG
    # does not say (a SEG made elsewhere): qc.units then infers it from what the SEG labels.
    vocabulary: frozenset[str] | None = None

    @property
    def name(self) -> str:
        """Unique, readable label used in tables, flags and reports."""
        text = f"{self.source} {self.version}"
        return text if self.augmentation == "none" else f"{text} [{self.augmentation}]"


@dataclass(frozen=True)
class BoneResult:
    """The QC verdict on one structure of one series (one row of the QC table)."""

    series_uid: str
    study_uid: str
    bone: str  # schema name of the compared structure
    level: str  # its schema level: bone, group or region
    members: tuple[str, ...]  # Member.name of every segmentation compared here
    n_sources: int  # len(members)
    n_present: int  # members whose mask is not empty
    dice_mean: float  # mean pairwise Dice (pairs where both are empty are skipped)
    dice_min: float
    hd95_mm: float  # mean pairwise HD95 over pairs where both masks exist
    assd_mm: float
    nsd: float  # mean pairwise normalised surface Dice at the tolerance
    centroid_spread_mm: float  # largest distance of a member's centroid from the consensus centroid
    volume_ml: float  # consensus (majority vote) volume
    volume_cv: float  # coefficient of variation of the present members' volumes
    score: float  # in [0, 1]; NaN for absent / insufficient_sources
    status: QcStatus  # given as a QcStatus or its text; kept as the QcStatus
    flags: tuple[str, ...]  # failed rules: "rule" (consensus) or "rule@member name"
    outlier_source: str  # Member.name of the member that disagrees with the rest, or ""
    member_agreement: tuple[float, ...]  # per member (same order): agreement with the leave-one-out consensus
    consensus_segment: int = 0  # segment number in the consensus SEG; 0 when it has none for this structure
    member_present: tuple[bool, ...] = ()  # per member (same order): whether its mask here is not empty
    level_shift: int = 0  # spine level rules: likely label - true level (+1: labelled one level too low), 0 if none

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", QcStatus(self.status))  # raises on text that is not a status

    def as_row(self) -> dict[str, object]:
        """Flat table row: tuples joined with ';' so the table stays one row per (series, bone)."""
        row = asdict(self)
        row["members"] = ";".join(self.members)
        row["flags"] = ";".join(self.flags)
        row["member_agreement"] = ";".join("nan" if math.isnan(a) else f"{a:.6g}" for a in self.member_agreement)
        row["member_present"] = ";".join(str(int(p)) for p in self.member_present)
        return row


TABLE_COLUMNS = [f.name for f in fields(BoneResult)]
_TUPLE_COLUMNS = {"members": str, "flags": str, "member_agreement": float, "member_present": lambda v: bool(int(v))}
_DEFAULTS = {f.name: f.default for f in fields(BoneResult) if f.default is not dataclasses.MISSING}


def result_from_row(row: Mapping[str, object]) -> BoneResult:
    """The inverse of ``BoneResult.as_row``: a QC table row back as a result (Stage 3 revises the SR from it)."""
    values = {name: row[name] if name in row else _DEFAULTS[name] for name in TABLE_COLUMNS}  # tables of older runs lack the newer columns
    for name, kind in _TUPLE_COLUMNS.items():
        if not isinstance(values[name], tuple):
            values[name] = tuple(kind(v) for v in str(values[name]).split(";") if v != "")
    for name in ("n_sources", "n_present", "consensus_segment", "level_shift"):
        values[name] = int(values[name])
    return BoneResult(**values)
