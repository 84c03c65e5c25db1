"""BoneHub's per-label status code: who produced a label's mask and how it has been checked.

BoneHub-Dataset masks carry one status per label (``BoneHubStatus:<code>`` in a
``.seg.nrrd`` segment's tags), ``code = origin * 10 + review``. The status travels
with a BoneHub mask as provenance, so QC and review can tell a source dataset's
expert-checked ground truth from an unchecked automatic result. All 25
combinations are valid; anything else is refused with ``BoneHubInputError``
naming the bad code, because a misread status would misstate a label's authority.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from labels.errors import BoneHubInputError


class StatusOrigin(IntEnum):
    """Who produced the label's mask (the tens digit)."""

    NOT_AVAILABLE = 0
    BONEHUB_AUTOMATIC = 1
    BONEHUB_HUMAN = 2
    SOURCE_DATASET = 3
    SOURCE_CORRECTED = 4


class StatusReview(IntEnum):
    """The strongest check the mask has had so far (the units digit)."""

    NOT_REVIEWED = 0
    AUTOMATIC_PASSED = 1
    AUTOMATIC_FAILED = 2
    EXPERT_ACCEPTED = 3
    EXPERT_REJECTED = 4


_ORIGIN_TEXT = {
    StatusOrigin.NOT_AVAILABLE: "not available",
    StatusOrigin.BONEHUB_AUTOMATIC: "BoneHub automatic",
    StatusOrigin.BONEHUB_HUMAN: "BoneHub human-edited or created",
    StatusOrigin.SOURCE_DATASET: "source dataset",
    StatusOrigin.SOURCE_CORRECTED: "source dataset corrected by BoneHub",
}
_REVIEW_TEXT = {
    StatusReview.NOT_REVIEWED: "not reviewed",
    StatusReview.AUTOMATIC_PASSED: "automatic check passed",
    StatusReview.AUTOMATIC_FAILED: "automatic check failed",
    StatusReview.EXPERT_ACCEPTED: "expert accepted",
    StatusReview.EXPERT_REJECTED: "expert rejected",
}
_FAILED_REVIEWS = frozenset({StatusReview.AUTOMATIC_FAILED, StatusReview.EXPERT_REJECTED})


@dataclass(frozen=True, order=True)
class BoneHubStatus:
    """One valid status; ``int(status)`` is its code."""

    origin: StatusOrigin
    review: StatusReview

    @classmethod
    def of(cls, origin: int, review: int = StatusReview.NOT_REVIEWED) -> BoneHubStatus:
        """The status with this origin and review digit; either out of range is refused."""
        return cls.parse(_digit(origin, "origin", len(StatusOrigin)) * 10 + _digit(review, "review", len(StatusReview)))

    @classmethod
    def parse(cls, code: int | str) -> BoneHubStatus:
        """The status of an int code or its decimal text (as in a ``.seg.nrrd`` tag)."""
        number = _code_number(code)
        origin, review = divmod(number, 10)
        if number < 0 or origin >= len(StatusOrigin) or review >= len(StatusReview):
            raise BoneHubInputError(
                f"BoneHub status {code!r} is not valid: a status is origin*10 + review with origin 0-4 and review 0-4"
            )
        return cls(StatusOrigin(origin), StatusReview(review))

    @classmethod
    def all(cls) -> list[BoneHubStatus]:
        """Every valid status, in code order."""
        return [cls(origin, review) for origin in StatusOrigin for review in StatusReview]

    def __int__(self) -> int:
        return int(self.origin) * 10 + int(self.review)

    @property
    def code(self) -> int:
        """The stored code, ``origin * 10 + review``."""
        return int(self)

    @property
    def is_available(self) -> bool:
        """A mask exists for the label, whatever its review."""
        return self.origin is not StatusOrigin.NOT_AVAILABLE

    @property
    def is_usable(self) -> bool:
        """A mask exists and no check has failed or rejected it."""
        return self.is_available and self.review not in _FAILED_REVIEWS

    def describe(self) -> str:
        """One line, e.g. ``33: source dataset, expert accepted``."""
        return f"{self.code:02d}: {_ORIGIN_TEXT[self.origin]}, {_REVIEW_TEXT[self.review]}"


def _code_number(code: object) -> int:
    """The integer in an int or a decimal string; anything else (bool, float, other text) is refused."""
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code.strip())
    raise BoneHubInputError(f"BoneHub status {code!r} is not valid: a status is an integer code origin*10 + review")


def _digit(value: object, what: str, count: int) -> int:
    """``value`` as one status digit in ``0 .. count-1``; anything else is refused by name."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
        raise BoneHubInputError(f"BoneHub status {what} {value!r} is not valid: use 0-{count - 1}")
    return int(value)
