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
from results.manifest import ManifestRow, OutputStatus
from results.series_ref import SeriesKind, SeriesRef
from review.roi import NeighbourPolicy
from review.writeback import CorrectionMethod, Reviewer


def _result(status: str) -> BoneResult:
    nan = math.nan
    return BoneResult("1.2.3", "1.2", "rib_left_1", "bone", ("a 1", "b 1"), 2, 2, nan, nan, nan, nan, nan, nan, 0.0, nan,
                      0.5, status, (), "", (1.0, 1.0))


def test_a_coded_value_is_its_text():
    assert QcStatus.REVIEW == "review" and REVIEW == "review" and f"{QcStatus.ACCEPT}" == "accept"
    assert set(STATUSES) == {"accept", "review", "absent", "insufficient_sources", "corrected",
                             "accepted", "rejected", "missing"}
    assert json.dumps([SegType.BINARY]) == '["binary"]'
    assert pd.DataFrame([{"status": QcStatus.ABSENT}]).status.tolist() == ["absent"]
    assert default_schema()["rib_left_1"].level == "bone"


def _manifest_row(status: str) -> ManifestRow:
    return ManifestRow("1.2.3", "1.2", "baseline", "v1", "none", "labelmap", "1.2.4", "1.2.5", "file:///x", status)


def test_text_becomes_the_coded_value():
    result = _result("review")
    assert result.status is QcStatus.REVIEW
    assert result.as_row()["status"] == "review"
    assert _manifest_row("exists").status is OutputStatus.EXISTS
    assert SeriesRef("1.2.3", "1.2", "idc", "s3://x").kind is SeriesKind.IDC
    assert Reviewer("Doe^Jane", method="manual").method is CorrectionMethod.MANUAL


def _structure(level: str) -> Structure:
    code = Code("SCT", "1", "x")
    return Structure(1, "x", "x", None, level, code, code, None, (0, 0, 0), "")


@pytest.mark.parametrize("make, bad, allowed", [
    (lambda: _result("acept"), "'acept'", "'accept', 'review', 'absent', 'insufficient_sources', 'corrected'"),
    (lambda: SegType("LABELMAP"), "'LABELMAP'", "'labelmap', 'binary'"),
    (lambda: _structure("leaf"), "'leaf'", "'region', 'group', 'bone'"),
    (lambda: _manifest_row("skipped"), "'skipped'", "'written', 'exists', 'failed'"),
    (lambda: SeriesRef("1.2.3", "1.2", "ftp", "x"), "'ftp'", "'local', 'idc', 'store'"),
    (lambda: NeighbourPolicy("merge"), "'merge'", "'keep', 'overwrite'"),
    (lambda: Reviewer("Doe^Jane", method="automatic"), "'automatic'", "'semiautomatic', 'manual'"),
], ids=["qc-status", "seg-type", "schema-level", "manifest-status", "series-kind", "neighbour-policy", "correction-method"])
def test_a_bad_value_names_itself_and_the_allowed_ones(make, bad, allowed):
    with pytest.raises(BoneHubInputError) as raised:
        make()
    assert isinstance(raised.value, ValueError)
    assert bad in str(raised.value) and allowed in str(raised.value)
