"""Does QC find bones that are known to be wrong? Errors injected one at a time, judged by QC's own verdicts.

Stage 2 has no ground truth, so its detection power is measured by damaging
one bone (or one run of bones) of one member at a time with
``bench.error_injection`` and running ``assess_series`` on the series:

- **sample** (always): the bundled real 30-slice 3 mm CT with three members,
  TotalSegmentator full, TotalSegmentator fast (the two real results) and the full
  result sent through a 5-degree rotation and back with nearest neighbour (what an
  augmented run adds: resampling noise). Three members because with two the one
  that is wrong cannot be named: each disagrees with the other equally. The fast
  member is damaged.
- **phantom** (``--phantom``): the whole-skeleton phantom (63 bones) on a 5 x 3 x 3 mm
  grid with three members, the phantom and two copies with seeded boundary noise;
  the second member is damaged.

Every bone present in all members is damaged once per error type: eroded and
dilated by 2 voxels, moved by 5 mm along a seeded patient axis (rounded to whole
voxels), deleted, swapped with the level below, and as the first of a run of three
levels labelled one level off. Per error type: AUROC of (1 - score) between damaged
and untouched bones, the share of bones sent to review, sensitivity (damaged bones
sent to review), false alarms (untouched bones sent to review) and how often the
damaged member's source is named as the outlier (over all damaged bones).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import numpy as np
from scipy.stats import rankdata

from bench import error_injection as inject
from bench import phantom_numberings as numberings
from bench.publish import publish
from bench.skeleton_phantom import make_phantom
from dicom_io.ct_series import read_ct_series
from dicom_io.label_images import read_label_image
from labels.label_sets import load_label_set
from labels.schema import default_schema
from models.augment import Rotation, invert
from models.harmonize import harmonize_on_ct
from qc.assess import assess_series
from qc.metrics import MaskSurface
from qc import levels
from qc.results import REVIEW, BoneResult, Member
from qc.score import QcSettings

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "qc_detection.json"
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample" / "ts_abdomen_3mm"
SAMPLE_FULL, SAMPLE_FAST = "seg_totalsegmentator_v2_full.nii.gz", "seg_totalsegmentator_v2_fast.nii.gz"
ROTATION_DEGREES = (0.0, 0.0, 5.0)
PHANTOM_SHAPE = (300, 154, 154)  # the phantom's 1500 x 460.8 x 460.8 mm field of view at 5 x 3 x 3 mm
PHANTOM_NOISE = 0.03  # share of boundary voxels per face that take a neighbour's label in members 2 and 3
ERRORS = ("erode", "dilate", "shift", "delete", "swap", "shift_levels")
ALIKE_ERRORS = ("shift_levels", "swap", "side_swap")  # made in every member alike
GOALS = {"auroc": 0.95, "sensitivity": 0.90, "false_alarm_rate": 0.20}
MORPH_VOXELS = 2  # erode / dilate: 6 mm at 3 mm voxels, clearly an error to a reader
SHIFT_MM = 5.0
RUN_LENGTH = 3  # shift_levels: levels per mislabelled run
SEED = 0


@dataclass(frozen=True)
class Series:
    """One series to damage: its members and label maps (one grid), and which member the errors go into."""

    name: str
    members: list[Member]
    label_maps: list[np.ndarray]
    affine: np.ndarray
    damaged_member: int

    @property
    def damaged_source(self) -> str:
        """The source label QC names as the outlier (``f"{source} {version}"``, as ``qc.assess`` groups members)."""
        member = self.members[self.damaged_member]
        return f"{member.source} {member.version}"

    def assess(self, damaged_map: np.ndarray | None = None, maps: Sequence[np.ndarray] | None = None) -> dict[str, BoneResult]:
        """QC of the series, with ``damaged_map`` in place of the damaged member's map, or ``maps`` for all, when given."""
        maps = list(maps if maps is not None else self.label_maps)
        if damaged_map is not None:
            maps[self.damaged_member] = damaged_map
        qc = assess_series(f"bench.qc_detection.{self.name}", "bench.qc_detection", self.members, maps, self.affine)
        return {r.bone: r for r in qc.results}


def _member(source: str, version: str, augmentation: str = "none", vocabulary: frozenset[str] | None = None) -> Member:
    key = f"{source}.{version}.{augmentation}"
    return Member(source, version, augmentation, seg_series_uid=f"bench.{key}.series", seg_sop_uid=f"bench.{key}.sop",
                  vocabulary=vocabulary)


def rotation_round_trip(label_map: np.ndarray, volume: hd.Volume, degrees: Sequence[float] = ROTATION_DEGREES) -> np.ndarray:
    """``label_map`` rotated as ``models.augment.apply`` rotates the CT, then inverted: nearest-neighbour noise twice.

    ``invert`` moves labels by the inverse of a rotation; about one axis that is the
    rotation by the opposite angles, so the forward move is ``invert`` of the opposite.
    """
    rotated = invert(Rotation(tuple(-d for d in degrees)), label_map, volume)
    return invert(Rotation(tuple(degrees)), rotated, volume)


def sample_series(ct_volume: hd.Volume, full: np.ndarray, fast: np.ndarray) -> Series:
    """TotalSegmentator full, fast (damaged) and full after a rotation round trip, on the sample CT's grid."""
    rotation = str(Rotation(ROTATION_DEGREES))
    vocabulary = load_label_set("totalsegmentator_total").emitted()
    members = [_member("TotalSegmentator", "full", vocabulary=vocabulary), _member("TotalSegmentator", "fast", vocabulary=vocabulary),
               _member("TotalSegmentator", "full", rotation, vocabulary=vocabulary)]
    maps = [full, fast, rotation_round_trip(full, ct_volume)]
    return Series("sample", members, maps, ct_volume.affine, damaged_member=1)


def load_sample(sample_dir: Path = SAMPLE_DIR) -> Series:
    """The bundled CT and its two real TotalSegmentator results, harmonized onto the CT grid."""
    ct = read_ct_series(sample_dir / "ct")
    label_set = load_label_set("totalsegmentator_total")
    full, fast = (harmonize_on_ct(read_label_image(sample_dir / name), label_set, ct) for name in (SAMPLE_FULL, SAMPLE_FAST))
    return sample_series(ct.volume, full, fast)


def phantom_series(shape: Sequence[int] = PHANTOM_SHAPE) -> Series:
    """The phantom in schema ids and two copies with seeded boundary noise; the second member is damaged."""
    volume, native = make_phantom(shape)
    labels = load_label_set("totalsegmentator_total").harmonize(native)
    vocabulary = load_label_set("totalsegmentator_total").emitted()
    members = [_member(f"phantom {name}", "1", vocabulary=vocabulary) for name in "ABC"]
    maps = [labels, inject.boundary_noise(labels, PHANTOM_NOISE, 1), inject.boundary_noise(labels, PHANTOM_NOISE, 2)]
    return Series("phantom", members, maps, volume.affine, damaged_member=1)


def granularity_series(shape: Sequence[int] = PHANTOM_SHAPE) -> Series:
    """The phantom as TotalSegmentator v2, v1 and MOOSE ``clin_ct_vertebrae`` deliver it (each its own label set); MOOSE is damaged.

    v2 labels S1 apart from the rest of the sacrum, v1 and MOOSE the sacrum whole;
    MOOSE labels no ribs. Each member records its source's vocabulary, as its SEG does.
    """
    volume, native = make_phantom(shape)
    names = (numberings.V2, numberings.V1, numberings.MOOSE_VERTEBRAE)
    members = [_member(name, "phantom", vocabulary=numberings.vocabulary(name)) for name in names]
    maps = [numberings.schema_map(native, names[0]),
            inject.boundary_noise(numberings.schema_map(native, names[1]), PHANTOM_NOISE, 1),
            inject.boundary_noise(numberings.schema_map(native, names[2]), PHANTOM_NOISE, 2)]
    return Series("granularity", members, maps, volume.affine, damaged_member=2)


def common_bones(series: Series) -> list[str]:
    """Bones present in every member, in schema order."""
    schema = default_schema()
    present = set.intersection(*(set(np.flatnonzero(np.bincount(m.ravel()))) for m in series.label_maps)) - {0}
    return [schema[int(i)].name for i in sorted(present)]


def _next_level(bone: str, by: int = 1) -> str | None:
    try:
        return inject.level_after(bone, by)
    except ValueError:
        return None


def injections(series: Series, seed: int = SEED) -> Iterator[tuple[str, inject.Injury]]:
    """Every (error type, injury) of the benchmark, in a fixed order; shifts take a seeded axis and sign."""
    target = series.label_maps[series.damaged_member]
    bones = common_bones(series)
    rng = np.random.default_rng(seed)
    for bone in bones:
        yield "erode", inject.erode(target, bone, MORPH_VOXELS)
        yield "dilate", inject.dilate(target, bone, MORPH_VOXELS)
        axis, sign = inject.PATIENT_AXES[int(rng.integers(3))], float(rng.choice([-1.0, 1.0]))
        if inject.voxel_shift(sign * SHIFT_MM, series.affine, axis)[1]:  # on coarse slices 5 mm can round to nothing
            yield "shift", inject.shift(target, bone, sign * SHIFT_MM, series.affine, axis)
        yield "delete", inject.delete(target, bone)
        if (below := _next_level(bone)) in bones:
            yield "swap", inject.swap(target, bone, below)
        run = [bone] + [_next_level(bone, k) for k in range(1, RUN_LENGTH)]
        if all(level in bones for level in run) and _labels_it_can(series, _next_level(run[-1])):
            yield "shift_levels", inject.shift_levels(target, run)


def alike_injections(series: Series) -> Iterator[tuple[str, inject.Injury, list[np.ndarray]]]:
    """The same error in every member (errors models trained on overlapping data share): kind, injury, all maps.

    Runs of vertebrae labelled one level off, neighbouring vertebrae swapped, and all
    ribs labelled on the wrong side; the injury is the one made in the first member, and
    a rib that meets a relabelled vertebra counts as damaged when the vertebra's new label is
    one that rib cannot meet (its pairing is now wrong; ribs 2-9 may meet two levels).
    """
    vertebrae = [b for b in common_bones(series) if levels.is_vertebra(b)]
    ribs = [b for b in common_bones(series) if levels.is_rib(b)]
    contacts = rib_contacts(series)

    def everywhere(damage, relabelled: dict[str, str] | None = None) -> tuple[inject.Injury, list[np.ndarray]]:
        injuries = [damage(m) for m in series.label_maps]
        first = injuries[0]
        schema = default_schema()
        on_them = {rib for rib, vertebra in contacts.items()  # ribs whose vertebra now carries a label they cannot meet
                   if vertebra in (relabelled or {}) and levels.rib_offset(rib, schema[relabelled[vertebra]].id)}
        return (inject.Injury(first.label_map, first.damaged | on_them, first.description),
                [i.label_map for i in injuries])

    for bone in vertebrae:
        run = [bone] + [_next_level(bone, k) for k in range(1, RUN_LENGTH)]
        if all(level in vertebrae for level in run):
            shifted = {v: _next_level(v) for v in run}
            yield ("shift_levels", *everywhere(lambda m, run=run: inject.shift_levels(m, run), shifted))
        if (below := _next_level(bone)) in vertebrae:
            yield ("swap", *everywhere(lambda m, below=below, bone=bone: inject.swap(m, bone, below), {bone: below, below: bone}))
    if any(default_schema()[b].laterality == "left" for b in ribs):
        yield ("side_swap", *everywhere(lambda m: inject.swap_sides(m, ribs)))


def rib_contacts(series: Series) -> dict[str, str]:
    """Which vertebra each rib meets in the undamaged first member (the rule's own contact test)."""
    label_map, schema = series.label_maps[0], default_schema()
    spacing = np.linalg.norm(series.affine[:3, :3], axis=0)
    points = {}
    for structure in schema.bones():
        if (levels.is_rib(structure.name) or levels.is_vertebra(structure.name)) and (mask := label_map == structure.id).any():
            points[structure.name] = MaskSurface(mask, tuple(spacing)).points_mm
    ribs = {n: p for n, p in points.items() if levels.is_rib(n)}
    vertebrae = {n: p for n, p in points.items() if levels.is_vertebra(n)}
    contacts = levels.rib_contacts(ribs, vertebrae, QcSettings().rib_contact_mm, series.affine[2, :3] / spacing)
    return {rib: contact.vertebra for rib, contact in contacts.items()}


def _labels_it_can(series: Series, structure: str | None) -> bool:
    """Whether the damaged member's source could produce this label (a source never emits one outside its vocabulary)."""
    vocabulary = series.members[series.damaged_member].vocabulary
    return structure is not None and (vocabulary is None or structure in vocabulary)


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Chance that a damaged bone is more suspicious than an untouched one, ties half (Mann-Whitney U / (P N))."""
    if not positives or not negatives:
        return math.nan
    ranks = rankdata(np.concatenate([positives, negatives]))
    p = len(positives)
    return float((ranks[:p].sum() - p * (p + 1) / 2) / (p * len(negatives)))


def _suspicion(result: BoneResult | None) -> float:
    """1 - score; a damaged bone without a score (no row, absent, insufficient sources) counts as not suspicious."""
    return 0.0 if result is None or math.isnan(result.score) else 1.0 - result.score


@dataclass
class _Tally:
    """What one error type's injections produced, bone by bone."""

    injections: int = 0
    unchanged: int = 0  # injuries that left the map as it was (not assessed)
    damaged: list[tuple[str, str, BoneResult | None]] = field(default_factory=list)  # (bone, description, result)
    untouched: list[BoneResult] = field(default_factory=list)

    def add(self, injury: inject.Injury, results: dict[str, BoneResult]) -> None:
        self.damaged += [(bone, injury.description, results.get(bone)) for bone in sorted(injury.damaged)]
        self.untouched += [r for b, r in results.items() if b not in injury.damaged and not math.isnan(r.score)]

    def summary(self, source: str | None) -> dict:
        """Detection figures; ``source``: the damaged source QC should name (None: every member was damaged alike)."""
        def flagged(results: list[BoneResult | None]) -> int:
            return sum(r is not None and r.status == REVIEW for r in results)

        damaged = [r for _, _, r in self.damaged]
        every = damaged + self.untouched
        found = {
            "injections": self.injections,
            "unchanged_skipped": self.unchanged,
            "damaged_bones": len(damaged),
            "untouched_bones": len(self.untouched),
            "auroc": auroc([_suspicion(r) for r in damaged], [_suspicion(r) for r in self.untouched]),
            "flagged_share": flagged(every) / len(every) if every else math.nan,
            "sensitivity": flagged(damaged) / len(damaged) if damaged else math.nan,
            "false_alarm_rate": flagged(self.untouched) / len(self.untouched) if self.untouched else math.nan,
            "unscored": sum(r is None or math.isnan(r.score) for r in damaged),
            "missed": [f"{bone}: {what} ({'no row' if r is None else f'{r.status}, score {r.score:.3f}'})"
                       for bone, what, r in self.damaged if r is None or r.status != REVIEW],
        }
        if source is not None:
            found["outlier_named"] = sum(r is not None and r.outlier_source == source for r in damaged) / len(damaged) if damaged else math.nan
            found["misnamed"] = [f"{bone}: {what} (named {r.outlier_source!r})" for bone, what, r in self.damaged
                                 if r is not None and r.status == REVIEW and r.outlier_source != source]
        return found


def _baseline(series: Series) -> tuple[dict[str, BoneResult], dict]:
    undamaged = series.assess()
    scored = {b: r for b, r in undamaged.items() if not math.isnan(r.score)}
    return undamaged, {
        "scored_bones": len(scored),
        "review": sorted(b for b, r in scored.items() if r.status == REVIEW),
        "flagged_share": sum(r.status == REVIEW for r in scored.values()) / len(scored) if scored else math.nan,
    }


def detect(series: Series, seed: int = SEED) -> dict:
    """The undamaged verdicts and, per error type, how QC judged the damaged and the untouched bones (one member damaged)."""
    _, baseline = _baseline(series)
    tallies = {error: _Tally() for error in ERRORS}
    original = series.label_maps[series.damaged_member]
    for error, injury in injections(series, seed):
        tally = tallies[error]
        tally.injections += 1
        if np.array_equal(injury.label_map, original):
            tally.unchanged += 1
            continue
        tally.add(injury, series.assess(injury.label_map))
    return {
        "members": [m.name for m in series.members],
        "damaged_member": series.members[series.damaged_member].name,
        "damaged_source": series.damaged_source,
        "bones": common_bones(series),
        "baseline": baseline,
        "errors": {error: tally.summary(series.damaged_source) for error, tally in tallies.items()},
    }


def detect_alike(series: Series) -> dict:
    """The same, with each error made in every member alike: only the anatomy rules can see it."""
    _, baseline = _baseline(series)
    tallies = {kind: _Tally() for kind in ALIKE_ERRORS}
    for kind, injury, maps in alike_injections(series):
        tallies[kind].injections += 1
        tallies[kind].add(injury, series.assess(maps=maps))
    return {
        "members": [m.name for m in series.members],
        "damaged_member": "all members alike",
        "damaged_source": None,
        "bones": common_bones(series),
        "baseline": baseline,
        "errors": {kind: tally.summary(None) for kind, tally in tallies.items()},
    }


def run(phantom_shape: Sequence[int] | None = None, results_path: Path | None = RESULTS_PATH,
        sample_dir: Path = SAMPLE_DIR, seed: int = SEED) -> dict:
    """The sample (always) and the phantom (when ``phantom_shape`` is given); prints the table, writes the JSON.

    Modes: one member damaged (``sample``, ``phantom``, and ``granularity``: three sources
    of different label granularity, MOOSE damaged) and every member damaged alike
    (``sample_alike``, ``phantom_alike``).
    """
    sample = load_sample(sample_dir)
    modes = {"sample": detect(sample, seed), "sample_alike": detect_alike(sample)}
    grids = {"sample": "bundled 30-slice CT, 3 mm voxels"}
    if phantom_shape is not None:
        phantom = phantom_series(phantom_shape)
        modes["phantom"] = detect(phantom, seed)
        modes["phantom_alike"] = detect_alike(phantom)
        modes["granularity"] = detect(granularity_series(phantom_shape), seed)
        spacing = np.linalg.norm(phantom.affine[:3, :3], axis=0)
        grids["phantom"] = f"{' x '.join(map(str, phantom_shape))} voxels of {' x '.join(f'{s:.3g}' for s in spacing)} mm"
        grids["granularity"] = grids["phantom"]
    grids |= {f"{mode}_alike": grids[mode] for mode in ("sample", "phantom") if mode in grids}
    results = {
        "benchmark": "qc_detection",
        "settings": QcSettings().describe(),
        "injection": {"erode_dilate_voxels": MORPH_VOXELS, "shift_mm": SHIFT_MM, "run_length": RUN_LENGTH,
                      "phantom_noise": PHANTOM_NOISE, "seed": seed},
        "goals": GOALS,
        "grids": grids,
        "modes": modes,
    }
    return publish(results, format_report(results), results_path)


def format_report(results: dict) -> str:
    """One table per mode: a row per error type, goals checked; then what was missed or misnamed."""
    lines = [f"QC error detection: {results['settings']}",
             f"goals per error kind: AUROC >= {GOALS['auroc']}, sensitivity >= {GOALS['sensitivity']} (unscored = missed), "
             f"false alarms <= {GOALS['false_alarm_rate']}"]
    header = ("error", "injections", "damaged", "untouched", "AUROC", "flagged", "sensitivity", "false alarms", "unscored",
              "outlier named", "goals")
    for mode, found in results["modes"].items():
        base = found["baseline"]
        lines += ["", f"{mode} ({results['grids'][mode]}): members {', '.join(found['members'])}; damaged: {found['damaged_member']}; "
                      f"{len(found['bones'])} bones in every member",
                  f"undamaged: {len(base['review'])}/{base['scored_bones']} bones in review {base['review']}"]
        rows = [header]
        for error, s in found["errors"].items():
            named = f"{s['outlier_named']:.3f}" if "outlier_named" in s else "-"
            rows.append((error, str(s["injections"]), str(s["damaged_bones"]), str(s["untouched_bones"]), f"{s['auroc']:.3f}",
                         f"{s['flagged_share']:.3f}", f"{s['sensitivity']:.3f}", f"{s['false_alarm_rate']:.3f}",
                         str(s["unscored"]), named, "met" if goals_met(s) else "NOT met"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
        for error, s in found["errors"].items():
            lines += [f"  {error} missed: {m}" for m in s["missed"]] + [f"  {error} misnamed: {m}" for m in s.get("misnamed", [])]
    return "\n".join(lines)


def goals_met(summary: dict) -> bool:
    """Whether one error kind's figures meet the goals (NaN, e.g. no untouched bone, counts as not met)."""
    return (summary["auroc"] >= GOALS["auroc"] and summary["sensitivity"] >= GOALS["sensitivity"]
            and summary["false_alarm_rate"] <= GOALS["false_alarm_rate"])
