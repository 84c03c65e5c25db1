"""Stage 1 per-series overhead outside model inference: ours step by step against the CloudSegmentator/MHub way.

One CT series (``bench.skeleton_phantom``, written as DICOM) gets 9 outputs:
3 stand-in sources x 3 input augmentations (``OUTPUTS``). No model runs: a
stand-in answers at once with a TotalSegmentator ``total`` label map as it
lies in the augmented CT (for a rotation, the labels rotated as ``apply``
rotated the CT, so ``invert`` has real work to do). Stand-ins B and C answer
with the phantom of seeds 1 and 2 (up to 3 % larger or smaller, shifted by up
to 5 mm), so the three sources disagree a little, as real models do.

Ours, as Stage 1 runs it (the order of ``models.segment.segment_ct``, then
``pipeline.stage1.encode_output``): ``read_ct_series`` once per series;
``augmented_ct`` once per series and augmentation, shared by the sources (as
``Predict`` does); per output the stand-in (timed, not counted), ``to_schema``
on the augmented CT (harmonize, native -> schema ids), 
``AugmentedCT.inverse`` (invert: back onto the source grid; a rotation resamples
each label map with nearest neighbour), ``write_seg`` (LABELMAP) and
``LocalStore.put``.
The steps are timed one by one, so those functions are not called whole. The
staging hand-over between Stage 1's steps is not in this benchmark (its cost is
measured by ``bench.cost_model.measure``).

Anchor, as IDC's CloudSegmentator and MHub's converters do it: ``dcm2niix``
converts the DICOM series to NIfTI once (CloudSegmentator's flags); per output
the model's label map is written as ``.nii.gz`` (what the model leaves on
disk), a dcmqi metadata JSON describes every structure the source can emit with
the schema's codes (CloudSegmentator's TotalSegmentator workflow ships one such
JSON for all classes, built from a SNOMED mapping table, and only changes the
series description; dcmqi skips labels that are absent from the image) and
dcmqi's ``itkimage2segimage`` encodes the SEG, reading the DICOM series again.
Two flavours of that last call: CloudSegmentator's current one (LABELMAP,
deflate, label ids as segment numbers) and MHub's ``DsegConverter`` (BINARY).
The anchor's label map is the schema map ours stored for that output, so both
sides encode the same segments; the anchor needs no augmentation, inversion or
label translation. The real binaries run (``dcm2niix.bin`` and the executable
inside the ``dcmqi`` package, not the Python wrappers in ``.venv/bin``), as
the Docker images of both projects call them. plastimatch (MHub's other
converter) is not installed here and is not measured.

Every SEG is read back afterwards with ``read_seg`` and compared voxel by
voxel with the schema map of its output.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

import dcm2niix
import dcmqi
import highdicom as hd
import nibabel as nib
import numpy as np

from bench.publish import publish
from pipeline.overlap import Overlap
from bench.skeleton_phantom import DEFAULT_SHAPE, make_phantom, write_phantom_series
from dicom_io.ct_series import CTSeries, read_ct_series
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import write_seg
from dicom_io.stores import open_store
from labels.label_sets import LabelSet, load_label_set
from labels.schema import Code, default_schema
from models.augment import Augmentation, Rotation, invert, parse_augmentation
from models.segment import AugmentedCT, augmented_ct
from models.base import Prediction
from models.harmonize import to_schema

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "stage1_overhead.json"
GOAL_SERIES_SECONDS = 20.0  # issue 16 goal 1: 9 outputs, augmentations included, on 2 cores
GOAL_ANCHOR = "cloudsegmentator"  # ... and no slower than this flavour of the anchor
LABEL_SET = "totalsegmentator_total"
ROTATION = "rotate(0,0,5)"
STAND_IN_VERSION = "phantom"
SOURCE_SEEDS = {"stand-in A": 0, "stand-in B": 1, "stand-in C": 2}  # phantom seed of each source's labels
OUTPUTS = (  # (source, augmentation): 3 sources x 3 augmentations
    ("stand-in A", "none"), ("stand-in A", ROTATION), ("stand-in A", "noise(20)"),
    ("stand-in B", "none"), ("stand-in B", ROTATION), ("stand-in B", "intensity(scale=1.05,shift=10,gamma=0.9)"),
    ("stand-in C", "none"), ("stand-in C", ROTATION), ("stand-in C", "noise(20)"),
)
OUR_STEPS = ("augment", "harmonize", "invert", "encode", "store")
WARM_GIB = 6.0  # memory touched before each side is timed (``warm_memory``): above ours' peak of about 4.7 GiB
DCM2NIIX_FLAGS = ("-z", "y", "-f", "%j", "-b", "n", "-m", "y")  # CloudSegmentator's convert_dicom_to_nifti
ANCHOR_FLAVOURS = {  # itkimage2segimage options; dcmqi 1.5.7 wants a value after --skip
    "cloudsegmentator": ("--segmentationType", "labelmap", "--useLabelIDAsSegmentNumber", "--skip", "1", "--compress", "deflate"),
    "mhub": ("--skip", "1"),
}
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
T = TypeVar("T")


@dataclass(frozen=True)
class StandIn:
    """A source that answers at once with native labels as they lie in the augmented CT: no inference is benchmarked."""

    name: str
    version: str
    label_set: LabelSet
    on_input: dict[str, np.ndarray]  # augmentation text -> native label map on the augmented CT's grid

    def predict(self, augmented: hd.Volume, aug: Augmentation) -> Prediction:
        return Prediction(augmented.with_array(self.on_input[str(aug)]), self.label_set)


@dataclass(frozen=True)
class Output:
    """One output of ours: seconds per step, the stand-in's (uncounted) seconds, the stored SEG."""

    source: str
    augmentation: str
    seconds: dict[str, float]
    stand_in_seconds: float
    uri: str
    size_bytes: int

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass(frozen=True)
class AnchorOutput:
    """One output of the anchor: shared steps, then one itkimage2segimage run per flavour."""

    seconds: dict[str, float]  # write_nifti, write_metadata
    itkimage2segimage_seconds: dict[str, float]  # flavour -> seconds
    size_bytes: dict[str, int]  # flavour -> SEG file size
    cpu_seconds: dict[str, float]  # flavour -> CPU seconds of this output (ours: parent process; dcmqi: its process)

    def total(self, flavour: str) -> float:
        return sum(self.seconds.values()) + self.itkimage2segimage_seconds[flavour]


def run(shape: tuple[int, int, int] = DEFAULT_SHAPE, results_path: Path | None = RESULTS_PATH) -> dict:
    """Run the benchmark once, print the tables and write the JSON (unless ``results_path`` is None); returns the results."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bonehub_bench_stage1_") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        ct_dir, stand_ins = prepare(shape, work)
        setup_seconds = time.perf_counter() - started

        warm_up = [warm_memory()]
        started, cpu = time.perf_counter(), _cpu_seconds()
        ct = read_ct_series(ct_dir)
        read_seconds = time.perf_counter() - started
        outputs, schema_maps, phases = run_ours(ct, stand_ins, work / "store")
        ours_cpu = _cpu_seconds() - cpu

        warm_up.append(warm_memory())
        started, cpu = time.perf_counter(), _cpu_seconds()
        nifti_path = convert_with_dcm2niix(ct_dir, work / "dcm2niix")
        convert_seconds, convert_cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        anchor = run_anchor(ct, ct_dir, nifti_path, outputs, schema_maps, work / "anchor")

        checks = check_outputs(ct, outputs, schema_maps, work / "anchor")
    results = summarize(shape, ct, outputs, phases, anchor, checks, read_seconds, convert_seconds, setup_seconds, load_before,
                        {"ours": ours_cpu, "dcm2niix": convert_cpu})
    results["machine"]["warm_up_seconds"] = {"before_ours": warm_up[0], "before_anchor": warm_up[1], "gib": WARM_GIB}
    return publish(results, format_report(results), results_path)


def warm_memory(gib: float | None = None) -> float:
    """Touch ``gib`` GiB (default ``WARM_GIB``) in a child process and let it go; returns the seconds that took.

    Why: on this project's machine (a virtual machine) the first touch of memory the guest has
    not used lately costs about 2.5 s per GiB while the host maps it in (measured: 5 GiB in
    14.5 s, then 2.5 GiB in 0.35 s once mapped). Ours runs in one process that peaks at about
    4.7 GiB here; the anchor runs small processes, after ours, on memory ours brought in.
    Warming before each side makes both time their work rather than their place in the run.
    """
    started = time.perf_counter()
    size = int((WARM_GIB if gib is None else gib) * 2**30)
    subprocess.run([sys.executable, "-c", f"import numpy; numpy.ones({size}, numpy.uint8)"], check=True)
    return time.perf_counter() - started


def prepare(shape: tuple[int, int, int], work: Path) -> tuple[Path, dict[str, StandIn]]:
    """Write the phantom CT as a DICOM series and build each stand-in's answers (not timed)."""
    volume, _ = make_phantom(shape)
    ct_dir = work / "ct"
    write_phantom_series(volume, ct_dir, "stage1_overhead")
    label_set = load_label_set(LABEL_SET)
    stand_ins = {}
    for name, seed in SOURCE_SEEDS.items():
        labels = make_phantom(shape, seed=seed)[1]
        on_input = {text: labels for source, text in OUTPUTS if source == name}
        for text in on_input:
            aug = parse_augmentation(text)
            if isinstance(aug, Rotation):
                on_input[text] = rotated_like_ct(aug, labels, volume)
        stand_ins[name] = StandIn(name, STAND_IN_VERSION, label_set, on_input)
    return ct_dir, stand_ins


def rotated_like_ct(aug: Rotation, labels: np.ndarray, grid: hd.Volume) -> np.ndarray:
    """``labels`` moved as ``apply(aug, ...)`` moves the CT, with nearest neighbour.

    ``invert`` moves labels by the inverse rotation; about a single axis that
    inverse is the rotation by the opposite angle, so this stays on public API.
    """
    if sum(angle != 0 for angle in aug.degrees) != 1:
        raise ValueError(f"the stand-in rotates labels about one axis only, got {aug}")
    return invert(Rotation(tuple(-angle for angle in aug.degrees)), labels, grid)


def run_ours(ct: CTSeries, stand_ins: dict[str, StandIn], store_dir: Path) -> tuple[list[Output], list[np.ndarray], dict[str, float]]:
    """Every output through Stage 1's steps as ``Predict`` and ``EncodeAndStore`` run them, each step timed.

    Returns the outputs, their schema maps and the wall time of each phase (``predict`` without the
    stand-in's time, ``encode``, ``store``): the outputs of a phase overlap (``pipeline.overlap``), so
    the step times, measured in the threads that run them, add up to more than the phases' wall time.
    """
    store = open_store(store_dir)
    seconds = [{"augment": 0.0} for _ in OUTPUTS]
    stand_in_seconds = []
    seen_by_augmentation: dict[str, AugmentedCT] = {}  # as Predict does: one augmented CT per series and augmentation
    started = time.perf_counter()
    with Overlap() as finishing:  # as Predict: inference here, harmonize and invert in worker threads
        for (name, text), timings in zip(OUTPUTS, seconds):
            aug = parse_augmentation(text)
            if text not in seen_by_augmentation:
                seen_by_augmentation[text] = _timed(timings, "augment", augmented_ct, ct, aug)
            seen = seen_by_augmentation[text]
            prediction = _timed(timings, "inference", stand_ins[name].predict, seen.ct.volume, aug)
            stand_in_seconds.append(timings.pop("inference"))
            finishing.submit(_harmonize_and_invert, prediction, seen, timings)
    schema_maps = finishing.results()
    phases = {"predict": time.perf_counter() - started - sum(stand_in_seconds)}

    started = time.perf_counter()
    with Overlap() as encoding:  # as EncodeAndStore: the series' SEGs side by side, then stored together
        for (name, text), schema_map, timings in zip(OUTPUTS, schema_maps, seconds):
            source = SegmentationSource(stand_ins[name].name, stand_ins[name].version, text)
            encoding.submit(_timed, timings, "encode", write_seg, schema_map, ct, source)
    segs = encoding.results()
    phases["encode"] = time.perf_counter() - started
    started = time.perf_counter()
    uris = store.put_many(segs)
    phases["store"] = time.perf_counter() - started
    outputs = [
        Output(name, text, timings | {"store": phases["store"] / len(OUTPUTS)}, stand_in, uri, _path_of(uri).stat().st_size)
        for (name, text), timings, stand_in, uri in zip(OUTPUTS, seconds, stand_in_seconds, uris)
    ]
    return outputs, [m.astype(np.uint8) if m.max(initial=0) < 256 else m for m in schema_maps], phases


def _harmonize_and_invert(prediction: Prediction, seen: AugmentedCT, timings: dict[str, float]) -> np.ndarray:
    """``models.segment.schema_labels``, its two steps timed apart."""
    on_seen = _timed(timings, "harmonize", to_schema, prediction, seen.ct)
    return _timed(timings, "invert", seen.inverse, on_seen)


def convert_with_dcm2niix(ct_dir: Path, out_dir: Path) -> Path:
    """The anchor's one conversion per series: the DICOM series to a gzipped NIfTI."""
    out_dir.mkdir(parents=True)
    _run([dcm2niix.bin, *DCM2NIIX_FLAGS, "-o", str(out_dir), str(ct_dir)], "dcm2niix")
    converted = sorted(out_dir.glob("*.nii.gz"))
    if len(converted) != 1:
        raise RuntimeError(f"dcm2niix wrote {len(converted)} NIfTI files to {out_dir}, expected 1")
    return converted[0]


def run_anchor(ct: CTSeries, ct_dir: Path, nifti_path: Path, outputs: list[Output], schema_maps: list[np.ndarray], out_dir: Path) -> list[AnchorOutput]:
    """Per output: the label map as the model writes it, the dcmqi metadata, then each itkimage2segimage flavour."""
    converted = nib.load(nifti_path)
    grid = hd.VolumeGeometry(_LPS_FROM_RAS @ converted.affine, converted.shape[:3], "PATIENT", ct.frame_of_reference_uid)
    if not np.array_equal(np.asarray(converted.dataobj), ct.volume.match_geometry(grid).array):
        raise RuntimeError("dcm2niix's grid is not the CT grid up to axis order and flips")
    itkimage2segimage = _dcmqi_binary("itkimage2segimage")
    schema = default_schema()
    emitted = np.array(sorted(schema[name].id for name in load_label_set(LABEL_SET).emitted()))  # dcmqi skips absent labels
    out_dir.mkdir(parents=True)
    anchor = []
    for index, (output, schema_map) in enumerate(zip(outputs, schema_maps)):
        model_output = ct.volume.with_array(schema_map).match_geometry(grid).array  # the model predicts on the NIfTI grid
        header = converted.header.copy()
        header.set_data_dtype(schema_map.dtype)
        label_path, metadata_path = out_dir / f"{index}.nii.gz", out_dir / f"{index}.json"
        source = SegmentationSource(output.source, STAND_IN_VERSION, output.augmentation)
        seconds: dict[str, float] = {}
        cpu = _cpu_seconds()
        _timed(seconds, "write_nifti", nib.save, nib.Nifti1Image(model_output, converted.affine, header), label_path)
        _timed(seconds, "write_metadata", _write_metadata, metadata_path, emitted, source)
        shared_cpu = _cpu_seconds() - cpu
        encode_seconds: dict[str, float] = {}
        cpu_seconds: dict[str, float] = {}
        for flavour, options in ANCHOR_FLAVOURS.items():
            command = [str(itkimage2segimage), "--inputImageList", str(label_path), "--inputDICOMDirectory", str(ct_dir),
                       "--inputMetadata", str(metadata_path), "--outputDICOM", str(out_dir / f"{index}_{flavour}.dcm"), *options]
            cpu = _cpu_seconds()
            _timed(encode_seconds, flavour, _run, command, f"itkimage2segimage ({flavour})")
            cpu_seconds[flavour] = shared_cpu + _cpu_seconds() - cpu
        sizes = {flavour: (out_dir / f"{index}_{flavour}.dcm").stat().st_size for flavour in ANCHOR_FLAVOURS}
        anchor.append(AnchorOutput(seconds, encode_seconds, sizes, cpu_seconds))
    return anchor


def _write_metadata(path: Path, values: np.ndarray, source: SegmentationSource) -> None:
    """The anchor's per-output metadata file: the fixed segment list, this output's series description."""
    path.write_text(json.dumps(dcmqi_metadata(values, source)))


def dcmqi_metadata(values: np.ndarray, source: SegmentationSource) -> dict:
    """dcmqi's segmentation metadata (its seg-schema.json): one segment per label value, codes from the bone schema."""
    schema = default_schema()

    def code(c: Code) -> dict[str, str]:
        return {"CodingSchemeDesignator": c.scheme, "CodeValue": c.value, "CodeMeaning": c.meaning}

    segments = []
    for value in values[values > 0]:
        structure = schema[int(value)]
        segment = {
            "labelID": int(value),
            "SegmentLabel": structure.display_name,
            "SegmentDescription": structure.display_name,
            "SegmentAlgorithmType": "AUTOMATIC",
            "SegmentAlgorithmName": source.name,
            "SegmentedPropertyCategoryCodeSequence": code(structure.category),
            "SegmentedPropertyTypeCodeSequence": code(structure.type),
            "recommendedDisplayRGBValue": list(structure.color),
        }
        if structure.modifier is not None:
            segment["SegmentedPropertyTypeModifierCodeSequence"] = code(structure.modifier)
        segments.append(segment)
    return {
        "ContentCreatorName": "BoneHub^Benchmark",
        "ClinicalTrialSeriesID": "0",
        "ClinicalTrialTimePointID": "1",
        "ClinicalTrialCoordinatingCenterName": "dcmqi",
        "SeriesDescription": source.describe(),
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "BodyPartExamined": "WHOLEBODY",
        "segmentAttributes": [segments],
    }


def check_outputs(ct: CTSeries, outputs: list[Output], schema_maps: list[np.ndarray], anchor_dir: Path) -> dict:
    """After timing: every SEG read back against its schema map, and how well a rotation round trip agrees."""
    paths = {"ours": [_path_of(output.uri) for output in outputs]}
    for flavour in ANCHOR_FLAVOURS:
        paths[f"anchor_{flavour}"] = [anchor_dir / f"{index}_{flavour}.dcm" for index in range(len(outputs))]
    read_back = {
        side: [bool(np.array_equal(read_seg(path, ct).volume.array, expected)) for path, expected in zip(seg_paths, schema_maps)]
        for side, seg_paths in paths.items()
    }
    agreement = {}
    for index, output in enumerate(outputs):
        if isinstance(parse_augmentation(output.augmentation), Rotation):
            plain = next(i for i, o in enumerate(outputs) if o.source == output.source and o.augmentation == "none")
            agreement[output.source] = labelled_agreement(schema_maps[index], schema_maps[plain])
    return {"read_back_exact": read_back, "rotation_round_trip_agreement": agreement}


def _path_of(uri: str) -> Path:
    """The local path of a ``file://`` URI that ``LocalStore.put`` returned."""
    return Path(url2pathname(urlsplit(uri).path))


def labelled_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Voxels with the same structure in both, over voxels labelled in either (1.0 = identical)."""
    labelled = (a > 0) | (b > 0)
    return float(np.count_nonzero((a == b) & labelled)) / max(int(np.count_nonzero(labelled)), 1)


def _timed(seconds: dict[str, float], step: str, action: Callable[..., T], *args: object) -> T:
    """``action(*args)``, its wall time recorded as ``seconds[step]``."""
    started = time.perf_counter()
    result = action(*args)
    seconds[step] = time.perf_counter() - started
    return result


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process (all its threads) and by its finished child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _dcmqi_binary(name: str) -> Path:
    path = Path(dcmqi.__file__).resolve().parent / "bin" / name
    if not path.is_file():
        raise FileNotFoundError(f"dcmqi executable {name} not found at {path}: install the PyPI package dcmqi (>= 1.5.7)")
    return path


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed with exit status {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")


def summarize(
    shape: tuple[int, int, int],
    ct: CTSeries,
    outputs: list[Output],
    phases: dict[str, float],
    anchor: list[AnchorOutput],
    checks: dict,
    read_seconds: float,
    convert_seconds: float,
    setup_seconds: float,
    load_before: tuple[float, float, float],
    cpu: dict[str, float],
) -> dict:
    """Everything measured, as JSON-ready data; ratios are anchor / ours from this run.

    ``cpu``: CPU seconds of ours (read and every output) and of dcm2niix; per output the anchor's are in ``anchor``.
    ``phases``: wall time of ours after the read (``run_ours``); ours per series is the read plus these.
    """
    ours_total = read_seconds + sum(phases.values())
    anchor_totals = {f: convert_seconds + sum(a.total(f) for a in anchor) for f in ANCHOR_FLAVOURS}
    anchor_cpu = {f: cpu["dcm2niix"] + sum(a.cpu_seconds[f] for a in anchor) for f in ANCHOR_FLAVOURS}
    packages = ("highdicom", "pydicom", "numpy", "SimpleITK", "nibabel", "dcmqi", "dcm2niix")
    return {
        "benchmark": "stage1_overhead",
        "versions": {package: importlib.metadata.version(package) for package in packages},
        "machine": {"cpu_cores": os.cpu_count(), "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())},
        "grid": {"shape": list(shape), "spacing_mm": list(ct.volume.spacing), "voxels": int(np.prod(shape))},
        "setup_seconds": setup_seconds,
        "ours": {
            "read_ct_series_seconds": read_seconds,
            "outputs": [asdict(o) | {"total_seconds": o.total} for o in outputs],
            "phase_seconds": phases,
            "per_series_seconds": ours_total,
            "step_seconds_summed": read_seconds + sum(o.total for o in outputs),
            "per_series_cpu_seconds": cpu["ours"],
        },
        "anchor": {
            "dcm2niix_seconds": convert_seconds,
            "dcm2niix_flags": list(DCM2NIIX_FLAGS),
            "itkimage2segimage_options": {f: list(o) for f, o in ANCHOR_FLAVOURS.items()},
            "plastimatch": "not installed, not measured",
            "outputs": [asdict(a) | {"total_seconds": {f: a.total(f) for f in ANCHOR_FLAVOURS}} for a in anchor],
            "per_series_seconds": anchor_totals,
            "dcm2niix_cpu_seconds": cpu["dcm2niix"],
            "per_series_cpu_seconds": anchor_cpu,
        },
        "checks": checks,
        "ratios": {f: total / ours_total for f, total in anchor_totals.items()},
        "goals": {
            "per_series": {"target_seconds": GOAL_SERIES_SECONDS, "met": ours_total <= GOAL_SERIES_SECONDS},
            "faster_than_anchor": {"anchor": GOAL_ANCHOR, "met": ours_total <= anchor_totals[GOAL_ANCHOR]},
        },
    }


def format_report(results: dict) -> str:
    """The printed report: one row per output and step, per-series totals next to the anchor, goals met or not."""
    ours, anchor, grid = results["ours"], results["anchor"], results["grid"]
    flavours = list(ANCHOR_FLAVOURS)
    header = ("output", *OUR_STEPS, "[stand-in]", "ours", "|", "nifti", "json", *(f"dcmqi {f}" for f in flavours), *(f"anchor {f}" for f in flavours))
    rows = [header]
    for o, a in zip(ours["outputs"], anchor["outputs"]):
        rows.append((
            f"{o['source']} {o['augmentation']}", *(f"{o['seconds'][s]:.2f}" for s in OUR_STEPS), f"{o['stand_in_seconds']:.2f}",
            f"{o['total_seconds']:.2f}", "|", f"{a['seconds']['write_nifti']:.2f}", f"{a['seconds']['write_metadata']:.2f}",
            *(f"{a['itkimage2segimage_seconds'][f]:.2f}" for f in flavours), *(f"{a['total_seconds'][f]:.2f}" for f in flavours),
        ))
    sums = [
        sum(o["seconds"][s] for o in ours["outputs"]) for s in OUR_STEPS
    ]
    rows.append((
        f"sum of {len(ours['outputs'])} outputs", *(f"{v:.2f}" for v in sums), f"{sum(o['stand_in_seconds'] for o in ours['outputs']):.2f}",
        f"{sum(o['total_seconds'] for o in ours['outputs']):.2f}", "|",
        f"{sum(a['seconds']['write_nifti'] for a in anchor['outputs']):.2f}", f"{sum(a['seconds']['write_metadata'] for a in anchor['outputs']):.2f}",
        *(f"{sum(a['itkimage2segimage_seconds'][f] for a in anchor['outputs']):.2f}" for f in flavours),
        *(f"{sum(a['total_seconds'][f] for a in anchor['outputs']):.2f}" for f in flavours),
    ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = ["  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in rows]

    goals, ratios, checks = results["goals"], results["ratios"], results["checks"]
    goal_anchor = goals["faster_than_anchor"]["anchor"]
    versions, machine = results["versions"], results["machine"]
    outputs = len(ours["outputs"])

    def exact(side: str) -> str:
        flags = checks["read_back_exact"][side]
        return f"{sum(flags)}/{len(flags)}"

    def mib(sizes: list[int]) -> str:
        return f"{statistics.median(sizes) / 2**20:.2f} MiB"

    agreement = ", ".join(f"{source} {value:.3f}" for source, value in checks["rotation_round_trip_agreement"].items())
    return "\n".join([
        f"Stage 1 overhead per series: grid {' x '.join(map(str, grid['shape']))} ({' x '.join(f'{s:g}' for s in grid['spacing_mm'])} mm), "
        f"{grid['voxels'] / 1e6:.1f} M voxels, {outputs} outputs (3 stand-in sources x 3 augmentations), "
        f"{machine['cpu_cores']} CPU cores, load average {machine['load_average_before'][0]:.2f} before / {machine['load_average_after'][0]:.2f} after; "
        f"{machine['warm_up_seconds']['gib']:g} GiB of memory touched before each side (took {machine['warm_up_seconds']['before_ours']:.1f} s "
        f"before ours, {machine['warm_up_seconds']['before_anchor']:.1f} s before the anchor)",
        "ours: read_ct_series once; augmented_ct once per augmentation (augment); per output [stand-in inference: timed, not counted], "
        "to_schema on the augmented CT (harmonize) and AugmentedCT.inverse (invert) in worker threads as Predict runs them; "
        "then write_seg (LABELMAP) (encode) in worker threads and LocalStore.put_many (store, shown shared evenly) as EncodeAndStore",
        f"anchor: dcm2niix {versions['dcm2niix']} ({' '.join(DCM2NIIX_FLAGS)}) once; per output nib.save .nii.gz (nifti), dcmqi metadata JSON (json), "
        f"itkimage2segimage (dcmqi {versions['dcmqi']}) as CloudSegmentator ({' '.join(ANCHOR_FLAVOURS['cloudsegmentator'])}) "
        f"and as MHub ({' '.join(ANCHOR_FLAVOURS['mhub'])}); plastimatch: {anchor['plastimatch']}",
        "",
        "seconds per output and step:",
        *table,
        "",
        f"once per series: ours read_ct_series {ours['read_ct_series_seconds']:.2f} s; anchor dcm2niix {anchor['dcm2niix_seconds']:.2f} s",
        "goal 1: ours {:.2f} s per series ({} outputs, augmentations included) vs anchor {}".format(
            ours["per_series_seconds"], outputs, "; ".join(
                f"{f} {anchor['per_series_seconds'][f]:.2f} s (anchor/ours {ratios[f]:.2f}x)" for f in flavours)),
        f"goal 1: ours <= anchor ({goal_anchor}, anchor/ours >= 1.0): {_met(goals['faster_than_anchor'])}; "
        f"ours <= {GOAL_SERIES_SECONDS:g} s per series: {_met(goals['per_series'])}",
        "information, CPU seconds per series (all threads and child processes: less swayed than wall time by other work "
        "on the machine): ours {:.2f} s; anchor {}".format(ours["per_series_cpu_seconds"], "; ".join(
            f"{f} {anchor['per_series_cpu_seconds'][f]:.2f} s (anchor/ours {anchor['per_series_cpu_seconds'][f] / ours['per_series_cpu_seconds']:.2f}x)"
            for f in flavours)),
        "information: ours per phase (wall): " + ", ".join(f"{phase} {value:.2f} s" for phase, value in ours["phase_seconds"].items())
        + f"; step seconds summed over the outputs, read included: {ours['step_seconds_summed']:.2f} s (outputs overlap in "
        "worker threads, so they add up to more than the wall time)",
        f"SEGs read back exact: ours {exact('ours')}, " + ", ".join(f"anchor {f} {exact(f'anchor_{f}')}" for f in flavours)
        + f"; median SEG size ours {mib([o['size_bytes'] for o in ours['outputs']])}, "
        + ", ".join(f"anchor {f} {mib([a['size_bytes'][f] for a in anchor['outputs']])}" for f in flavours),
        f"rotation round trip (rotated output vs unaugmented output, labelled voxels that agree): {agreement}",
    ])


def _met(goal: dict) -> str:
    return "met" if goal["met"] else "NOT met"
