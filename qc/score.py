"""The QC score and status of one structure: one formula, configurable thresholds.

    agreement(i) = ½ · Dice(Sᵢ, C₋ᵢ) + ½ · NSD_τ(Sᵢ, C₋ᵢ)
    score        = minᵢ agreement(i) · ∏ over rules failed by the consensus of penalty(rule)

Sᵢ is member i's mask and C₋ᵢ the majority vote of the other members (leave-one-out
consensus; with an even number of others, voxels with exactly half the votes count
half: the agreement is the mean of the agreements with and without them). Why this formula:

- Agreement between ensemble members is the strongest simple failure detector for
  3D segmentation (Zenk et al. 2024); against the leave-one-out majority rather than
  the logical AND of all masks, which shrinks as sources are added (docs/qc_method.md).
- Dice catches volume errors (missed or extra parts) but punishes small bones for a
  one-voxel shell; NSD at a tolerance in mm forgives clinically irrelevant boundary
  jitter and catches shifted or misplaced masks. Half of each balances the two.
- The minimum over members, not the mean: one wrong member among nine must pull the
  bone into review (and be named), not be averaged away.
- Rule penalties multiply: each failed rule is independent evidence of an error
  that agreement cannot see (all sources wrong the same way, e.g. a level shift).
  With the default penalty ½ and threshold 0.8 any penalised rule sends the bone to review.

A member that agrees that the structure is absent (both its mask and C₋ᵢ empty) has
agreement 1, so a structure no member labelled but the spine level rules say is in
the image (a skipped level, the true level of a shifted run) scores the product of
its penalties and goes to review. Otherwise status: ``absent`` when no member has the structure,
``insufficient_sources`` with fewer than two members, else ``review`` below
``review_below`` and ``accept`` at or above it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from labels.schema import default_schema
from qc.metrics import Overlap, PairMetrics
from qc.results import ABSENT, ACCEPT, INSUFFICIENT, REVIEW

RULES = ("fov_cutoff", "extra_components", "wrong_side", "too_small", "level_order", "rib_vertebra_level", "presence",
         "level_shift", "level_gap", "spine_variant")
# Cut-off by the field of view is information, not an error: a reviewer cannot complete what
# was not imaged. "presence" (some members have the structure, some not) already scores 0 in
# the agreement. A spine variant (L6, rib 13, sacralised L5, eleven rib pairs) is anatomy, not
# an error. So by default none of these lowers the score.
INFORMATIVE_RULES = ("fov_cutoff", "presence", "spine_variant")


def _default_penalties() -> dict[str, float]:
    return {rule: (1.0 if rule in INFORMATIVE_RULES else 0.5) for rule in RULES}


_NON_NEGATIVE = ("nsd_tolerance_mm", "extra_component_ml", "min_volume_ml", "rib_contact_mm", "outlier_margin",
                 "outlier_spread_factor")


def _check_non_negative(name: str, value: object) -> None:
    """Every numeric QC setting is a finite number >= 0 (a negative NSD tolerance would halve every score)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


@dataclass(frozen=True)
class QcSettings:
    """Thresholds of Stage 2; change them and re-run QC alone, no model runs again."""

    review_below: float = 0.8  # score below this → review
    nsd_tolerance_mm: float = 2.0  # NSD tolerance τ
    nsd_tolerance_mm_by_structure: Mapping[str, float] = field(default_factory=dict)
    rule_penalty: Mapping[str, float] = field(default_factory=_default_penalties)
    extra_component_ml: float = 0.5  # a second connected component at least this large is flagged
    # IDC checked every TotalSegmentator segment (organs too) for >= 5 mL (arXiv 2406.14486); real 12th ribs
    # are smaller (2.4 and 3.8 mL in the bundled sample), so bones get 1 mL unless overridden per structure.
    min_volume_ml: float = 1.0
    min_volume_ml_by_structure: Mapping[str, float] = field(default_factory=dict)
    # one schema label for several pieces, so no component rule: the cartilages of every rib; the skull with the
    # mandible, a bone of its own that TotalSegmentator's "skull" includes
    multi_part: tuple[str, ...] = ("costal_cartilages", "skull")
    rib_contact_mm: float = 15.0  # a rib whose medial end comes this close to a vertebra is checked for its level
    outlier_margin: float = 0.05  # the outlier source's agreement is at least this far below every other member's
    outlier_spread_factor: float = 2.0  # ... and this many times the spread of the other members' agreements

    def __post_init__(self) -> None:
        if not 0.0 < self.review_below <= 1.0:
            raise ValueError(f"review_below must be in (0, 1], got {self.review_below}")
        if unknown := sorted(set(self.rule_penalty) - set(RULES)):
            raise ValueError(f"unknown QC rule(s) {unknown}; rules are {list(RULES)}")
        if bad := {r: p for r, p in self.rule_penalty.items() if not 0.0 <= p <= 1.0}:
            raise ValueError(f"rule penalties must be in [0, 1], got {bad}")
        for name in _NON_NEGATIVE:
            _check_non_negative(name, getattr(self, name))
        for name in ("nsd_tolerance_mm_by_structure", "min_volume_ml_by_structure"):
            for structure, value in getattr(self, name).items():
                _check_non_negative(f"{name}[{structure}]", value)
        # penalties given for some rules keep the defaults of the others
        object.__setattr__(self, "rule_penalty", {**_default_penalties(), **self.rule_penalty})
        schema = default_schema()
        for name in ("nsd_tolerance_mm_by_structure", "min_volume_ml_by_structure"):
            if unknown := sorted(s for s in getattr(self, name) if s not in schema):
                raise ValueError(f"{name}: {unknown} are not structures of the bone schema")

    def tolerance_mm(self, structure: str) -> float:
        return self.nsd_tolerance_mm_by_structure.get(structure, self.nsd_tolerance_mm)

    def min_volume(self, structure: str) -> float:
        return self.min_volume_ml_by_structure.get(structure, self.min_volume_ml)

    def describe(self) -> str:
        """One line for reports and the SR: what produced these scores."""
        penalties = ", ".join(f"{r}={p:g}" for r, p in self.rule_penalty.items())
        return (f"score = min over members of (Dice + NSD@{self.nsd_tolerance_mm:g}mm)/2 vs leave-one-out majority, "
                f"times rule penalties ({penalties}); review below {self.review_below:g}")


def agreement(metrics: PairMetrics | Overlap | None) -> float:
    """One member against the consensus of the others; both empty counts as full agreement."""
    if metrics is None:
        return 1.0
    return 0.5 * metrics.dice + 0.5 * metrics.nsd


def score_and_status(agreements: Sequence[float], n_present: int, consensus_rules: Sequence[str],
                     settings: QcSettings) -> tuple[float, str]:
    penalty = math.prod(settings.rule_penalty.get(rule, 1.0) for rule in consensus_rules)
    if n_present == 0 and penalty < 1.0:
        return penalty, REVIEW  # nobody labelled it, but the spine levels say it is there (or was labelled as another)
    if len(agreements) < 2:
        return math.nan, INSUFFICIENT
    if n_present == 0:
        return math.nan, ABSENT
    score = min(agreements) * penalty
    return score, (ACCEPT if score >= settings.review_below else REVIEW)


def outlier_source(agreements: Sequence[float], sources: Sequence[str], settings: QcSettings) -> str:
    """The source whose members agree least with the rest, when it stands out from the others' spread; else "".

    Needs at least three members (with two, each disagrees with the other equally)
    and two sources. The source's mean agreement must be below ``review_below``, and
    its gap to the lowest other member must exceed ``outlier_spread_factor`` times the
    spread (max - min) of the other members' agreements, and at least ``outlier_margin``.
    So a source far below two others that agree with each other is named even when
    the gap is small in absolute terms (a one-slice shift), and none is named when all
    members scatter alike.
    """
    if len(agreements) < 3 or len(set(sources)) < 2:
        return ""
    by_source: dict[str, list[float]] = {}
    for value, source in zip(agreements, sources):
        by_source.setdefault(source, []).append(value)
    worst, name = min((sum(v) / len(v), s) for s, v in by_source.items())
    others = [value for value, source in zip(agreements, sources) if source != name]
    gap, spread = min(others) - worst, max(others) - min(others)
    stands_out = gap >= settings.outlier_margin and gap > settings.outlier_spread_factor * spread
    return name if worst < settings.review_below and stands_out else ""
