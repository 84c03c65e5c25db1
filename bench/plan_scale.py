"""Can a whole collection be planned and submitted? ``bonehub segment --dry-run-proto`` on all of NLST.

Input: the CT series of IDC's ``nlst`` collection as the bundled IDC index lists them (about
203,000), offline; one weight-free source (``baseline``), no augmentation; Dataflow options
with ``--dry-run-proto``, so the job is built and written but nothing is submitted, downloaded
or run.

Ours: the whole command in a child process, as a user runs it: query the index, plan every
output, write the series selection as a file in the staging area (``pipeline.selection``) and
build the Dataflow job. Measured: wall time, the child's peak resident memory (its own ``VmHWM``
as it exits: ``ru_maxrss`` of a child starts from its parent's peak at the fork) and the size of
the built job (the pipeline proto, as Dataflow receives it).

Anchor: the same command on the first 20 of those series (``--idc-series``): the job must be
the same size within 1 KB, whatever the selection's size, and far below the ~20 MB Dataflow
accepts. The anchor's peak memory is what the command needs whatever the selection (Python, Beam,
duckdb and the sources' imports: about 400 MiB here); ours minus it is what the selection costs.

Goals (issue 16, goal 5): planning within a minute, the selection costing a few hundred MB at
most (we hold it to 300 MiB over the anchor), the job under 1 MB and independent of the
selection's size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.publish import publish

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "plan_scale.json"
COLLECTION = "nlst"
ANCHOR_SERIES = 20
GOAL_SECONDS, GOAL_EXTRA_MIB, GOAL_JOB_BYTES, GOAL_JOB_DIFFERENCE = 60.0, 300.0, 1_000_000, 1_000
# the CLI in this process, writing its peak resident memory (kB, /proc VmHWM) to argv[1] as it exits
_REPORT_PEAK_THEN_RUN_CLI = """
import atexit, sys
from pathlib import Path
out = Path(sys.argv.pop(1))
def peak():
    out.write_text(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))
atexit.register(peak)
from pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""
DATAFLOW = ["--runner", "DataflowRunner", "--project", "bonehub-bench", "--region", "europe-west4",
            "--temp_location", "gs://bonehub-bench/tmp", "--sdk_container_image", "europe-west4-docker.pkg.dev/p/r/w:t"]


def _plan(selection: list[str], folder: Path) -> dict[str, float]:
    """Run ``bonehub segment ... --dry-run-proto`` in a child process; its wall time, peak memory and job size."""
    proto_path = folder / "job.textproto"
    command = [sys.executable, "-c", _REPORT_PEAK_THEN_RUN_CLI, str(folder / "peak"), "segment", *selection, "--source", "baseline",
               "--out", "gs://bonehub-bench/seg", "--manifest", "gs://bonehub-bench/seg/manifest.parquet",
               "--staging", "gs://bonehub-bench/staging", "--cache-dir", str(folder / "cache"),
               *DATAFLOW, "--dry-run-proto", str(proto_path)]
    folder.mkdir(parents=True)
    with open(folder / "stdout", "w+") as stdout, open(folder / "stderr", "w+") as stderr:
        started = time.perf_counter()
        status = subprocess.run(command, stdout=stdout, stderr=stderr).returncode
        seconds = time.perf_counter() - started
        stdout.seek(0), stderr.seek(0)
        printed, errors = stdout.read(), stderr.read()
    if status != 0:
        raise RuntimeError(f"bonehub segment --dry-run-proto failed ({status}): {errors.strip()[-2000:]}")
    return {"seconds": seconds, "peak_mib": int((folder / "peak").read_text()) / 1024, "job_bytes": _job_bytes(proto_path),
            "outputs": int(printed.split(" outputs ->")[0].rsplit(":", 1)[1])}


def _job_bytes(path: Path) -> int:
    """Size of the pipeline proto (binary, as submitted) read back from the text the command wrote."""
    from apache_beam.portability.api import beam_runner_api_pb2
    from google.protobuf import text_format

    proto = beam_runner_api_pb2.Pipeline()
    text_format.Parse(path.read_text(), proto)
    return proto.ByteSize()


def run() -> dict:
    from dicom_io.idc import resolve

    series = [s.series_uid for s in resolve(collection_id=COLLECTION)]
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as folder:
        anchor = _plan([arg for uid in series[:ANCHOR_SERIES] for arg in ("--idc-series", uid)], Path(folder) / "anchor")
        ours = _plan(["--idc-collection", COLLECTION], Path(folder) / "ours")
    difference = abs(ours["job_bytes"] - anchor["job_bytes"])
    goals = {
        f"planning <= {GOAL_SECONDS:.0f} s": ours["seconds"] <= GOAL_SECONDS,
        f"memory the selection adds <= {GOAL_EXTRA_MIB:.0f} MiB": ours["peak_mib"] - anchor["peak_mib"] <= GOAL_EXTRA_MIB,
        "job < 1 MB": ours["job_bytes"] < GOAL_JOB_BYTES,
        "job size independent of the selection (within 1 KB)": difference < GOAL_JOB_DIFFERENCE,
    }
    lines = [f"== plan_scale: bonehub segment --idc-collection {COLLECTION} --dry-run-proto (Dataflow job built, not submitted)"]
    for name, m in (("ours", ours), (f"anchor ({ANCHOR_SERIES} series)", anchor)):
        lines.append(f"{name:>20}: {m['outputs']:>7,} outputs  {m['seconds']:6.1f} s  peak {m['peak_mib']:6.0f} MiB  "
                     f"job {m['job_bytes']:,} bytes")
    lines.append(f"job size difference: {difference} bytes for {ours['outputs'] / anchor['outputs']:,.0f}x the outputs; "
                 f"memory the selection adds: {ours['peak_mib'] - anchor['peak_mib']:.0f} MiB")
    lines += [f"  goal {goal}: {'met' if met else 'NOT met'}" for goal, met in goals.items()]
    result = {"collection": COLLECTION, "ours": ours, "anchor": anchor, "job_difference_bytes": difference,
              "goals": goals, "load_average": os.getloadavg()}
    return publish(result, "\n".join(lines), RESULTS_PATH)
