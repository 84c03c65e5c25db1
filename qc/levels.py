"""Spine level rules: are the vertebra and rib labels where the anatomy says they belong?

Agreement between sources cannot see a run of vertebrae labelled one level off
when every source makes the same mistake (models trained on overlapping data
share errors). These rules place the spine in absolute terms from anchors, on one
view at a time (the consensus, or one member's own masks):

- **rib anchors**: rib k's medial end meets vertebra T k; ribs 2-9 may also meet
  T k-1 (their heads sit across the disc), rib 13 (a variant) meets L1. A contact
  elsewhere gives the offset ``vertebra label - expected level``;
- **skull anchor**: the highest vertebra, when it touches the skull, must be C1;
- **sacrum anchor**: the lowest vertebra touching the sacrum must be a lumbar
  vertebra L4-L6 (L4: a sacralised L5; L6: a lumbarised S1); else the offset to
  the nearest of those;
- **the chain**: vertebrae ordered from head to feet must carry consecutive
  labels (L6 optional; L4 or L5 may meet S1). T13, a variant, has no level of
  its own: it must lie between T12 and L1, it meets rib 13 (whose level is the
  one after T12), and the chain runs from T12 straight to L1 past it. The
  coccyx, below the sacrum, is no level either; it must lie below the sacrum.
  Where the labels skip a level, the
  chain splits into runs and the skipped levels form a gap; a doubled vertebra
  (two vertebrae under one label, well taller than its neighbours) ends a run.

A run holding an anchor with a non-zero offset is inconsistent: every vertebra of
it from that anchor outwards to the run's end or to an anchor that agrees, the
structures those vertebrae really are (the labels minus the offset, e.g. the T11
no source labelled when T11 was called T12), and the ribs on them are flagged
``level_shift`` with the likely shift (the most common offset; +1 means labelled
one level too low). A gap flags the skipped levels and, when no shifted run
explains it, both neighbours ``level_gap``. Self-consistent variants are
recorded as ``spine_variant`` (no penalty by default): an L6, a T13, a rib 13,
an L4 meeting the sacrum, a T12 without ribs below an 11th rib. A partial field of view
just has fewer anchors; without anchors nothing is judged.

Distances in mm in one frame for all points; ``z`` of a centroid is patient
superior (LPS). Vertebra levels are the schema ids C1 = 1 ... L5 = 24, L6 = 25,
S1 = 26 (T13's id, 194, is no level).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from labels.schema import BoneSchema

_VERTEBRA = re.compile(r"^vertebra_(C|T|L|S)(\d+)$")
_RIB = re.compile(r"^rib_(left|right)_(\d+)$")
SACRUM_PARTS = ("vertebra_S1", "sacrum_below_s1", "sacrum")
# Ribs 1, 10, 11 and 12 (and 13) articulate with their own vertebra only; the heads
# of ribs 2-9 sit across the disc between vertebra k-1 and vertebra k.
_SINGLE_FACET_RIBS = {1, 10, 11, 12, 13}
C1, T1, L1, L4, L5, L6, S1 = 1, 8, 20, 23, 24, 25, 26
T13 = "vertebra_T13"  # a variant between T12 and L1, outside the level chain
T13_RANK = L1 - 0.5  # its place in the head-to-feet order
COCCYX = "coccyx"
MEDIAL_SHARE = 0.05  # a rib's medial end: this share of its surface points nearest to a vertebra
DOUBLED_HEIGHT = 1.7  # a vertebra this many times taller than both neighbours holds two vertebrae


@dataclass(frozen=True)
class Anchor:
    """One piece of evidence on a vertebra's level: ``label - expected level``; ribs are strong, the sacrum weak."""

    offset: int
    strong: bool


@dataclass
class LevelFindings:
    """What the level rules found in one view: failed rules per structure and the likely shift per structure."""

    failed: dict[str, set[str]] = field(default_factory=dict)
    shift: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, rule: str, shift: int = 0) -> None:
        self.failed.setdefault(name, set()).add(rule)
        if shift:
            self.shift.setdefault(name, shift)


def is_vertebra(name: str) -> bool:
    return bool(_VERTEBRA.match(name))


def is_rib(name: str) -> bool:
    return bool(_RIB.match(name))


def rib_number(name: str) -> int:
    return int(_RIB.match(name).group(2))  # type: ignore[union-attr]


@dataclass(frozen=True)
class RibContact:
    """Where a rib's medial end lies: the vertebra it meets and its height (mm along the patient's superior axis)."""

    vertebra: str
    height_mm: float


def rib_contacts(ribs: Mapping[str, np.ndarray], vertebrae: Mapping[str, np.ndarray], contact_mm: float,
                 superior: np.ndarray) -> dict[str, RibContact]:
    """The vertebra each rib's medial end meets (ribs that come no closer than ``contact_mm`` are left out).

    The medial end is the 5 % of the rib's surface points nearest to any vertebra,
    of those within ``contact_mm`` (the search stops there, which keeps it fast).
    ``superior``: the vector whose dot product with a point gives its height.
    """
    named = [(name, points) for name, points in vertebrae.items() if len(points)]
    if not named:
        return {}
    tree = cKDTree(np.concatenate([points for _, points in named]))
    owner = np.repeat(np.arange(len(named)), [len(points) for _, points in named])
    contacts = {}
    for rib, points in ribs.items():
        if not len(points):
            continue
        distance, index = tree.query(points, k=1, distance_upper_bound=contact_mm)
        near = np.flatnonzero(np.isfinite(distance))
        if near.size:
            closest = near[np.argsort(distance[near], kind="stable")[:max(1, int(len(points) * MEDIAL_SHARE))]]
            vertebra = named[int(np.bincount(owner[index[closest]]).argmax())][0]
            contacts[rib] = RibContact(vertebra, float(np.mean(points[closest] @ superior)))
    return contacts


def rib_order(contacts: Mapping[str, RibContact]) -> set[str]:
    """Ribs of one side whose medial end is not below that of the rib numbered one less (neighbours swapped)."""
    flagged = set()
    for side in ("left", "right"):
        ribs = sorted((rib_number(r), r) for r in contacts if _RIB.match(r).group(1) == side)  # type: ignore[union-attr]
        for (_, upper), (_, lower) in zip(ribs, ribs[1:]):
            if contacts[upper].height_mm <= contacts[lower].height_mm:
                flagged |= {upper, lower}
    return flagged


def vertebra_order(centroids_lps: Mapping[str, np.ndarray], level: Mapping[str, float]) -> set[str]:
    """Vertebrae whose centre is not below that of the vertebra labelled one level up (any labelled level above)."""
    present = sorted((lvl, n) for n, lvl in level.items())
    flagged = set()
    for (_, upper), (_, lower) in zip(present, present[1:]):
        if centroids_lps[upper][2] <= centroids_lps[lower][2]:
            flagged |= {upper, lower}
    return flagged


def _coccyx_order(centroids_lps: Mapping[str, np.ndarray]) -> set[str]:
    """The coccyx when its centre is not below that of every part of the sacrum in view."""
    sacrum = [float(centroids_lps[n][2]) for n in SACRUM_PARTS if n in centroids_lps]
    if COCCYX in centroids_lps and sacrum and float(centroids_lps[COCCYX][2]) >= min(sacrum):
        return {COCCYX}
    return set()


def rib_offset(rib: str, vertebra_level: int) -> int:
    """``vertebra label - expected level`` of a rib's contact; 0 where the anatomy allows it."""
    k = rib_number(rib)
    d = vertebra_level - (T1 - 1 + k)  # rib k belongs to T k (rib 13 to the level after T12, L1)
    if k in _SINGLE_FACET_RIBS or d > 0:
        return d
    return 0 if d >= -1 else d + 1


def sacrum_offset(level: int) -> int:
    """``label - nearest plausible level`` of the lowest vertebra touching the sacrum (L4-L6 plausible)."""
    return level - min(max(level, L4), L6)


def _follows(upper: int, lower: int) -> bool:
    """Whether ``lower`` may come right below ``upper`` in a spine (L6 optional; L4 may meet S1)."""
    return lower == upper + 1 or (lower == S1 and upper in (L4, L5))


def spine_levels(centroids_lps: Mapping[str, np.ndarray], points_mm: Mapping[str, np.ndarray], superior: np.ndarray,
                 schema: BoneSchema, contact_mm: float) -> LevelFindings:
    """Level findings of one view from its present structures' centroids (LPS) and surface points (mm).

    ``superior``: the vector whose dot product with a surface point gives its height.
    """
    found = LevelFindings()
    level = {name: schema[name].id for name in centroids_lps if is_vertebra(name) and name != T13}
    chain = sorted((n for n in level if n != "vertebra_S1"), key=lambda n: -float(centroids_lps[n][2]))
    if "vertebra_S1" in level:
        chain.append("vertebra_S1")
    extra = [T13] if T13 in centroids_lps else []
    ribs = {n: p for n, p in points_mm.items() if is_rib(n)}
    contacts = rib_contacts(ribs, {n: points_mm[n] for n in chain + extra}, contact_mm, superior)
    ranks: dict[str, float] = {**level, **{n: T13_RANK for n in extra}}
    for name in vertebra_order(centroids_lps, ranks) | rib_order(contacts) | _coccyx_order(centroids_lps):
        found.add(name, "level_order")

    anchors: dict[str, list[Anchor]] = {}
    for rib, contact in contacts.items():
        offset = rib_offset(rib, level.get(contact.vertebra, L1))  # T13 sits at the level after T12
        anchors.setdefault(contact.vertebra, []).append(Anchor(offset, strong=True))
        if offset:
            found.add(rib, "rib_vertebra_level")
            found.add(contact.vertebra, "rib_vertebra_level")
    if (lowest := _lowest_on_sacrum(chain, points_mm, contact_mm)) is not None:
        anchors.setdefault(lowest, []).append(Anchor(sacrum_offset(level[lowest]), strong=False))
    if (top := _top_on_skull(chain, points_mm, contact_mm)) is not None:
        anchors.setdefault(top, []).append(Anchor(level[top] - C1, strong=True))

    doubled = _doubled(chain, points_mm, superior)
    runs = _runs(chain, level, doubled)
    _gaps(runs, level, anchors, doubled, schema, found)
    for run in runs:
        part, shift = _shifted_part(run, anchors, doubled)
        for vertebra in part:
            found.add(vertebra, "level_shift", shift)
            if (truth := level[vertebra] - shift) in schema and truth not in level.values() and 0 < truth <= S1:
                found.add(schema[truth].name, "level_shift", shift)
        for rib, contact in contacts.items():
            if contact.vertebra in part:
                found.add(rib, "level_shift", shift)
    _variants(level, lowest, centroids_lps, found)
    return found


def _lowest_on_sacrum(chain: list[str], points_mm: Mapping[str, np.ndarray], contact_mm: float) -> str | None:
    """The lowest vertebra (not S1) within ``contact_mm`` of the sacrum, if a sacrum is in view."""
    sacrum = [points_mm[n] for n in SACRUM_PARTS if n in points_mm and len(points_mm[n])]
    above = [n for n in chain if n != "vertebra_S1"]
    if not sacrum or not above:
        return None
    tree = cKDTree(np.concatenate(sacrum))
    for name in reversed(above):
        distance, _ = tree.query(points_mm[name], k=1, distance_upper_bound=contact_mm)
        if np.isfinite(distance).any():
            return name
    return None


def _runs(chain: list[str], level: Mapping[str, int], doubled: set[str]) -> list[list[str]]:
    """The chain cut where the labels do not follow each other, and after a doubled vertebra (a run ends there)."""
    runs: list[list[str]] = []
    for name in chain:
        if runs and _follows(level[runs[-1][-1]], level[name]) and runs[-1][-1] not in doubled:
            runs[-1].append(name)
        else:
            runs.append([name])
    return runs


def _top_on_skull(chain: list[str], points_mm: Mapping[str, np.ndarray], contact_mm: float) -> str | None:
    """The highest vertebra within ``contact_mm`` of the skull (it carries the skull: C1), if a skull is in view."""
    skull = points_mm.get("skull")
    if skull is None or not len(skull) or not chain:
        return None
    tree = cKDTree(skull)
    distance, _ = tree.query(points_mm[chain[0]], k=1, distance_upper_bound=contact_mm)
    return chain[0] if np.isfinite(distance).any() else None


def _shifted_part(run: list[str], anchors: Mapping[str, list[Anchor]], doubled: set[str]) -> tuple[list[str], int]:
    """The vertebrae of ``run`` an inconsistent anchor places off level, and the likely shift; ([], 0) if none.

    From the inconsistent anchors outwards to an anchor that agrees, the run's end, or
    a doubled vertebra (two vertebrae under one label: where a shifted run meets the rest).
    """
    anchored = {i: _one_offset(anchors[n]) for i, n in enumerate(run) if n in anchors}
    wrong = [i for i, offset in anchored.items() if offset]
    if not wrong:
        return [], 0
    agrees = {i for i, offset in anchored.items() if not offset}
    low, high = min(wrong), max(wrong)
    while low > 0 and low - 1 not in agrees and run[low] not in doubled:
        low -= 1
    while high < len(run) - 1 and high + 1 not in agrees and run[high] not in doubled:
        high += 1
    shift = Counter(anchored[i] for i in wrong).most_common(1)[0][0]
    part = [run[i] for i in range(low, high + 1) if i not in agrees]
    # a doubled vertebra next to the part holds one shifted vertebra, whatever its anchors say
    ends = [i for i in (low - 1, high + 1) if 0 <= i < len(run) and run[i] in doubled and run[i] not in part]
    return part + [run[i] for i in ends], shift


def _one_offset(anchors: list[Anchor]) -> int:
    """One vertebra's offset from its anchors: the most common one, 0 on a tie (a lone odd rib does not move a level)."""
    ranked = Counter(a.offset for a in anchors).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return 0
    return ranked[0][0]


def _proven(run: list[str], anchors: Mapping[str, list[Anchor]], doubled: set[str]) -> bool:
    """A run a rib or the skull anchors at the right level, with no anchor against it.

    Anchors on a doubled vertebra prove nothing: which of its two vertebrae they meet is unknown.
    """
    mine = [a for n in run if n not in doubled for a in anchors.get(n, [])]
    return any(a.strong and not a.offset for a in mine) and not _off_level(run, anchors)


def _off_level(run: list[str], anchors: Mapping[str, list[Anchor]]) -> bool:
    """A run whose anchors place some vertebra off level (its own shift explains a gap next to it)."""
    return any(_one_offset(anchors[n]) for n in run if n in anchors)


def _gaps(runs: list[list[str]], level: Mapping[str, int], anchors: dict[str, list[Anchor]], doubled: set[str],
          schema: BoneSchema, found: LevelFindings) -> None:
    """Levels the labels skip between two runs; the side of the gap that no rib proves right counts as shifted.

    With the upper run proven, the lower run's labels are too low by the levels skipped
    (an anchor of that offset on its first vertebra); with the lower run proven, the
    reverse. When neither side is proven, both neighbours of the gap are flagged.
    """
    for upper, lower in zip(runs, runs[1:]):
        a, b = level[upper[-1]], level[lower[0]]
        missing = [m for m in range(a + 1, b) if m != L6 and m in schema]
        if not missing or all(m in level.values() for m in missing):
            continue  # labels out of order, not skipped: the level order rule's case
        for m in missing:
            found.add(schema[m].name, "level_gap")
        upper_proven, lower_proven = _proven(upper, anchors, doubled), _proven(lower, anchors, doubled)
        if upper_proven and not lower_proven:
            anchors.setdefault(lower[0], []).append(Anchor(len(missing), strong=False))
        elif lower_proven and not upper_proven:
            anchors.setdefault(upper[-1], []).append(Anchor(-len(missing), strong=False))
        elif not (upper_proven or _off_level(upper, anchors) or _off_level(lower, anchors)):
            found.add(upper[-1], "level_gap")  # nothing says which side is wrong
            found.add(lower[0], "level_gap")


def _doubled(chain: list[str], points_mm: Mapping[str, np.ndarray], superior: np.ndarray) -> set[str]:
    """Vertebrae whose height is well over that of both neighbours in the chain: two vertebrae under one label."""
    extent = {n: float(np.ptp(points_mm[n] @ superior)) if len(points_mm[n]) else 0.0 for n in chain}
    doubled = set()
    for i, name in enumerate(chain):
        neighbours = [extent[chain[j]] for j in (i - 1, i + 1) if 0 <= j < len(chain)]
        if neighbours and extent[name] > DOUBLED_HEIGHT * max(neighbours):
            doubled.add(name)
    return doubled


def _variants(level: Mapping[str, int], on_sacrum: str | None, centroids_lps: Mapping[str, np.ndarray],
              found: LevelFindings) -> None:
    """Unusual but self-consistent anatomy: recorded, not penalised by default."""
    def clean(name: str) -> bool:
        return name not in found.failed

    if "vertebra_L6" in level and clean("vertebra_L6"):
        found.add("vertebra_L6", "spine_variant")  # lumbarised S1: six lumbar vertebrae
    if T13 in centroids_lps and clean(T13):
        found.add(T13, "spine_variant")  # thirteen thoracic vertebrae
    for rib in (n for n in centroids_lps if is_rib(n) and rib_number(n) == 13):
        if clean(rib):
            found.add(rib, "spine_variant")  # a thirteenth rib
    if on_sacrum is not None and level[on_sacrum] == L4 and clean(on_sacrum):
        found.add(on_sacrum, "spine_variant")  # sacralised L5: four lumbar vertebrae
    ribs_11 = [n for n in centroids_lps if is_rib(n) and rib_number(n) == 11]
    ribs_12 = [n for n in centroids_lps if is_rib(n) and rib_number(n) == 12]
    if "vertebra_T12" in level and ribs_11 and not ribs_12 and clean("vertebra_T12"):
        found.add("vertebra_T12", "spine_variant")  # eleven rib pairs: T12 bears no rib
