"""SEG encoding of a whole skeleton: our LABELMAP writer against TotalSegmentator's own DICOM SEG export.

Both encode the same native ``total`` label map (``bench.skeleton_phantom``)
that references the same CT series. The label map reaches each writer the way
its pipeline has it: TotalSegmentator converts the DICOM series with dicom2nifti
(LAS, shape columns x rows x slices), predicts on that grid and calls
``save_mask_as_dicomseg(uint8 array, class_map["total"], dicom folder, path,
affine)``; we read the same NIfTI file into a volume, harmonize it onto the CT
grid and call ``write_seg``. Every SEG is read back with ``read_seg`` and
compared voxel by voxel with the harmonized schema map.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from totalsegmentator.dicom_io import dcm_to_nifti, save_mask_as_dicomseg
from totalsegmentator.map_to_binary import class_map

from bench.publish import publish
from bench.skeleton_phantom import BONE_NAMES, DEFAULT_SHAPE, ORGAN_NAMES, make_phantom, write_phantom_series
from dicom_io.ct_series import CTSeries, read_ct_series
from dicom_io.label_images import read_label_image
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import SegType, write_seg
from labels.label_sets import load_label_set
from labels.schema import default_schema
from models.harmonize import harmonize_on_ct

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "seg_encoding.json"
GOAL_FASTER, GOAL_SMALLER = 10.0, 20.0
ANCHOR_SINGLE_RUN_AFTER_S = 60.0  # a slower first anchor run is not repeated
MIB = 1024 * 1024
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Inputs:
    """The CT series on disk and in memory, and the native label map as each pipeline holds it."""

    ct_dir: Path
    ct: CTSeries
    native: hd.Volume  # ours: the NIfTI read with read_label_image (LPS)
    nifti_array: np.ndarray  # TotalSegmentator: the NIfTI's uint8 array (LAS)
    nifti_affine: np.ndarray
    read_ct_seconds: float


@dataclass(frozen=True)
class Result:
    """One writer: wall times of every run (with per-step times for ours), file size, read-back check."""

    seconds: list[float]
    steps_seconds: dict[str, float]
    size_bytes: int
    segments: int
    read_back_exact: bool
    mismatch: str

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def run(shape: tuple[int, int, int] = DEFAULT_SHAPE, repeats: int = 3, results_path: Path | None = RESULTS_PATH) -> dict:
    """Run the benchmark, print the table and write the JSON (unless ``results_path`` is None); returns the results."""
    with tempfile.TemporaryDirectory(prefix="bonehub_bench_seg_") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        inputs = prepare(shape, work)
        setup_seconds = time.perf_counter() - started
        expected = harmonize_on_ct(inputs.native, load_label_set("totalsegmentator_total"), inputs.ct)
        measured = {
            "ours_labelmap": measure_ours(inputs, "labelmap", work / "ours_labelmap.dcm", expected, repeats),
            "ours_binary": measure_ours(inputs, "binary", work / "ours_binary.dcm", expected, repeats),
            "anchor": measure_anchor(inputs, class_map["total"], work / "totalsegmentator.dcm", expected, repeats),
            "anchor_bones_only": measure_anchor(inputs, _bone_classes(), work / "totalsegmentator_bones.dcm", expected, repeats),
        }
        read_reference_seconds = _time_reading_reference(inputs.ct_dir)
    results = summarize(shape, inputs, expected, measured, repeats, setup_seconds, read_reference_seconds)
    return publish(results, format_table(results), results_path)


def prepare(shape: tuple[int, int, int], work: Path) -> Inputs:
    """Write the phantom CT as a DICOM series, read it back, and hand the labels over as TotalSegmentator would."""
    volume, labels = make_phantom(shape)
    ct_dir = work / "ct"
    write_phantom_series(volume, ct_dir, "seg_encoding")
    started = time.perf_counter()
    ct = read_ct_series(ct_dir)
    read_ct_seconds = time.perf_counter() - started
    if not (np.allclose(ct.volume.affine, volume.affine) and np.array_equal(ct.volume.array, volume.array)):
        raise RuntimeError("the CT series does not read back as the phantom volume")

    # TotalSegmentator's own conversion (dicom2nifti, reoriented to LAS); its prediction keeps this grid.
    dcm_to_nifti(ct_dir, work / "converted_dcm.nii")
    converted = nib.load(work / "converted_dcm.nii")
    grid = hd.VolumeGeometry(_LPS_FROM_RAS @ converted.affine, converted.shape, "PATIENT", ct.frame_of_reference_uid)
    if not np.array_equal(np.asarray(converted.dataobj), ct.volume.match_geometry(grid).array):
        raise RuntimeError("dicom2nifti's grid is not the CT grid up to axis order and flips")
    header = converted.header.copy()
    header.set_data_dtype(np.uint8)
    nifti_path = work / "total.nii"
    nib.save(nib.Nifti1Image(volume.with_array(labels).match_geometry(grid).array, converted.affine, header), nifti_path)
    saved = nib.load(nifti_path)  # as TotalSegmentator holds its prediction: get_fdata().astype(np.uint8)
    return Inputs(ct_dir, ct, read_label_image(nifti_path), saved.get_fdata().astype(np.uint8), saved.affine, read_ct_seconds)


def measure_ours(inputs: Inputs, seg_type: SegType, path: Path, expected: np.ndarray, repeats: int) -> Result:
    """Harmonize native -> schema, encode, save: timed per step, ``repeats`` times."""
    label_set = load_label_set("totalsegmentator_total")
    source = SegmentationSource("TotalSegmentator total", importlib.metadata.version("TotalSegmentator"))
    runs = []
    for _ in range(repeats):
        ticks = [time.perf_counter()]
        schema_map = harmonize_on_ct(inputs.native, label_set, inputs.ct)
        ticks.append(time.perf_counter())
        seg = write_seg(schema_map, inputs.ct, source, seg_type=seg_type)
        ticks.append(time.perf_counter())
        seg.save_as(path)
        ticks.append(time.perf_counter())
        runs.append(np.diff(ticks))
    steps = dict(zip(("harmonize", "write_seg", "save_as"), np.median(runs, axis=0).tolist()))
    return _result([float(sum(r)) for r in runs], steps, path, inputs.ct, expected)


def measure_anchor(inputs: Inputs, classes: dict[int, str], path: Path, expected: np.ndarray, repeats: int) -> Result:
    """TotalSegmentator's export as its pipeline calls it; ``classes`` is its selected_classes (``roi_subset`` narrows it)."""

    def export() -> None:
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm progress bars
            save_mask_as_dicomseg(inputs.nifti_array, classes, inputs.ct_dir, path, inputs.nifti_affine)

    return _result(_repeat(export, repeats, stop_after=ANCHOR_SINGLE_RUN_AFTER_S), {}, path, inputs.ct, expected)


def _bone_classes() -> dict[int, str]:
    """The ``total`` class map restricted to bones: what ``--roi_subset`` with the 63 bones would select."""
    return {value: name for value, name in class_map["total"].items() if name in BONE_NAMES}


def _repeat(action: Callable[[], None], repeats: int, stop_after: float) -> list[float]:
    seconds: list[float] = []
    while len(seconds) < repeats:
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
        if seconds[0] > stop_after:
            break
    return seconds


def _result(seconds: list[float], steps: dict[str, float], path: Path, ct: CTSeries, expected: np.ndarray) -> Result:
    decoded = read_seg(path, ct)
    actual = decoded.volume.array
    exact = bool(np.array_equal(actual, expected))
    segments = sum(1 for segment in decoded.segments if segment.number != 0)  # LABELMAP has a background segment 0
    return Result(seconds, steps, path.stat().st_size, segments, exact, "" if exact else describe_mismatch(actual, expected))


def describe_mismatch(actual: np.ndarray, expected: np.ndarray) -> str:
    """Say how a read-back differs: renamed structures at the right voxels, mirrored, or how many voxels."""
    if actual.shape != expected.shape:
        return f"shape {actual.shape} instead of {expected.shape}"
    differ = actual != expected
    pairs = np.unique(np.stack([expected[differ], actual[differ]]), axis=1).T
    if all(np.array_equal(expected == e, actual == a) for e, a in pairs):
        schema = default_schema()

        def name(value: int) -> str:
            return f"{schema[int(value)].name} ({value})" if value else "background"

        renamed = "; ".join(f"{name(e)} read as {name(a)}" for e, a in pairs)
        return f"every voxel in place, {len(pairs)} structure(s) read back under another schema id: {renamed}"
    axes = ("slices (head-feet)", "rows (anterior-posterior)", "columns (right-left)")
    for flips in ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)):
        if np.array_equal(np.flip(actual, flips), expected):
            return f"per-structure voxel counts equal, positions mirrored along {' and '.join(axes[a] for a in flips)}"
    size = max(int(actual.max(initial=0)), int(expected.max(initial=0))) + 1
    same_counts = np.array_equal(np.bincount(actual.ravel(), minlength=size), np.bincount(expected.ravel(), minlength=size))
    return f"{int(np.count_nonzero(differ))} of {actual.size} voxels differ, per-structure voxel counts {'equal' if same_counts else 'differ'}"


def _time_reading_reference(ct_dir: Path) -> float:
    """What TotalSegmentator's export spends reading the reference series (part of its time)."""
    started = time.perf_counter()
    for path in sorted(ct_dir.glob("*.dcm")):
        pydicom.dcmread(path)
    return time.perf_counter() - started


def summarize(
    shape: tuple[int, int, int],
    inputs: Inputs,
    expected: np.ndarray,
    measured: dict[str, Result],
    repeats: int,
    setup_seconds: float,
    read_reference_seconds: float,
) -> dict:
    """Everything measured, as JSON-ready data; ratios are anchor / ours from this run."""
    ours, anchor = measured["ours_labelmap"], measured["anchor"]
    return {
        "benchmark": "seg_encoding",
        "versions": {package: importlib.metadata.version(package) for package in ("TotalSegmentator", "highdicom", "pydicom", "numpy")},
        "grid": {"shape": list(shape), "spacing_mm": list(inputs.ct.volume.spacing), "voxels": int(np.prod(shape))},
        "input": {
            "native_labels": int(np.count_nonzero(np.bincount(inputs.nifti_array.ravel())[1:])),
            "bones": len(BONE_NAMES),
            "organs": len(ORGAN_NAMES),
            "labelled_voxel_fraction": float(np.count_nonzero(inputs.nifti_array)) / inputs.nifti_array.size,
            "schema_structures": int(np.count_nonzero(np.bincount(expected.ravel())[1:])),
        },
        "repeats": repeats,
        "setup_seconds": setup_seconds,
        "read_ct_series_seconds": inputs.read_ct_seconds,
        "anchor_reads_reference_seconds": read_reference_seconds,
        **{name: asdict(result) | {"median_seconds": result.median} for name, result in measured.items()},
        "ratios": {"time": anchor.median / ours.median, "size": anchor.size_bytes / ours.size_bytes},
        "goals": {
            "faster": {"target": GOAL_FASTER, "met": anchor.median / ours.median >= GOAL_FASTER},
            "smaller": {"target": GOAL_SMALLER, "met": anchor.size_bytes / ours.size_bytes >= GOAL_SMALLER},
        },
    }


def format_table(results: dict) -> str:
    """The printed report: ours next to the anchor, ratios measured in this run, goals met or not."""
    ours, binary, anchor, bones = (results[k] for k in ("ours_labelmap", "ours_binary", "anchor", "anchor_bones_only"))
    goals, grid, given = results["goals"], results["grid"], results["input"]
    with_read = dict(ours, median_seconds=ours["median_seconds"] + results["read_ct_series_seconds"])
    rows = [
        ("step", "ours", "anchor", "anchor/ours", "goal"),
        (*_time_row("encode + save [s]", ours, anchor), f">= {GOAL_FASTER:g}x faster: {_met(goals['faster'])}"),
        (*_size_row("file size [MiB]", ours, anchor), f">= {GOAL_SMALLER:g}x smaller: {_met(goals['smaller'])}"),
        ("segments in the SEG", str(ours["segments"]), str(anchor["segments"]), "", ""),
        ("read back exact", _exact(ours), _exact(anchor), "", ""),
        (*_time_row("  + reading the CT series [s]", with_read, anchor), "information"),
        (*_time_row("  ours BINARY: encode + save [s]", binary, anchor), "information"),
        (*_size_row("  ours BINARY: file size [MiB]", binary, anchor), "information"),
        ("  ours BINARY: read back exact", _exact(binary), _exact(anchor), "", "information"),
        (*_time_row("  anchor bones only: encode + save [s]", ours, bones), "information"),
        (*_size_row("  anchor bones only: file size [MiB]", ours, bones), "information"),
        ("  anchor bones only: read back exact", _exact(ours), _exact(bones), "", "information"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    versions = results["versions"]
    lines = [
        f"SEG encoding, whole skeleton: grid {' x '.join(map(str, grid['shape']))} ({' x '.join(f'{s:g}' for s in grid['spacing_mm'])} mm), "
        f"{grid['voxels'] / 1e6:.1f} M voxels, {given['native_labels']} native labels ({given['bones']} bones, {given['organs']} organs), "
        f"{100 * given['labelled_voxel_fraction']:.1f} % of voxels labelled",
        "ours: harmonize_on_ct + write_seg(LABELMAP, RLE) + save_as; anchor: TotalSegmentator "
        f"{versions['TotalSegmentator']} save_mask_as_dicomseg (BINARY), selected_classes = the full total class map "
        "(bones only: the 63 bone classes, as with --roi_subset)",
        f"times: ours {_runs(ours, results['repeats'])}, anchor {_runs(anchor, results['repeats'])}, "
        f"anchor bones only {_runs(bones, results['repeats'])}; highdicom {versions['highdicom']}, pydicom {versions['pydicom']}, numpy {versions['numpy']}",
        "",
        *("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows),
        "",
        f"ours LABELMAP steps [s]: {_steps(ours)}; ours BINARY steps [s]: {_steps(binary)}",
        f"reading the CT series: ours read_ct_series {results['read_ct_series_seconds']:.2f} s (once per job, not in 'ours'); "
        f"the anchor reads the files itself, {results['anchor_reads_reference_seconds']:.2f} s of its time",
    ]
    for name in ("ours_labelmap", "ours_binary", "anchor", "anchor_bones_only"):
        if not results[name]["read_back_exact"]:
            lines.append(f"{name} read back: {results[name]['mismatch']}")
    return "\n".join(lines)


def _time_row(step: str, ours: dict, anchor: dict) -> tuple[str, str, str, str]:
    a, b = ours["median_seconds"], anchor["median_seconds"]
    return step, f"{a:.2f}", f"{b:.2f}", f"{b / a:.1f}x"


def _size_row(step: str, ours: dict, anchor: dict) -> tuple[str, str, str, str]:
    a, b = ours["size_bytes"], anchor["size_bytes"]
    return step, f"{a / MIB:.2f}", f"{b / MIB:.2f}", f"{b / a:.1f}x"


def _exact(result: dict) -> str:
    return "yes" if result["read_back_exact"] else "no (below)"


def _met(goal: dict) -> str:
    return "met" if goal["met"] else "NOT met"


def _runs(result: dict, repeats: int) -> str:
    runs = len(result["seconds"])
    if runs < repeats:
        return f"{runs} run (first run > {ANCHOR_SINGLE_RUN_AFTER_S:g} s, not repeated)"
    return f"median of {runs}" if runs > 1 else "1 run"


def _steps(result: dict) -> str:
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in result["steps_seconds"].items())
