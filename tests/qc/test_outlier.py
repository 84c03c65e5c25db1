"""The outlier source is named against the other members' spread, not by an absolute margin."""

from __future__ import annotations

import pytest

from qc.score import QcSettings, outlier_source

SOURCES = ("A", "B", "C")
SETTINGS = QcSettings()


@pytest.mark.parametrize("agreements, named", [
    ((0.103, 0.006, 0.103), "B"),  # T11 and T12 swapped in one source: far below two that agree exactly
    ((0.857, 0.762, 0.849), "B"),  # one slice off: a small gap, but the others agree closely
    ((0.871, 0.775, 0.849), "B"),  # the gap (0.074) is over twice the others' spread (0.022)
    ((0.78, 0.70, 0.62), ""),  # all scatter alike: nobody stands out
    ((0.79, 0.77, 0.78), ""),  # a gap under the 0.05 floor
    ((0.95, 0.85, 0.97), ""),  # the lowest agrees well enough: no review, nobody to blame
])
def test_named_against_the_spread_of_the_others(agreements, named):
    assert outlier_source(agreements, SOURCES, SETTINGS) == named


def test_augmentations_of_one_source_count_together_and_two_members_name_nobody():
    assert outlier_source((0.5, 0.52, 0.95, 0.96), ("A", "A", "B", "B"), SETTINGS) == "A"
    assert outlier_source((0.2, 0.9), ("A", "B"), SETTINGS) == ""


@pytest.mark.parametrize("name", ["outlier_margin", "outlier_spread_factor", "rib_contact_mm"])
def test_negative_or_missing_thresholds_are_refused_by_name(name):
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match=f"{name} must be a number >= 0"):
            QcSettings(**{name: bad})
