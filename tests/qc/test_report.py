"""The QC snapshot and HTML report on the bundled real CT and its two real TotalSegmentator results.

A third member is the full result with L1 pushed 18 mm out of place on four slices: the snapshot must
show one of those slices, and the report must show that member as L1's outlier.
"""

from __future__ import annotations

import base64
import itertools
import math
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from bench.report_scale import synthetic_table
from labels.schema import default_schema
from qc import report
from qc.report import MAX_HEATMAP_SERIES, MAX_SERIES_ROWS, WORST_ROWS, write_report
from qc.results import ABSENT, ACCEPT, INSUFFICIENT, REVIEW, TABLE_COLUMNS, BoneResult
from qc.snapshot import take_snapshot

FULL = "TotalSegmentator 2 total"
FAST = "TotalSegmentator 2 total --fast"
DAMAGED = "cpu<baseline> 1 [shifted]"  # '<' and '>' must be escaped in the HTML
SHIFT_VOXELS = 6
REVIEW_BELOW = 0.9  # this test's stand-in for the QC formula (not under test here): score = mean pairwise Dice


@pytest.fixture(scope="module")
def members(sample_schema_maps) -> dict[str, np.ndarray]:
    """Schema label maps of the three members; DAMAGED differs from FULL only on four L1 slices."""
    full = sample_schema_maps["seg_totalsegmentator_v2_full.nii.gz"]
    damaged = full.copy()
    l1 = default_schema()["vertebra_L1"].id
    for z in _damaged_slices(full):
        moved = np.roll(full[z] == l1, SHIFT_VOXELS, axis=0)
        damaged[z][damaged[z] == l1] = 0
        damaged[z][moved] = l1
    return {FULL: full, FAST: sample_schema_maps["seg_totalsegmentator_v2_fast.nii.gz"], DAMAGED: damaged}


def _damaged_slices(full: np.ndarray) -> list[int]:
    """The four slices where L1 is largest: enough of it to pull its mean Dice below the review threshold."""
    area = (full == default_schema()["vertebra_L1"].id).sum(axis=(1, 2))
    return sorted(int(z) for z in np.argsort(area)[-4:])


def _bone_masks(maps: dict[str, np.ndarray], bone: str) -> dict[str, np.ndarray]:
    bone_id = default_schema()[bone].id
    return {name: labels == bone_id for name, labels in maps.items()}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _result(ct, bone: str, masks: dict[str, np.ndarray]) -> BoneResult:
    """A BoneResult whose numbers come from the masks (mean Dice as score), so the picture matches the verdict."""
    names = tuple(masks)
    present = [n for n in names if masks[n].any()]
    pairs = {(a, b): _dice(masks[a], masks[b]) for a, b in itertools.combinations(names, 2) if masks[a].any() or masks[b].any()}
    score, status, outlier, agreement = math.nan, ABSENT, "", [math.nan] * len(names)
    if present and len(names) < 2:
        status = INSUFFICIENT
    elif present:
        score = float(np.mean(list(pairs.values())))
        status = REVIEW if score < REVIEW_BELOW else ACCEPT
        agreement = [float(np.mean([d for pair, d in pairs.items() if n in pair])) for n in names]
        outlier = names[int(np.argmin(agreement))] if status == REVIEW else ""
    voxel_ml = float(np.prod(ct.volume.spacing)) / 1000
    return BoneResult(
        series_uid=ct.series_instance_uid,
        study_uid=str(ct.datasets[0].StudyInstanceUID),
        bone=bone,
        level=default_schema()[bone].level,
        members=names,
        n_sources=len(names),
        n_present=len(present),
        dice_mean=score,
        dice_min=min(pairs.values(), default=math.nan),
        hd95_mm=math.nan,
        assd_mm=math.nan,
        nsd=math.nan,
        centroid_spread_mm=math.nan,
        volume_ml=np.count_nonzero(masks[names[0]]) * voxel_ml,
        volume_cv=math.nan,
        score=score,
        status=status,
        flags=(f"dice_low@{outlier}",) if outlier else (),
        outlier_source=outlier,
        member_agreement=tuple(agreement),
    )


@pytest.fixture(scope="module")
def cases(sample_ct, members) -> dict[str, tuple[dict[str, np.ndarray], BoneResult]]:
    """bone -> (masks, result): three compared bones, one seen by a single member, one outside the field of view."""
    found = {}
    for bone in ("vertebra_T12", "vertebra_L1", "rib_left_9", "vertebra_C1"):
        found[bone] = _bone_masks(members, bone)
    found["costal_cartilages"] = {FULL: _bone_masks(members, "costal_cartilages")[FULL]}
    return {bone: (masks, _result(sample_ct, bone, masks)) for bone, masks in found.items()}


def _snapshot(sample_ct, case):
    masks, result = case
    return take_snapshot(sample_ct.volume.array, sample_ct.volume.spacing, masks, result)


def test_snapshot_shows_a_damaged_slice_cropped(sample_ct, members, cases):
    masks, result = cases["vertebra_L1"]
    assert result.status == REVIEW and result.outlier_source == DAMAGED
    snap = _snapshot(sample_ct, cases["vertebra_L1"])
    assert snap.slice_axis == "axial"
    assert snap.slice_index in _damaged_slices(members[FULL])
    assert (snap.masks[DAMAGED] != snap.masks[FULL]).any()
    ct = sample_ct.volume.array
    assert snap.ct.dtype == np.float32 and all(m.dtype == bool for m in snap.masks.values())
    assert snap.ct.shape[0] < ct.shape[1] and snap.ct.shape[1] < ct.shape[2]
    assert list(snap.masks) == list(result.members)
    (r0, c0), (h, w) = snap.crop_origin, snap.ct.shape
    np.testing.assert_array_equal(snap.ct, ct[snap.slice_index, r0 : r0 + h, c0 : c0 + w])
    margin = math.ceil(15.0 / sample_ct.volume.spacing[1])
    for name, mask in masks.items():
        on_slice = mask[snap.slice_index]
        np.testing.assert_array_equal(snap.masks[name], on_slice[r0 : r0 + h, c0 : c0 + w])
        assert snap.masks[name].sum() == on_slice.sum()  # the crop cuts nothing of any member off
        if on_slice.any():  # the margin is there (this bone is away from the image border)
            rows, cols = np.nonzero(on_slice)
            assert rows.min() - r0 >= margin and cols.min() - c0 >= margin
    assert snap.score == result.score and snap.pixel_spacing == tuple(sample_ct.volume.spacing[1:])


def test_snapshot_of_agreeing_masks_takes_the_centroid_slice(sample_ct, cases):
    (mask,) = cases["costal_cartilages"][0].values()
    snap = _snapshot(sample_ct, cases["costal_cartilages"])
    centroid = np.argwhere(mask)[:, 0].mean()
    assert abs(snap.slice_index - centroid) <= 0.5 and mask[snap.slice_index].any()


def test_snapshot_is_none_when_every_mask_is_empty(sample_ct, cases):
    assert cases["vertebra_C1"][1].status == ABSENT
    assert _snapshot(sample_ct, cases["vertebra_C1"]) is None


def test_snapshot_rejects_masks_that_do_not_fit(sample_ct, cases):
    masks, result = cases["vertebra_T12"]
    ct, spacing = sample_ct.volume.array, sample_ct.volume.spacing
    with pytest.raises(TypeError, match="mask of 'TotalSegmentator 2 total' must be bool"):
        take_snapshot(ct, spacing, {**masks, FULL: masks[FULL].astype(np.uint8)}, result)
    with pytest.raises(ValueError, match="has shape"):
        take_snapshot(ct, spacing, {**masks, FAST: masks[FAST][:-1]}, result)
    with pytest.raises(ValueError, match="members are"):
        take_snapshot(ct, spacing, {FULL: masks[FULL]}, result)


class _Page(HTMLParser):
    """Collects what a reader sees: text, images and tables (by section heading); fails on unbalanced tags."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.text: list[str] = []
        self.images: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.heading = ""

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag in self.VOID:
            return
        self.open.append(tag)
        if tag == "h2":
            self.heading = ""
        elif tag == "table":
            self.tables[self.heading] = []
        elif tag == "tr":
            self.tables[self.heading].append([])
        elif tag in ("td", "th"):
            self.tables[self.heading][-1].append("")

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        self.text.append(data)
        if self.open and self.open[-1] == "h2":
            self.heading += data
        elif "td" in self.open or "th" in self.open:
            self.tables[self.heading][-1][-1] += data


def test_report_is_self_contained_escaped_and_anonymous(sample_ct, cases, tmp_path):
    results = [result for _, result in cases.values()]
    table = pd.DataFrame([r.as_row() for r in results], columns=TABLE_COLUMNS)
    snapshots = [s for s in (_snapshot(sample_ct, case) for case in cases.values()) if s is not None]
    assert len(snapshots) == len(cases) - 1  # all but the absent C1
    path = write_report(table, snapshots, tmp_path / "out" / "qc.html", settings_text="review below <0.9 & more")
    raw = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(raw)
    page.close()
    assert page.open == []
    text = "".join(page.text)

    assert len(page.images) == len(snapshots) + 2  # the heatmap, the model comparison and one per snapshot
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script" not in raw and "http" not in raw  # nothing external

    for result in results:
        assert result.bone in text
        assert all(name in text for name in result.members)
    assert DAMAGED in text and DAMAGED not in raw and "cpu&lt;baseline&gt;" in raw
    assert "review below <0.9 & more" in text and "&lt;0.9 &amp; more" in raw

    patient = sample_ct.datasets[0]
    for secret in (str(patient.PatientName), patient.PatientName.family_name, str(patient.PatientID)):
        assert secret not in raw

    bone_rows = page.tables["Bones"][1:]
    schema = default_schema()
    assert [row[1] for row in bone_rows] == sorted(table["bone"], key=lambda b: schema[b].id)
    summary = dict((row[0], row[1]) for row in page.tables["Summary"][1:])
    assert summary["Status review"] == str((table["status"] == REVIEW).sum())
    assert summary["Series"] == "1"
    worst = page.tables["Lowest scores (up to 20)"]
    assert len(worst) - 1 == table["score"].notna().sum()
    assert worst[1][1] == schema[table.loc[table["score"].idxmin(), "bone"]].display_name
    l1_row = next(row for row in worst if row[1] == schema["vertebra_L1"].display_name)
    assert l1_row[-1] == DAMAGED and f"dice_low@{DAMAGED}" in l1_row[-2]


def test_report_rejects_a_table_without_the_qc_columns(cases, tmp_path):
    table = pd.DataFrame([cases["vertebra_T12"][1].as_row()]).drop(columns=["score"])
    with pytest.raises(ValueError, match=r"lacks columns \['score'\]"):
        write_report(table, [], tmp_path / "qc.html")


def test_report_of_a_collection_caps_what_it_shows_per_series(sample_ct, cases, tmp_path, monkeypatch):
    """Past the caps the series table lists the series the other sections name, and the lowest-score snapshots show."""
    table = synthetic_table(MAX_SERIES_ROWS + 20)
    snapshot = _snapshot(sample_ct, cases["vertebra_L1"])
    snapshots = [replace(snapshot, score=score) for score in (0.5, 0.1, 0.9, 0.3)]
    monkeypatch.setattr(report, "MAX_SNAPSHOTS", 2)
    page = _Page()
    page.feed(write_report(table, snapshots, tmp_path / "qc.html").read_text(encoding="utf-8"))
    page.close()
    text = "".join(page.text)

    series_rows = page.tables["Series"][1:]
    assert MAX_HEATMAP_SERIES <= len(series_rows) <= MAX_HEATMAP_SERIES + WORST_ROWS
    assert f"Showing the {len(series_rows)} of {MAX_SERIES_ROWS + 20} series that the score heatmap" in text
    shown = {row[0] for row in series_rows}
    assert {row[0] for row in page.tables["Lowest scores (up to 20)"][1:]} <= shown  # every label there resolves
    assert len(page.images) == 2 + 2  # heatmap, model comparison, two snapshots
    assert "Showing the 2 of 4 snapshots with the lowest scores." in text
    assert "score 0.100;" in text and "score 0.300;" in text and "score 0.500;" not in text
    assert text.index("score 0.100;") < text.index("score 0.300;")  # in the order given
