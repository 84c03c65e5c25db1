"""Coded values are StrEnums: the same text in tables and files, checked when made from text."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from dicom_io.seg_writer import SegType
from labels.errors import BoneHubInputError
from labels.schema import Code, Structure, default_schema
from qc.results import REVIEW, STATUSES, BoneResult, QcStatus


def _result(status: str) -> BoneResult:
    nan = math.nan
    return BoneResult("1.2.3", "1.2", "rib_left_1", "bone", ("a 1", "b 1"), 2, 2, nan, nan, nan, nan, nan, nan, 0.0, nan,
                      0.5, status, (), "", (1.0, 1.0))


def test_a_coded_value_is_its_text():
    assert QcStatus.REVIEW == "review" and REVIEW == "review" and f"{QcStatus.ACCEPT}" == "accept"
    assert set(STATUSES) == {"accept", "review", "absent", "insufficient_sources", "corrected"}
    assert json.dumps([SegType.BINARY]) == '["binary"]'
    assert pd.DataFrame([{"status": QcStatus.ABSENT}]).status.tolist() == ["absent"]
    assert default_schema()["rib_left_1"].level == "bone"


def test_text_becomes_the_coded_value():
    result = _result("review")
    assert result.status is QcStatus.REVIEW
    assert result.as_row()["status"] == "review"


def _structure(level: str) -> Structure:
    code = Code("SCT", "1", "x")
    return Structure(1, "x", "x", None, level, code, code, None, (0, 0, 0), "")


@pytest.mark.parametrize("make, bad, allowed", [
    (lambda: _result("acept"), "'acept'", "'accept', 'review', 'absent', 'insufficient_sources', 'corrected'"),
    (lambda: SegType("LABELMAP"), "'LABELMAP'", "'labelmap', 'binary'"),
    (lambda: _structure("leaf"), "'leaf'", "'region', 'group', 'bone'"),
], ids=["qc-status", "seg-type", "schema-level"])
def test_a_bad_value_names_itself_and_the_allowed_ones(make, bad, allowed):
    with pytest.raises(BoneHubInputError) as raised:
        make()
    assert isinstance(raised.value, ValueError)
    assert bad in str(raised.value) and allowed in str(raised.value)
