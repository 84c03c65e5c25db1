"""QC speed of one series: ``assess_series`` against the straightforward per-bone full-volume computation.

Input: the whole-skeleton phantom (``bench.skeleton_phantom``, 63 bones) in schema
ids on its grid and 9 segmentations of it, 3 sources x 3 augmentations, made by
perturbing the phantom's label map (``bench.error_injection``): source A is the
phantom, source B has some bones eroded by one voxel, source C misses a few
bones; each source as it is, moved by one voxel in the axial plane, and with
seeded boundary noise. So the members disagree the way real sources and
augmented runs do, and every code path (empty masks, ties in the leave-one-out
vote) has work.

Ours: ``qc.assess.assess_series`` (one pass per map for the label boxes, every
bone on its union box, surface distances by a search of the nearby voxel
offsets with a KD-tree only past its reach, rules, consensus map).

Anchor: the same numbers computed the straightforward way, bone by bone, on the
full volume, as MONAI's and SimpleITK's surface-distance filters do: full-size
boolean masks per member, surface by the same 6-neighbour erosion, and one
``scipy.ndimage.distance_transform_edt`` of the whole volume (with the voxel
spacing) per surface, read at the other surfaces' voxels; pairwise Dice, HD95
(max of the directed 95th percentiles), ASSD and NSD at the tolerance, each
member's agreement with the leave-one-out majority exactly as ``qc.assess``
defines it (ties half), and the score (minimum agreement times the penalties of
the rules ours found on the consensus: the rule checks are not part of the
anchor, which favours it). A distance map is made once per surface and reused
for every pair, which also favours it.

At full size one distance transform takes about 20 s and a bone needs up to 27
(9 members, 9 leave-one-out majorities, 9 with their ties), so the anchor runs
on a few bones (the smallest, median and largest by volume) and its time per
series is extrapolated linearly to all compared bones. With ``measured_bones=None``
(``--quick``) it runs on every bone and equality is checked for all of them.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from bench import error_injection as inject
from bench.publish import publish
from bench.skeleton_phantom import DEFAULT_SHAPE, make_phantom
from labels.label_sets import load_label_set
from labels.schema import default_schema
from qc.assess import assess_series
from qc.results import BoneResult, Member
from qc.score import QcSettings
from qc.units import Unit

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "qc_speed.json"
GOAL_SERIES_SECONDS = 10.0
GOAL_FASTER = 20.0
GOAL_EQUAL = 1e-6
ANCHOR_BONES = 3  # bones the anchor runs on at full size: smallest, median, largest
SEED = 0
ERODED_BONES, DELETED_BONES = 8, 3  # source B erodes this many bones by one voxel; source C misses this many
NOISE_SHARE = 0.05
SOURCE_SHIFTS = {"A": (0, 1, 0), "B": (0, 0, 1), "C": (0, -1, 0)}  # each source's one-voxel move, array axes
COMPARED = ("dice_mean", "dice_min", "hd95_mm", "assd_mm", "nsd")
_SIX_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


def make_members(shape: Sequence[int], seed: int = SEED) -> tuple[list[Member], list[np.ndarray], np.ndarray]:
    """The 9 members (3 sources x 3 augmentations) of the phantom, their schema label maps and the affine."""
    volume, native = make_phantom(shape)
    phantom = load_label_set("totalsegmentator_total").harmonize(native)
    schema = default_schema()
    bones = [schema[int(i)].name for i in np.flatnonzero(np.bincount(phantom.ravel()))[1:]]
    rng = np.random.default_rng(seed)
    eroded = phantom
    for bone in rng.choice(bones, ERODED_BONES, replace=False):
        eroded = inject.erode(eroded, str(bone), 1).label_map
    missing = phantom
    for bone in rng.choice(bones, DELETED_BONES, replace=False):
        missing = inject.delete(missing, str(bone)).label_map
    members, maps = [], []
    for index, (source, base) in enumerate({"A": phantom, "B": eroded, "C": missing}.items()):
        shift = SOURCE_SHIFTS[source]
        variants = {
            "none": base,
            f"translate({','.join(map(str, shift))})": inject.translate(base, shift),
            f"boundary_noise({NOISE_SHARE:g})": inject.boundary_noise(base, NOISE_SHARE, seed + 1 + index),
        }
        for augmentation, label_map in variants.items():
            key = f"{source}.{augmentation}"
            members.append(Member(f"source {source}", "phantom", augmentation, f"bench.qc_speed.{key}.series", f"bench.qc_speed.{key}.sop"))
            maps.append(label_map)
    return members, maps, volume.affine


@dataclass(frozen=True)
class AnchorBone:
    """The anchor's numbers for one compared structure, and the seconds they took."""

    structure: str
    seconds: float
    distance_transforms: int
    dice_mean: float
    dice_min: float
    hd95_mm: float
    assd_mm: float
    nsd: float
    member_agreement: tuple[float, ...]
    score: float


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=_SIX_NEIGHBOURS, border_value=0)


def _distance_map(surface: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) from every voxel of the volume to the nearest voxel of ``surface``."""
    return ndimage.distance_transform_edt(~surface, sampling=spacing)


def _pair(a: np.ndarray, b: np.ndarray, a_to_b: np.ndarray | None, b_to_a: np.ndarray | None,
          tolerance_mm: float) -> tuple[float, float, float, float] | None:
    """(Dice, HD95, ASSD, NSD) of two full-size masks from their surface distances; None when both are empty."""
    size_a, size_b = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    if size_a == 0 and size_b == 0:
        return None
    if size_a == 0 or size_b == 0:
        return 0.0, math.nan, math.nan, 0.0
    both = np.concatenate([a_to_b, b_to_a])
    return (2.0 * np.count_nonzero(a & b) / (size_a + size_b),
            float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95))),
            float(both.mean()), float(np.count_nonzero(both <= tolerance_mm) / both.size))


def _agreement(metrics: tuple[float, float, float, float] | None) -> float:
    return 1.0 if metrics is None else 0.5 * metrics[0] + 0.5 * metrics[3]


def anchor_bone(label_maps: Sequence[np.ndarray], unit: Unit, spacing: tuple[float, float, float], tolerance_mm: float,
                rule_factor: float) -> AnchorBone:
    """One structure the straightforward way: full-volume masks, one full-volume distance transform per surface."""
    started = time.perf_counter()
    masks = [np.isin(label_maps[i], unit.ids) for i in unit.members]
    n = len(masks)
    surfaces = [_surface(m) for m in masks]
    votes = np.sum(masks, axis=0, dtype=np.uint8)
    to = {}  # (i, j) -> distances from surface i to surface j (mm); "c" is member j's leave-one-out consensus
    transforms = 0
    agreements = []
    for j in range(n):
        others = 2 * (votes.astype(np.int16) - masks[j])  # twice the other members' votes
        consensus = [others > n - 1]  # majority of the others; with ties counted in as well when they can occur
        if (n - 1) % 2 == 0 and (ties := others == n - 1).any():
            consensus.append(consensus[0] | ties)
        del others
        consensus_surfaces = [_surface(c) for c in consensus]
        from_consensus: list[np.ndarray | None] = [None] * len(consensus)
        if masks[j].any():
            distance = _distance_map(surfaces[j], spacing)
            transforms += 1
            for i in range(n):
                if i != j and masks[i].any():
                    to[i, j] = distance[surfaces[i]]
            from_consensus = [distance[s] for s in consensus_surfaces]
            del distance
        values = []
        for c, s, back in zip(consensus, consensus_surfaces, from_consensus):
            to_consensus = None
            if masks[j].any() and c.any():
                to_consensus = _distance_map(s, spacing)[surfaces[j]]
                transforms += 1
            values.append(_agreement(_pair(masks[j], c, to_consensus, back, tolerance_mm)))
        agreements.append(1.0 if n == 1 else float(np.mean(values)))
    pairs = [p for a in range(n) for b in range(a + 1, n)
             if (p := _pair(masks[a], masks[b], to.get((a, b)), to.get((b, a)), tolerance_mm)) is not None]
    columns = list(zip(*pairs)) if pairs else [[], [], [], []]
    return AnchorBone(
        structure=unit.structure, seconds=time.perf_counter() - started, distance_transforms=transforms,
        dice_mean=_mean(columns[0]), dice_min=min(columns[0], default=math.nan), hd95_mm=_mean(columns[1]),
        assd_mm=_mean(columns[2]), nsd=_mean(columns[3]), member_agreement=tuple(agreements),
        score=min(agreements) * rule_factor,
    )


def _mean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def rule_factor(result: BoneResult, settings: QcSettings) -> float:
    """Product of the penalties of the rules ours found on the consensus (flags without a member name)."""
    return math.prod(settings.rule_penalty.get(flag, 1.0) for flag in result.flags if "@" not in flag)


def largest_difference(ours: BoneResult, anchor: AnchorBone) -> float:
    """Largest absolute difference over every compared number; NaN on one side only counts as infinite."""
    pairs = [(getattr(ours, f), getattr(anchor, f)) for f in COMPARED] + [(ours.score, anchor.score)]
    pairs += list(zip(ours.member_agreement, anchor.member_agreement, strict=True))
    worst = 0.0
    for a, b in pairs:
        if math.isnan(a) and math.isnan(b):
            continue
        worst = max(worst, abs(a - b) if not (math.isnan(a) or math.isnan(b)) else math.inf)
    return worst


def chosen_bones(results: Sequence[BoneResult], count: int | None) -> list[BoneResult]:
    """``count`` compared bones spread over the volume range (smallest, ..., largest); every one when ``count`` is None."""
    by_volume = sorted(results, key=lambda r: (r.volume_ml, r.bone))
    if count is None or count >= len(by_volume):
        return by_volume
    return [by_volume[int(i)] for i in np.linspace(0, len(by_volume) - 1, count).round()]


def run(shape: tuple[int, int, int] = DEFAULT_SHAPE, measured_bones: int | None = ANCHOR_BONES,
        results_path: Path | None = RESULTS_PATH) -> dict:
    """Time ours on the whole series and the anchor on ``measured_bones`` bones (all when None); print, write JSON."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    members, label_maps, affine = make_members(shape)
    setup_seconds = time.perf_counter() - started

    settings = QcSettings()
    started = time.perf_counter()
    qc = assess_series("bench.qc_speed", "bench.qc_speed", members, label_maps, affine, settings)
    ours_seconds = time.perf_counter() - started
    print(f"ours: {ours_seconds:.2f} s per series (load average {os.getloadavg()[0]:.2f}); the anchor follows", flush=True)

    compared = [r for r in qc.results if r.n_present > 0]
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    anchor = []
    for result in chosen_bones(compared, measured_bones):
        unit = qc.units[result.bone]
        bone = anchor_bone(label_maps, unit, spacing, settings.tolerance_mm(result.bone), rule_factor(result, settings))
        anchor.append({"ours": result, "anchor": bone, "difference": largest_difference(result, bone)})
        if measured_bones is not None:  # the full-size anchor takes minutes per bone: show it going
            print(f"anchor {bone.structure}: {bone.seconds:.1f} s, largest difference {anchor[-1]['difference']:.3g}", flush=True)
    results = summarize(shape, spacing, members, compared, ours_seconds, anchor, setup_seconds, load_before)
    return publish(results, format_report(results), results_path)


def summarize(shape: Sequence[int], spacing: Sequence[float], members: Sequence[Member], compared: Sequence[BoneResult],
              ours_seconds: float, anchor: list[dict], setup_seconds: float, load_before: tuple[float, float, float]) -> dict:
    """JSON-ready results; the anchor's series time is measured when it ran on every bone, else extrapolated."""
    per_bone = [a["anchor"].seconds for a in anchor]
    every_bone = len(anchor) == len(compared)
    anchor_series = sum(per_bone) if every_bone else float(np.mean(per_bone)) * len(compared)
    largest = max(a["difference"] for a in anchor)
    packages = ("numpy", "scipy")
    return {
        "benchmark": "qc_speed",
        "versions": {package: importlib.metadata.version(package) for package in packages},
        "machine": {"cpu_cores": os.cpu_count(), "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())},
        "grid": {"shape": list(shape), "spacing_mm": list(spacing), "voxels": int(np.prod(shape))},
        "members": [m.name for m in members],
        "compared_bones": len(compared),
        "setup_seconds": setup_seconds,
        "ours": {"per_series_seconds": ours_seconds},
        "anchor": {
            "bones": [asdict(a["anchor"]) | {"largest_difference": a["difference"]} for a in anchor],
            "measured_bones": len(anchor),
            "per_bone_seconds_mean": float(np.mean(per_bone)),
            "per_series_seconds": anchor_series,
            "extrapolated": not every_bone,
        },
        "ratio": anchor_series / ours_seconds,
        "largest_difference": largest,
        "goals": {
            "per_series": {"target_seconds": GOAL_SERIES_SECONDS, "met": ours_seconds <= GOAL_SERIES_SECONDS},
            "faster": {"target_ratio": GOAL_FASTER, "met": anchor_series / ours_seconds >= GOAL_FASTER},
            "equal": {"tolerance": GOAL_EQUAL, "bones": len(anchor), "met": largest <= GOAL_EQUAL},
        },
    }


def format_report(results: dict) -> str:
    grid, anchor, goals = results["grid"], results["anchor"], results["goals"]
    rows = [("bone", "seconds", "distance transforms", "largest difference")]
    rows += [(b["structure"], f"{b['seconds']:.2f}", str(b["distance_transforms"]), f"{b['largest_difference']:.3g}") for b in anchor["bones"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    how = (f"extrapolated linearly from {anchor['measured_bones']} bones (smallest, median, largest by volume) "
           f"to all {results['compared_bones']}" if anchor["extrapolated"] else f"measured on all {results['compared_bones']} bones")
    met = {name: "met" if goal["met"] else "NOT met" for name, goal in goals.items()}
    machine = results["machine"]
    return "\n".join([
        f"QC of one series: grid {' x '.join(map(str, grid['shape']))} ({' x '.join(f'{s:.3g}' for s in grid['spacing_mm'])} mm), "
        f"{len(results['members'])} segmentations (3 sources x 3 augmentations), {results['compared_bones']} compared bones, "
        f"{machine['cpu_cores']} CPU cores, load average {machine['load_average_before'][0]:.2f} before / {machine['load_average_after'][0]:.2f} after",
        "ours: qc.assess.assess_series (label boxes, union-box crops, offset-search surface distances, rules, consensus)",
        "anchor: per bone, full-volume masks, 6-neighbour surfaces, scipy distance_transform_edt of the full volume per surface "
        "(the rule checks are not in the anchor; it uses the consensus rules ours found)",
        "anchor per bone:",
        *table,
        f"ours {results['ours']['per_series_seconds']:.2f} s per series; anchor {anchor['per_bone_seconds_mean']:.2f} s per bone, "
        f"{anchor['per_series_seconds']:.1f} s per series ({how}); anchor/ours {results['ratio']:.1f}x",
        f"largest difference over {goals['equal']['bones']} bones: {results['largest_difference']:.3g}",
        f"goal <= {GOAL_SERIES_SECONDS:g} s per series: {met['per_series']}; goal >= {GOAL_FASTER:g}x faster: {met['faster']}; "
        f"goal equal within {GOAL_EQUAL:g}: {met['equal']}",
        f"GOAL 4 (issue 16), QC <= {GOAL_SERIES_SECONDS:g} s per series: ours {results['ours']['per_series_seconds']:.2f} s, "
        f"anchor {anchor['per_series_seconds']:.1f} s, anchor/ours {results['ratio']:.1f}x, largest difference "
        f"{results['largest_difference']:.3g}: {'met' if goals['per_series']['met'] and goals['equal']['met'] else 'NOT met'}",
    ])
