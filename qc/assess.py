"""QC of one series: N schema label maps on one grid in, one ``BoneResult`` per compared structure out.

Fast path (docs/qc_method.md): each label map is scanned once (``find_objects``) for the
boxes of its labels; every structure is then handled on the union box of its
masks plus one voxel, with surface points in KD-trees, so the cost follows the
bones' size, not the volume's. Results equal the full-volume computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labels.errors import BoneHubInputError
from labels.schema import BoneSchema, default_schema
from qc import levels, rules
from qc.boxes import Box, grow_box, label_boxes, union_box
from qc.metrics import MaskSurface, PairMetrics, compare, overlap
from qc.results import BoneResult, Member
from qc.score import QcSettings, agreement, outlier_source, score_and_status
from qc.units import Unit, comparison_units, finest_units


class QcInputError(BoneHubInputError):
    """Segmentations that cannot be compared: other grids, labels outside the schema, nothing to compare."""


@dataclass
class _Compared:
    """One unit after the metrics, before the series-wide rules and the score."""

    unit: Unit
    box: Box | None
    surfaces: list[MaskSurface]  # one per unit member
    consensus: MaskSurface | None
    pairs: list[PairMetrics]
    agreements: list[float]
    flags: set[str]
    consensus_rules: set[str]
    votes: np.ndarray | None = None  # per voxel of the box, how many members have it (uint8)
    level_shift: int = 0  # from the consensus view's spine level rules


@dataclass
class SeriesQC:
    """Everything QC found for one series; ``masks`` gives a structure's per-member masks for pictures."""

    results: list[BoneResult]
    consensus: np.ndarray  # uint16 schema ids on the series grid (finest compared structures)
    members: list[Member]
    label_maps: Sequence[np.ndarray]
    boxes: dict[str, Box]
    units: dict[str, Unit]

    def masks(self, structure: str, grow: tuple[int, int, int] = (0, 0, 0)) -> tuple[Box, dict[str, np.ndarray]]:
        """The crop box of ``structure`` (grown by ``grow`` voxels per axis) and each compared member's mask on it."""
        unit, shape = self.units[structure], self.consensus.shape
        box = grow_box(self.boxes[structure], grow, shape)
        return box, {self.members[i].name: np.isin(self.label_maps[i][box], unit.ids) for i in unit.members}


def assess_series(series_uid: str, study_uid: str, members: Sequence[Member], label_maps: Sequence[np.ndarray],
                  affine: np.ndarray, settings: QcSettings | None = None, schema: BoneSchema | None = None) -> SeriesQC:
    """Compare the schema label maps of one series (one per member, same grid; ``affine``: index → LPS mm)."""
    settings = settings or QcSettings()
    schema = schema or default_schema()
    _check_inputs(series_uid, members, label_maps)
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    shape = label_maps[0].shape
    boxes_by_member = [_label_boxes(m, member, schema) for m, member in zip(label_maps, members)]
    units = comparison_units([[schema[i].name for i in boxes] for boxes in boxes_by_member], schema,
                             [m.vocabulary for m in members])

    compared = [_compare_unit(unit, label_maps, boxes_by_member, members, spacing, settings, schema) for unit in units]
    _series_rules(compared, members, affine, settings, schema)
    consensus, segment_numbers = _consensus_map(compared, shape, schema)
    results = [_result(c, series_uid, study_uid, members, voxel_ml, segment_numbers, settings, schema) for c in compared]
    return SeriesQC(results, consensus, list(members), label_maps,
                    {c.unit.structure: c.box for c in compared if c.box is not None}, {u.structure: u for u in units})


def _check_inputs(series_uid: str, members: Sequence[Member], label_maps: Sequence[np.ndarray]) -> None:
    if len(members) != len(label_maps):
        raise QcInputError(f"series {series_uid}: {len(members)} members but {len(label_maps)} label maps")
    if not label_maps:
        raise QcInputError(f"series {series_uid}: no segmentation to check")
    shapes = {m.name: lm.shape for m, lm in zip(members, label_maps)}
    if len(set(shapes.values())) > 1:
        raise QcInputError(f"series {series_uid}: segmentations are on different grids {shapes}; bring them onto the CT grid first")
    if len(set(shapes)) < len(members):
        raise QcInputError(f"series {series_uid}: the same segmentation is listed twice: {[m.name for m in members]}")
    for member, label_map in zip(members, label_maps):
        if label_map.dtype.kind not in "iu":
            raise QcInputError(f"series {series_uid}, {member.name}: label map must hold integer schema ids, got {label_map.dtype}")


def _label_boxes(label_map: np.ndarray, member: Member, schema: BoneSchema) -> dict[int, Box]:
    """Bounding box of every schema id in the map, from one pass over it."""
    boxes = label_boxes(label_map)
    if unknown := sorted(i for i in boxes if i not in schema):
        raise QcInputError(f"{member.name} (SEG {member.seg_sop_uid}): label value(s) {unknown} are not schema ids")
    return boxes


def _union_box(boxes: list[Box], shape: tuple[int, ...]) -> Box:
    """The smallest box holding all ``boxes``, grown by one voxel of background where the volume allows."""
    return grow_box(union_box(boxes), (1, 1, 1), shape)


def _majority(votes: np.ndarray, voters: int) -> np.ndarray:
    """Majority vote with ties counted in: at least half of the voters (so two voters give their union)."""
    return 2 * votes.astype(np.int16) >= voters


def _leave_one_out_agreement(member: MaskSurface, votes: np.ndarray, n: int, tolerance_mm: float) -> float:
    """Agreement of ``member`` with the majority of the other ``n - 1`` members; ties count half.

    With an even number of other members a voxel can have exactly half the votes.
    Counting such ties in (union-like) lets one dilated member drag every other
    member's consensus with it; leaving them out (intersection-like) does the same
    for an eroded one. So the agreement is the mean of the two.
    """
    if n == 1:
        return 1.0
    others = votes - member.mask  # the other members' votes (the member's own is among ``votes``, so never below 0)
    half = (n - 1) // 2
    strict = MaskSurface(others > half, member.spacing, member.origin)  # more than half of the n - 1 others
    result = agreement(overlap(member, strict, tolerance_mm))
    if (n - 1) % 2 == 0 and (ties := others == half).any():
        with_ties = MaskSurface(strict.mask | ties, member.spacing, member.origin)
        result = 0.5 * (result + agreement(overlap(member, with_ties, tolerance_mm)))
    return result


def _compare_unit(unit: Unit, label_maps: Sequence[np.ndarray], boxes_by_member: list[dict[int, Box]],
                  members: Sequence[Member], spacing: tuple[float, float, float], settings: QcSettings,
                  schema: BoneSchema) -> _Compared:
    found = [boxes_by_member[i][v] for i in unit.members for v in unit.ids if v in boxes_by_member[i]]
    if not found:
        return _Compared(unit, None, [], None, [], [1.0] * len(unit.members), set(), set())
    shape = label_maps[0].shape
    box = _union_box(found, shape)
    origin = np.array([s.start for s in box])
    ids = np.asarray(unit.ids)
    surfaces = []
    for i in unit.members:
        crop = label_maps[i][box]
        surfaces.append(MaskSurface(crop == ids[0] if ids.size == 1 else np.isin(crop, ids), spacing, origin))
    votes = np.sum([s.mask for s in surfaces], axis=0, dtype=np.uint8)
    n = len(surfaces)
    consensus = MaskSurface(_majority(votes, n), spacing, origin)
    tolerance = settings.tolerance_mm(unit.structure)
    agreements = [_leave_one_out_agreement(s, votes, n, tolerance) for s in surfaces]
    pairs = [p for a in range(n) for b in range(a + 1, n) if (p := compare(surfaces[a], surfaces[b], tolerance))]
    compared = _Compared(unit, box, surfaces, consensus, pairs, agreements, set(), set(), votes)
    _mask_rules(compared, [members[i] for i in unit.members], shape, settings, schema)
    return compared


def _mask_rules(c: _Compared, members: Sequence[Member], shape: tuple[int, ...], settings: QcSettings,
                schema: BoneSchema) -> None:
    """Rules judged on one mask: on the consensus (they lower the score) and on each member (named in flags)."""
    structure = schema[c.unit.structure]
    voxel_ml = float(np.prod(c.consensus.spacing)) / 1000.0

    def failed(mask: MaskSurface) -> set[str]:
        if mask.empty:
            return set()
        found = set()
        cut = rules.touches_volume_border(c.box, mask.mask, shape)
        if cut:
            found.add("fov_cutoff")
        if structure.level == "bone":
            if structure.name not in settings.multi_part and rules.extra_components(mask.mask, voxel_ml, settings.extra_component_ml):
                found.add("extra_components")
            if not cut and mask.voxels * voxel_ml < settings.min_volume(structure.name):
                found.add("too_small")
        return found

    c.consensus_rules |= failed(c.consensus)
    c.flags |= c.consensus_rules
    for member, surface in zip(members, c.surfaces):
        c.flags |= {f"{rule}@{member.name}" for rule in failed(surface) - c.consensus_rules}


def _series_rules(compared: list[_Compared], members: Sequence[Member], affine: np.ndarray, settings: QcSettings,
                  schema: BoneSchema) -> None:
    """Rules that need several structures: side against the midline, vertebra order, spine levels (``qc.levels``).

    Judged on the consensus and again on each member's own masks, which names a
    member whose levels are shifted even where the consensus is right.
    """
    spine = [c for c in compared if c.box is not None and (schema[c.unit.structure].level == "bone"
                                                           or c.unit.structure in levels.SACRUM_PARTS)]
    views: list[tuple[str | None, dict[str, MaskSurface]]] = [(None, {c.unit.structure: c.consensus for c in spine})]
    for index, member in enumerate(members):
        views.append((member.name, {c.unit.structure: c.surfaces[c.unit.members.index(index)]
                                    for c in spine if index in c.unit.members}))
    by_name = {c.unit.structure: c for c in compared}
    superior = affine[2, :3] / np.linalg.norm(affine[:3, :3], axis=0)  # height (LPS z) per mm along each array axis
    for who, surfaces in views:
        present = {name: s for name, s in surfaces.items() if not s.empty}
        centroids = {name: affine[:3, :3] @ (s.centroid_mm / s.spacing) + affine[:3, 3] for name, s in present.items()}
        midline = rules.midline_x(centroids, schema)
        found = levels.spine_levels(centroids, {n: s.points_mm for n, s in present.items()}, superior, schema,
                                    settings.rib_contact_mm)
        for name, c in centroids.items():
            if rules.wrong_side(c, schema[name].laterality, midline):
                found.add(name, "wrong_side")
        for name, failed in found.failed.items():
            if (c := by_name.get(name)) is None:
                continue  # a level nobody can label here
            if who is None:
                c.consensus_rules |= failed
                c.flags |= failed
                c.level_shift = found.shift.get(name, 0)
            else:
                c.flags |= {f"{rule}@{who}" for rule in failed - c.consensus_rules}


def _consensus_map(compared: list[_Compared], shape: tuple[int, ...], schema: BoneSchema) -> tuple[np.ndarray, dict[str, int]]:
    """Majority-vote label map of the finest compared structures, and each one's segment number in its SEG.

    Where two structures' majorities overlap, the voxel goes to the one more
    members voted for (the first in schema order on a tie).
    """
    consensus = np.zeros(shape, np.uint16)
    support = np.zeros(shape, np.float32)
    finest = {u.structure for u in finest_units([c.unit for c in compared], schema)}
    written: dict[int, Box] = {}
    for c in compared:
        if c.unit.structure not in finest or c.consensus is None or c.consensus.empty:
            continue
        votes = c.votes / len(c.surfaces)
        wins = c.consensus.mask & (votes > support[c.box])
        written[schema[c.unit.structure].id] = c.box
        consensus[c.box][wins] = schema[c.unit.structure].id
        support[c.box][wins] = votes[wins]
    present = sorted(v for v, box in written.items() if (consensus[box] == v).any())  # not all overwritten by others
    return consensus, {schema[v].name: number for number, v in enumerate(present, start=1)}


def _result(c: _Compared, series_uid: str, study_uid: str, members: Sequence[Member], voxel_ml: float,
            segment_numbers: dict[str, int], settings: QcSettings, schema: BoneSchema) -> BoneResult:
    compared_members = [members[i] for i in c.unit.members]
    present = [s for s in c.surfaces if not s.empty]
    if 0 < len(present) < len(compared_members):
        c.flags.add("presence")  # some members found it, some did not
    score, status = score_and_status(c.agreements, len(present), sorted(c.consensus_rules), settings)
    volumes = np.array([s.voxels * voxel_ml for s in present])
    has_consensus = c.consensus is not None and not c.consensus.empty
    spread = [float(np.linalg.norm(s.centroid_mm - c.consensus.centroid_mm)) for s in present] if has_consensus else []
    sources = [f"{m.source} {m.version}" for m in compared_members]
    return BoneResult(
        series_uid=series_uid, study_uid=study_uid, bone=c.unit.structure, level=schema[c.unit.structure].level,
        members=tuple(m.name for m in compared_members), n_sources=len(compared_members), n_present=len(present),
        dice_mean=_mean([p.dice for p in c.pairs]), dice_min=_min([p.dice for p in c.pairs]),
        hd95_mm=_mean([p.hd95_mm for p in c.pairs]), assd_mm=_mean([p.assd_mm for p in c.pairs]),
        nsd=_mean([p.nsd for p in c.pairs]), centroid_spread_mm=max(spread, default=math.nan),
        volume_ml=(c.consensus.voxels * voxel_ml) if has_consensus else 0.0,
        volume_cv=float(volumes.std() / volumes.mean()) if len(volumes) > 1 else math.nan,
        score=score, status=status, flags=tuple(sorted(c.flags)),
        outlier_source=outlier_source(c.agreements, sources, settings) if status == "review" else "",
        member_agreement=tuple(c.agreements), consensus_segment=segment_numbers.get(c.unit.structure, 0),
        member_present=tuple(not s.empty for s in c.surfaces) if c.surfaces else (False,) * len(compared_members),
        level_shift=c.level_shift,
    )


def _mean(values: list[float]) -> float:
    """Mean over the defined values; NaN when there are none (never inf)."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def _min(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(min(defined)) if defined else math.nan
