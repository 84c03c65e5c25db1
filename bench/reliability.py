"""Reliability probes: bad input, kill -9 then rerun, four runs at once, a store outage, network use.

Each probe runs ``bonehub`` as a user would (a separate process, its exit status and output read back)
on small synthetic CT series, and is classed:

- clear error: exit 2 (refused before any work, one ``bonehub: error:`` line) or 3 (ran, the item
  failed with its reason in the manifest or on stderr), and no traceback;
- silent wrong result: exit 0 on bad input, a SEG that does not read, a manifest row lost;
- crash: a traceback or any other exit status.

Goals (printed next to the totals): 0 silent wrong results, 0 rows lost, 0 corrupt SEGs, 0 temp files
left behind, 0 network attempts outside the stores a run was given.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom

from bench.network_guard import no_network
from bench.publish import publish
from dicom_io.ct_writer import write_ct_series

STUDY, FRAME = "1.2.826.0.1.3680043.8.498.9100", "1.2.826.0.1.3680043.8.498.9101"
SERIES = tuple(f"1.2.826.0.1.3680043.8.498.91{i:02d}" for i in range(10, 14))
RESULTS = Path(__file__).parent / "results" / "reliability.json"


@dataclass
class Totals:
    kinds: int = 0
    clear: int = 0
    silent_wrong: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    rows_lost: int = 0
    corrupt_segs: int = 0
    temp_left: int = 0
    network_attempts: list[str] = field(default_factory=list)


def write_series(folder: Path, series_uid: str, shape: tuple[int, int, int] = (24, 40, 48)) -> Path:
    """A small CT with a bright box (bone for the baseline), one file per slice."""
    array = np.full(shape, 40, np.int16)
    array[6:16, 12:28, 10:30] = 1000
    volume = hd.Volume.from_components(array, spacing=(2.5, 1.5, 1.5), direction=np.eye(3), position=(0.0, 0.0, 0.0),
                                       coordinate_system="PATIENT", frame_of_reference_uid=FRAME)
    write_ct_series(volume, folder, study_instance_uid=STUDY, series_instance_uid=series_uid, frame_of_reference_uid=FRAME)
    return folder


def bonehub(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def classify(name: str, result: subprocess.CompletedProcess, totals: Totals) -> None:
    totals.kinds += 1
    crashed = "Traceback" in result.stderr or result.returncode not in (0, 2, 3)
    if crashed:
        totals.crashes.append(f"{name}: exit {result.returncode}")
    elif result.returncode == 0:
        totals.silent_wrong.append(name)
    else:
        totals.clear += 1


def _edit_slices(folder: Path, edit: Callable[[int, pydicom.Dataset], None]) -> None:
    for i, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        edit(i, ds)
        ds.save_as(path)


def _bad_dicom_inputs(work: Path) -> dict[str, Path]:
    """Folder name -> a CT series broken in one way a hostile but fair user would try."""
    def spacing(_, ds):
        ds.PixelSpacing = [1e6, 1e6]

    def unsigned(_, ds):
        stored = (ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept) + 1024).clip(0).astype(np.uint16)
        ds.PixelData, ds.PixelRepresentation = stored.tobytes(), 0
        del ds.RescaleIntercept, ds.RescaleSlope

    def foreign(i, ds):
        if i == 3:
            ds.Modality = "MR"

    folders = {}
    for name, edit in (("spacing 1e6 mm", spacing), ("no rescale, unsigned", unsigned), ("one MR slice", foreign)):
        folders[name] = write_series(work / name.replace(" ", "_").replace(",", ""), SERIES[0])
        _edit_slices(folders[name], edit)
    corrupt = write_series(work / "corrupt_top_slice", SERIES[0])
    top = sorted(corrupt.iterdir())[-1]
    data = bytearray(top.read_bytes())
    data[132:400] = b"\xff" * 268
    top.write_bytes(bytes(data))
    folders["corrupt top slice"] = corrupt
    missing = write_series(work / "missing_slice", SERIES[0])
    sorted(missing.iterdir())[10].unlink()
    folders["missing middle slice"] = missing
    return folders


def _bad_volumes(work: Path) -> dict[str, Path]:
    import SimpleITK as sitk

    folder = work / "volumes"
    folder.mkdir()
    good = np.full((12, 20, 24), 40, np.int16)
    four_d = sitk.GetImageFromArray(np.zeros((2, 12, 20, 24), np.int16), isVector=False)
    sitk.WriteImage(four_d, str(folder / "four_d.nii.gz"))
    nan = good.astype(np.float32)
    nan[3, 4, 5] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(folder / "nan.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(good), str(folder / "whole.nii.gz"))
    (folder / "truncated.nii.gz").write_bytes((folder / "whole.nii.gz").read_bytes()[:200])
    (folder / "whole.nii.gz").unlink()
    (folder / "empty.nii.gz").write_bytes(b"")
    return {f"volume: {p.stem.removesuffix('.nii')}": p for p in sorted(folder.iterdir())}


def probe_bad_input(work: Path, totals: Totals) -> None:
    good = write_series(work / "good", SERIES[1])
    out = ["--out", str(work / "out_bad"), "--cache-dir", str(work / "cache_bad")]
    for name, folder in _bad_dicom_inputs(work).items():
        classify(name, bonehub("segment", "--dicom-folder", str(folder), "--source", "baseline", *out, cwd=work), totals)
    for name, path in _bad_volumes(work).items():
        classify(name, bonehub("segment", "--volumes", str(path), "--source", "baseline", *out, cwd=work), totals)
    (work / "a_file").write_text("x")
    table = work / "dup.csv"
    table.write_text(f"series_uid,path\n{SERIES[1]},a.nii.gz\n{SERIES[1]},b.nii.gz\n")
    config = work / "qc.json"
    config.write_text(json.dumps({"nsd_tolerance_mm": -1}))
    arguments = {
        "--out ftp://": ["--source", "baseline", "--out", "ftp://host/x"],
        "--out is a file": ["--source", "baseline", "--out", str(work / "a_file")],
        "--out below a file": ["--source", "baseline", "--out", str(work / "a_file" / "seg")],
        "store outage (DICOMweb down)": ["--source", "baseline", "--out", "http://127.0.0.1:9/dicom-web"],
        "unknown task": ["--source", "totalsegmentator:totl", *out],
        "missing plugin": ["--source", "plugin:no_such.module:Model", *out],
        "noise(1e308)": ["--source", "baseline", "--augment", "noise(1e308)", *out],
        "duplicate precomputed rows": ["--source", f"precomputed:{table}?label_set=totalsegmentator_total&name=a&version=1", *out],
        "PrismRunner": ["--source", "baseline", *out, "--runner", "PrismRunner"],
    }
    for name, args in arguments.items():
        classify(name, bonehub("segment", "--dicom-folder", str(good), *args, cwd=work), totals)
    classify("negative NSD tolerance", bonehub("run", "--dicom-folder", str(good), "--source", "baseline",
                                               "--qc-config", str(config), *out, cwd=work), totals)


def _check_outputs(out: Path, expected_rows: int, totals: Totals) -> None:
    manifest = pd.read_parquet(out / "manifest.parquet") if (out / "manifest.parquet").exists() else pd.DataFrame()
    done = manifest[manifest.status.isin(["written", "exists"])] if len(manifest) else manifest
    totals.rows_lost += max(expected_rows - len(done), 0)
    for path in out.rglob("*.dcm"):
        try:
            pydicom.dcmread(path).SegmentSequence  # noqa: B018  (reading it is the check)
        except Exception:
            totals.corrupt_segs += 1
    totals.temp_left += sum(1 for p in out.rglob(".*") if p.is_file() and (p.suffix in (".tmp", ".partial")))


def probe_kills(work: Path, totals: Totals, trials: int, seed: int = 0) -> None:
    """Start a run, kill -9 it at a random moment, rerun it to the end: nothing lost, nothing corrupt."""
    inputs = work / "kill_inputs"
    for uid in SERIES[:3]:
        write_series(inputs / uid, uid)
    rng = random.Random(seed)
    started = time.perf_counter()
    full = bonehub("segment", "--dicom-folder", str(inputs), "--source", "baseline", "--augment", "rotate(0,0,5)",
                   "--out", str(work / "kill_probe_full"), "--cache-dir", str(work / "kill_cache_full"), cwd=work)
    duration = time.perf_counter() - started
    if full.returncode != 0:
        totals.crashes.append(f"reference run: exit {full.returncode}")
    for trial in range(trials):
        out, cache = work / f"kill_{trial}", work / f"kill_cache_{trial}"
        args = [sys.executable, "-m", "pipeline.cli", "segment", "--dicom-folder", str(inputs), "--source", "baseline",
                "--augment", "rotate(0,0,5)", "--out", str(out), "--cache-dir", str(cache)]
        process = subprocess.Popen(args, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        time.sleep(rng.uniform(0.3, duration))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        rerun = bonehub(*args[3:], cwd=work)
        totals.kinds += 1
        if rerun.returncode != 0 or "Traceback" in rerun.stderr:
            totals.crashes.append(f"rerun after kill {trial}: exit {rerun.returncode}")
        else:
            totals.clear += 1
        _check_outputs(out, expected_rows=6, totals=totals)


def probe_concurrent(work: Path, totals: Totals, runs: int = 4) -> None:
    """``runs`` runs into one store and manifest at once, each on its own series: every row kept."""
    out = work / "concurrent"
    processes = []
    for uid in SERIES[:runs]:
        folder = write_series(work / "concurrent_inputs" / uid, uid)
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "segment", "--dicom-folder", str(folder), "--source", "baseline",
             "--out", str(out), "--cache-dir", str(work / f"concurrent_cache_{uid}")],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, err = process.communicate(timeout=600)
        totals.kinds += 1
        if process.returncode != 0 or "Traceback" in err:
            totals.crashes.append(f"concurrent run: exit {process.returncode}")
        else:
            totals.clear += 1
    _check_outputs(out, expected_rows=runs, totals=totals)


def probe_network(work: Path, totals: Totals) -> None:
    """A local run with every lookup or connection outside loopback recorded."""
    from pipeline.cli import main

    folder = write_series(work / "network_input", SERIES[0])
    with no_network() as attempts:
        rc = main(["run", "--dicom-folder", str(folder), "--source", "baseline", "--out", str(work / "network_out"),
                   "--cache-dir", str(work / "network_cache")])
    totals.kinds += 1
    totals.clear += rc == 0
    totals.network_attempts += attempts


def run(kills: int = 5, results_path: Path | None = RESULTS) -> dict:
    totals = Totals()
    with tempfile.TemporaryDirectory(prefix="bonehub-reliability-") as tmp:
        work = Path(tmp)
        probe_bad_input(work, totals)
        probe_kills(work, totals, kills)
        probe_concurrent(work, totals)
        probe_network(work, totals)
    results = {
        "kinds tried": totals.kinds, "clear errors or clean runs": totals.clear,
        "silent wrong results": totals.silent_wrong, "crashes": totals.crashes, "rows lost": totals.rows_lost,
        "corrupt SEGs": totals.corrupt_segs, "temp files left": totals.temp_left,
        "network attempts outside the given stores": totals.network_attempts, "kill trials": kills,
    }
    lines = ["reliability probes (goal 0 in every row but the first two)"]
    for key, value in results.items():
        lines.append(f"  {key:45s} {len(value) if isinstance(value, list) else value}"
                     + (f"  {value}" if isinstance(value, list) and value else ""))
    return publish(results, "\n".join(lines), results_path)
