"""Closed sets of coded values that are stored as text (statuses, SEG types, kinds).

A ``CodedValue`` is a ``StrEnum``: a member compares and hashes equal to its text
and formats as it, so tables, manifests and DICOM objects hold the same text as
before, while code gets one named set to check against. Constructing one from
text validates it: ``QcStatus("acept")`` raises ``BoneHubInputError`` naming the
bad value and the allowed ones.
"""

from __future__ import annotations

from enum import StrEnum

from labels.errors import BoneHubInputError


class CodedValue(StrEnum):
    """Base of the project's coded values; subclasses list the members."""

    @classmethod
    def _missing_(cls, value: object) -> None:
        allowed = ", ".join(repr(member.value) for member in cls)
        raise BoneHubInputError(f"{value!r} is not a valid {cls.__name__}: use one of {allowed}")
