"""BoneHub status codes: all 25 round-trip, anything else is refused by name."""

from __future__ import annotations

import pytest

from labels.bonehub_status import BoneHubStatus, StatusOrigin, StatusReview
from labels.errors import BoneHubInputError

VALID_CODES = [origin * 10 + review for origin in range(5) for review in range(5)]


@pytest.mark.parametrize("code", VALID_CODES)
def test_every_code_round_trips(code):
    status = BoneHubStatus.parse(code)
    assert int(status) == status.code == code
    assert BoneHubStatus.parse(str(code)) == status
    assert BoneHubStatus.of(status.origin, status.review) == status
    assert (status.origin, status.review) == divmod(code, 10)
    assert status.describe().startswith(f"{code:02d}: ") and "\n" not in status.describe()


def test_all_lists_the_25_codes_in_order():
    assert [int(status) for status in BoneHubStatus.all()] == VALID_CODES


@pytest.mark.parametrize("bad", [5, 50, -1, 99, "x", True, False, 3.0, None, "", "3 3", 45])
def test_bad_codes_are_refused_by_name(bad):
    with pytest.raises(BoneHubInputError, match=repr(bad).replace(".", r"\.")):
        BoneHubStatus.parse(bad)


@pytest.mark.parametrize(("origin", "review"), [(5, 0), (0, 5), (-1, 0), (True, 0), (1, "2")])
def test_of_refuses_bad_digits(origin, review):
    with pytest.raises(BoneHubInputError):
        BoneHubStatus.of(origin, review)


def test_meaning_of_the_digits():
    expert_source = BoneHubStatus.of(StatusOrigin.SOURCE_DATASET, StatusReview.EXPERT_ACCEPTED)
    assert int(expert_source) == 33 and expert_source.is_available and expert_source.is_usable
    assert expert_source.describe() == "33: source dataset, expert accepted"
    rejected = BoneHubStatus.parse(14)
    assert rejected.origin is StatusOrigin.BONEHUB_AUTOMATIC and rejected.review is StatusReview.EXPERT_REJECTED
    assert rejected.is_available and not rejected.is_usable
    assert not BoneHubStatus.parse(12).is_usable and BoneHubStatus.parse(41).is_usable
    assert not BoneHubStatus.parse(3).is_available and not BoneHubStatus.parse(3).is_usable
    assert BoneHubStatus.of(2) == BoneHubStatus.parse(20)
