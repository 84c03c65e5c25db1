"""Dataflow cost per CT series for 1, 2 and 3 segmentation sources, next to IDC's $0.008 (TotalSegmentator alone).

Arithmetic only: measured seconds per step x the hourly price of the worker that runs the step. The
inputs come in three labelled groups, each with its source (docs/cost_model.md explains every one):

- ``MEASURED_*``: reading the CT, staging it and the label maps (serialization and local-disk I/O of
  ``pipeline.staging``), Stage 1's per-output steps (harmonize, SEG encode, store) and Stage 2 QC,
  timed on this project's 2-core machine on the bench phantom (bench/README.md, docs/cost_model.md);
- ``DATAFLOW_PRICES``: Dataflow batch list prices for us-central1 as apache-beam 2.77.0 ships them
  (``apache_beam/testing/load_tests/dataflow_cost_consts.py``, transcribed by the Beam project from
  https://cloud.google.com/dataflow/pricing): check the live page before quoting a number;
- ``Assumptions``: what cannot be measured here, above all the GPU seconds per source (no GPU on this
  machine; the default is TotalSegmentator's published runtime, and the table shows how cost scales)
  and the download and staging (GCS) throughputs.

Where steps run follows pipeline/segment_job.py and pipeline/dataflow.py: only ``Predict`` carries the
accelerator hint, so the GPU worker runs inference, harmonize (``to_schema``, inside the source run) and
its own staging I/O (read the staged CT once per series, stage each label map), and pays the worker
start-up; CPU workers run ``StageSeries`` (download, read CT, stage CT), ``EncodeAndStore`` (read the
staged CT and each staged label map, encode, store) and QC. Each staging transfer is its measured
(de)serialization on local disk plus its size / the assumed GCS throughput. "sequential" bills every
step one after another at its worker's rate; "GPU busy" is the lower bound where harness threads keep
the GPU worker's other work off the GPU's critical path: GPU-worker seconds = max(inference, other
GPU-worker seconds / lanes), plus everything billed on CPU workers and the start-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.publish import publish

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "cost_model.json"
IDC_TOTALSEGMENTATOR_PER_SERIES = 0.008
IDC_SOURCE = ("Thiriveedhi et al., 'Cloud-based large-scale curation of medical imaging data using AI segmentation', "
              "Research Square preprint rs.3.rs-4351526 (2024), PMC11092813: TotalSegmentator and pyradiomics on "
              ">126,000 NLST CT series for $1,011.05 in total, about $0.008 per series")
# The steps by the worker that runs them, in pipeline order (StageSeries, Predict, EncodeAndStore, QC).
GPU_STEPS = ("inference (GPU)", "harmonize", "staging I/O (GPU)", "worker start-up")
CPU_STEPS = ("download", "read CT", "stage CT", "read staged", "encode+store", "QC")


@dataclass(frozen=True)
class Prices:
    """Dataflow batch prices in USD per hour (per vCPU, per GB of memory or disk, per GPU)."""

    vcpu_hour: float
    memory_gb_hour: float
    disk_gb_hour: float
    gpu_hour: Mapping[str, float]
    source: str


DATAFLOW_PRICES = Prices(
    vcpu_hour=0.056,
    memory_gb_hour=0.003557,
    disk_gb_hour=0.000054,  # standard persistent disk
    gpu_hour={"nvidia-tesla-t4": 0.42, "nvidia-l4": 0.672},
    source="apache-beam 2.77.0 apache_beam/testing/load_tests/dataflow_cost_consts.py ('Dataflow costs for running "
           "jobs in us-central1', from https://cloud.google.com/dataflow/pricing); list prices, no discounts",
)


@dataclass(frozen=True)
class Worker:
    """One Dataflow worker VM: machine type, GPU and disk."""

    name: str
    vcpus: int
    memory_gb: float
    disk_gb: float
    gpu: str | None = None
    gpus: int = 0

    def hourly(self, prices: Prices) -> dict[str, float]:
        """USD per hour by resource: what the worker costs whatever it is doing."""
        return {
            "vcpu": self.vcpus * prices.vcpu_hour,
            "memory": self.memory_gb * prices.memory_gb_hour,
            "disk": self.disk_gb * prices.disk_gb_hour,
            "gpu": self.gpus * prices.gpu_hour[self.gpu] if self.gpus else 0.0,
        }

    def usd_per_second(self, prices: Prices) -> float:
        return sum(self.hourly(prices).values()) / 3600


# GPU workers: L4 on g2-standard-8 with 100 GB disk is pipeline/dataflow.py's DataflowProfile default;
# T4 on n1-standard-4 is the cheaper Dataflow GPU. CPU workers (StageSeries, EncodeAndStore, QC): an
# assumption (n1-standard-4).
L4_WORKER = Worker("g2-standard-8 + 1 x NVIDIA L4", vcpus=8, memory_gb=32, disk_gb=100, gpu="nvidia-l4", gpus=1)
T4_WORKER = Worker("n1-standard-4 + 1 x NVIDIA T4", vcpus=4, memory_gb=15, disk_gb=100, gpu="nvidia-tesla-t4", gpus=1)
CPU_WORKER = Worker("n1-standard-4", vcpus=4, memory_gb=15, disk_gb=100)


@dataclass(frozen=True)
class StepTimes:
    """Seconds per series on one CT size, measured on this project's 2-core machine.

    The staging steps are (de)serialization plus local-disk I/O only; the GCS transfer of
    ``staged_ct_mib`` and ``labels_mib`` is added by ``series_cost`` from an assumed throughput.
    """

    slices: int  # of 512 x 512
    read_ct_s: float  # read_ct_series (decode the DICOM series) once per series
    stage_ct_s: float  # staging.put_ct (ct_to_bytes + write) once per series
    read_staged_ct_s: float  # staging.get_ct (read + ct_from_bytes), once per series in Predict and in EncodeAndStore
    harmonize_s: float  # per output: native labels -> schema ids
    put_labels_s: float  # per output: staging.put_labels (np.savez_compressed + write)
    get_labels_s: float  # per output: staging.get_labels (read + np.load)
    encode_s: float  # per output: write_seg LABELMAP (RLE)
    store_s: float  # per output: store.put
    qc_s: Mapping[int, float]  # qc.assess.assess_series by number of members
    seg_mib: float  # one LABELMAP SEG
    staged_ct_mib: float  # the staged CT object (ct.npz)
    labels_mib: float  # one staged label map (<SOPInstanceUID>.labels.npz)
    source: str

    def scaled(self, slices: int) -> StepTimes:
        """The same steps on a CT of ``slices`` slices, linear in the voxel count (assumption; see docs)."""
        f = slices / self.slices
        return replace(self, slices=slices, read_ct_s=self.read_ct_s * f, stage_ct_s=self.stage_ct_s * f,
                       read_staged_ct_s=self.read_staged_ct_s * f, harmonize_s=self.harmonize_s * f,
                       put_labels_s=self.put_labels_s * f, get_labels_s=self.get_labels_s * f,
                       encode_s=self.encode_s * f, store_s=self.store_s * f,
                       qc_s={n: s * f for n, s in self.qc_s.items()}, seg_mib=self.seg_mib * f,
                       staged_ct_mib=self.staged_ct_mib * f, labels_mib=self.labels_mib * f,
                       source=f"{self.source}, scaled linearly from {self.slices} to {slices} slices")


# `measure((152, 512, 512))` on this project's 2-core machine, 2026-11-22, load average 0.25 before and 0.71 after
# (47.7 s): the bench phantom at IDC's median CT size. The model's default input.
MEASURED_152 = StepTimes(
    slices=152, read_ct_s=0.96, stage_ct_s=0.426, read_staged_ct_s=0.499, harmonize_s=0.207, put_labels_s=0.251,
    get_labels_s=0.066, encode_s=0.509, store_s=0.087, qc_s={1: 1.02, 2: 1.46, 3: 1.48, 9: 10.87}, seg_mib=0.69,
    staged_ct_mib=76.18, labels_mib=0.147,
    source="bench phantom 152x512x512, bench.cost_model.measure, 2026-11-22 (docs/cost_model.md)",
)
# The same at the bench's full size (`measure((300, 512, 512))`, 2026-11-22, load 0.31 before, 1.18 after, 98.5 s);
# bench/README.md has read_ct_series 1.75 s and QC of 9 members 19.97 s at this size.
MEASURED_300 = StepTimes(
    slices=300, read_ct_s=2.57, stage_ct_s=1.334, read_staged_ct_s=0.958, harmonize_s=0.388, put_labels_s=0.492,
    get_labels_s=0.132, encode_s=1.572, store_s=0.137, qc_s={1: 2.29, 2: 2.11, 3: 3.99, 9: 18.91}, seg_mib=1.34,
    staged_ct_mib=150.33, labels_mib=0.288,
    source="bench phantom 300x512x512, bench.cost_model.measure, 2026-11-22 (docs/cost_model.md)",
)


def measure(shape: tuple[int, int, int]) -> dict[str, float]:
    """Time the steps this model prices on the bench phantom of ``shape`` (about a minute at 152 x 512 x 512).

    Stage 1: ``read_ct_series`` once; staging on local disk in a temporary folder (``pipeline.staging``):
    ``put_ct`` and ``get_ct`` of the read CT, ``put_labels`` and ``get_labels`` of each un-augmented
    output's schema label map as ``Predict`` stages it (``to_schema``'s array, made untimed); then
    harmonize / encode / store of the un-augmented outputs of ``bench.stage1_overhead`` (median of its 3
    sources for every per-output step); QC: ``assess_series`` on 1, 2, 3 and 9 members of
    ``bench.qc_speed``'s phantom (one source without augmentation each, then all 9).
    """
    import os
    import statistics
    import tempfile
    import time

    import numpy as np
    from pydicom.uid import generate_uid

    from bench.qc_speed import make_members
    from bench.stage1_overhead import prepare, run_ours
    from dicom_io.ct_series import read_ct_series
    from models.augment import parse_augmentation
    from models.harmonize import to_schema
    from models.segment import SchemaLabels
    from pipeline import staging
    from qc.assess import assess_series
    from qc.score import QcSettings

    result: dict[str, float] = {"load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as work:
        ct_dir, stand_ins = prepare(shape, Path(work))
        started = time.perf_counter()
        ct = read_ct_series(ct_dir)
        result["read_ct_s"] = time.perf_counter() - started

        area = staging.Staging(str(Path(work) / "staging"))
        ct_uri = area.ct_uri(ct.series_instance_uid, staging.ct_fingerprint(ct))
        started = time.perf_counter()
        staging.put_ct(ct_uri, ct)
        result["stage_ct_s"] = time.perf_counter() - started
        result["staged_ct_mib"] = Path(ct_uri).stat().st_size / 2**20
        started = time.perf_counter()
        staged_ct = staging.get_ct(ct_uri)
        result["read_staged_ct_s"] = time.perf_counter() - started
        if not np.array_equal(staged_ct.volume.array, ct.volume.array):
            raise AssertionError("the staged CT does not read back as the CT that was staged")

        outputs, _ = run_ours(ct, stand_ins, Path(work) / "store")
        plain = [o for o in outputs if o.augmentation == "none"]
        for step in ("harmonize", "encode", "store"):
            result[f"{step}_s"] = statistics.median(o.seconds[step] for o in plain)
        result["seg_mib"] = statistics.median(o.size_bytes for o in plain) / 2**20

        none = parse_augmentation("none")
        put_s, get_s, sizes = [], [], []
        for output in plain:
            schema_map = to_schema(stand_ins[output.source].predict(ct.volume, none), ct)  # as Predict stages it
            uri = staging.labels_uri(ct_uri, generate_uid())
            started = time.perf_counter()
            staging.put_labels(uri, SchemaLabels(schema_map))
            put_s.append(time.perf_counter() - started)
            sizes.append(Path(uri).stat().st_size)
            started = time.perf_counter()
            read_back = staging.get_labels(uri).labels
            get_s.append(time.perf_counter() - started)
            if not np.array_equal(read_back, schema_map):
                raise AssertionError(f"the staged label map of {output.source} does not read back as staged")
        result["put_labels_s"], result["get_labels_s"] = statistics.median(put_s), statistics.median(get_s)
        result["labels_mib"] = statistics.median(sizes) / 2**20
    members, maps, affine = make_members(shape)
    for n, picked in {1: [0], 2: [0, 3], 3: [0, 3, 6], 9: list(range(9))}.items():
        started = time.perf_counter()
        assess_series("cost", "cost", [members[i] for i in picked], [maps[i] for i in picked], affine, QcSettings())
        result[f"qc_{n}_s"] = time.perf_counter() - started
    result["load_after"] = os.getloadavg()[0]
    return result


@dataclass(frozen=True)
class Assumptions:
    """Inputs that cannot be measured on this machine; each is a parameter of the table."""

    gpu_seconds_per_source: float = 77.0  # TotalSegmentator README: `total` (1.5 mm), 512x512x280, RTX 3090
    download_mb_per_s: float = 50.0  # s5cmd from IDC's bucket inside Google Cloud: not measured here
    worker_startup_s: float = 1200.0  # boot + image pull + model load; CloudSegmentator saw 15-20 min per VM on Terra
    series_per_worker: int = 1000  # series one GPU worker handles over its life (autoscaling decides)
    lanes: int = 2  # series whose CPU work runs side by side on one worker (the steps were timed on 2 cores)
    staging_mb_per_s: float = 100.0  # one staged object to or from GCS in the job's region, one stream: not measured here


ASSUMPTIONS = Assumptions()


@dataclass(frozen=True)
class Series:
    """The typical series priced: IDC's median CT (read from idc-index by ``idc_ct_scale``)."""

    slices: int
    size_mb: float


@dataclass(frozen=True)
class SeriesCost:
    """Seconds and USD per series for one number of sources, by step."""

    n_sources: int
    seconds: dict[str, float]
    usd_per_second: dict[str, float]  # by step: the rate of the worker that runs it
    gpu_busy_seconds: float  # GPU-worker seconds in the overlapped lower bound
    outputs_mib: float

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def usd_by_step(self) -> dict[str, float]:
        return {step: s * self.usd_per_second[step] for step, s in self.seconds.items()}

    @property
    def usd(self) -> float:
        """Sequential: each worker is billed for each of its steps, one after another."""
        return sum(self.usd_by_step.values())

    @property
    def usd_gpu_worker(self) -> float:
        """Sequential, the part billed on the GPU worker (``GPU_STEPS``)."""
        return sum(usd for step, usd in self.usd_by_step.items() if step in GPU_STEPS)

    @property
    def usd_gpu_busy(self) -> float:
        """Lower bound: the GPU worker's other work (harmonize, staging I/O) overlaps inference on other threads."""
        gpu_rate = self.usd_per_second["inference (GPU)"]
        outside = sum(usd for step, usd in self.usd_by_step.items() if step in CPU_STEPS or step == "worker start-up")
        return self.gpu_busy_seconds * gpu_rate + outside


def staging_transfer_s(mib: float, assumptions: Assumptions = ASSUMPTIONS) -> float:
    """Seconds to move one staged object of ``mib`` MiB to or from GCS at the assumed throughput (MB/s, 10^6 bytes)."""
    return mib * 2**20 / 1e6 / assumptions.staging_mb_per_s


def series_cost(n_sources: int, times: StepTimes, series: Series, assumptions: Assumptions = ASSUMPTIONS,
                gpu_worker: Worker = L4_WORKER, cpu_worker: Worker = CPU_WORKER,
                prices: Prices = DATAFLOW_PRICES) -> SeriesCost:
    """Seconds by step and their price for one series segmented by ``n_sources`` GPU sources, then QC'd."""
    if n_sources < 1:
        raise ValueError(f"n_sources must be at least 1, got {n_sources}")
    if series.slices != times.slices:
        times = times.scaled(series.slices)
    if n_sources not in times.qc_s:
        raise ValueError(f"QC was not measured with {n_sources} members ({times.source}): measured {sorted(times.qc_s)}")
    consensus = n_sources >= 2  # QC writes a consensus SEG once there is something to agree on
    ct_transfer = staging_transfer_s(times.staged_ct_mib, assumptions)
    labels_transfer = staging_transfer_s(times.labels_mib, assumptions)
    read_staged_ct = times.read_staged_ct_s + ct_transfer  # once per series in Predict, once in EncodeAndStore
    seconds = {
        # StageSeries, CPU worker
        "download": series.size_mb / assumptions.download_mb_per_s,
        "read CT": times.read_ct_s,
        "stage CT": times.stage_ct_s + ct_transfer,
        # Predict, GPU worker
        "inference (GPU)": n_sources * assumptions.gpu_seconds_per_source,
        "harmonize": n_sources * times.harmonize_s,
        "staging I/O (GPU)": read_staged_ct + n_sources * (times.put_labels_s + labels_transfer),
        "worker start-up": assumptions.worker_startup_s / assumptions.series_per_worker,
        # EncodeAndStore, CPU worker
        "read staged": read_staged_ct + n_sources * (times.get_labels_s + labels_transfer),
        "encode+store": n_sources * (times.encode_s + times.store_s),
        # Stage 2, CPU worker
        "QC": times.qc_s[n_sources] + (times.encode_s + times.store_s if consensus else 0.0),
    }
    gpu_rate, cpu_rate = gpu_worker.usd_per_second(prices), cpu_worker.usd_per_second(prices)
    rates = {step: gpu_rate if step in GPU_STEPS else cpu_rate / assumptions.lanes for step in seconds}
    if set(seconds) != set(GPU_STEPS) | set(CPU_STEPS):
        raise AssertionError(f"steps {sorted(seconds)} are not those of GPU_STEPS and CPU_STEPS")
    other = sum(seconds[s] for s in GPU_STEPS if s not in ("inference (GPU)", "worker start-up"))
    gpu_busy = max(seconds["inference (GPU)"], other / assumptions.lanes)
    return SeriesCost(n_sources, seconds, rates, gpu_busy, (n_sources + consensus) * times.seg_mib)


def idc_ct_scale() -> tuple[int, Series, str]:
    """IDC's CT series with >= 20 slices (3D volumes): count and median series, from the bundled idc-index."""
    import importlib.metadata

    import duckdb
    import idc_index_data

    query = (f"SELECT count(*), median(instanceCount), median(series_size_MB) FROM '{idc_index_data.IDC_INDEX_PARQUET_FILEPATH}' "
             "WHERE Modality = 'CT' AND instanceCount >= 20")
    count, slices, size_mb = duckdb.sql(query).fetchone()
    return int(count), Series(int(slices), float(size_mb)), f"idc-index-data {importlib.metadata.version('idc-index-data')}"


def table(times: StepTimes, series: Series, n_series: int, assumptions: Assumptions = ASSUMPTIONS,
          gpu_worker: Worker = L4_WORKER, gpu_seconds: Sequence[float] = (34.0, 77.0, 154.0, 231.0),
          staging_mb_per_s: Sequence[float] = (25.0, 100.0, 400.0)) -> dict:
    """The cost table for one GPU worker: per source count, and its sensitivity to the GPU seconds per source
    and to the staging (GCS) throughput."""
    rows = []
    for n in (1, 2, 3):
        cost = series_cost(n, times, series, assumptions, gpu_worker)
        rows.append({
            "n_sources": n, "seconds": cost.total_seconds, "usd_per_series": cost.usd,
            "usd_per_series_gpu_busy": cost.usd_gpu_busy, "usd_gpu_worker": cost.usd_gpu_worker,
            "usd_cpu_workers": cost.usd - cost.usd_gpu_worker, "usd_idc_scale": cost.usd * n_series,
            "vs_idc": cost.usd / IDC_TOTALSEGMENTATOR_PER_SERIES, "usd_by_step": cost.usd_by_step,
            "seconds_by_step": cost.seconds, "outputs_mib": cost.outputs_mib,
        })
    sensitivity = {g: [series_cost(n, times, series, replace(assumptions, gpu_seconds_per_source=g), gpu_worker).usd
                       for n in (1, 2, 3)] for g in gpu_seconds}
    staging = {m: [series_cost(n, times, series, replace(assumptions, staging_mb_per_s=m), gpu_worker).usd
                   for n in (1, 2, 3)] for m in staging_mb_per_s}
    return {"worker": gpu_worker.name, "hourly": sum(gpu_worker.hourly(DATAFLOW_PRICES).values()),
            "rows": rows, "gpu_sensitivity": sensitivity, "staging_sensitivity": staging}


def format_report(results: dict) -> str:
    a = results["assumptions"]
    lines = [
        "Cost per CT series on Dataflow (list prices, us-central1): " + DATAFLOW_PRICES.source,
        (f"  series priced: IDC's median CT ({results['series']['slices']} slices, {results['series']['size_mb']:.0f} MB); "
         f"{results['n_series']:,} CT series with >= 20 slices ({results['index']})"),
        f"  step times: {results['times_source']}",
        (f"  assumed: {a['gpu_seconds_per_source']:.0f} GPU-step s per source, download {a['download_mb_per_s']:.0f} MB/s, "
         f"staging (GCS) {a['staging_mb_per_s']:.0f} MB/s, worker start-up {a['worker_startup_s']:.0f} s per "
         f"{a['series_per_worker']} series, {a['lanes']} lanes; CPU steps on {CPU_WORKER.name} "
         f"(${sum(CPU_WORKER.hourly(DATAFLOW_PRICES).values()):.3f}/h, shared by the lanes)"),
        f"  on the GPU worker: {', '.join(GPU_STEPS)}; on CPU workers: {', '.join(CPU_STEPS)}",
    ]
    for result in results["tables"]:
        lines += ["", f"{result['worker']} (${result['hourly']:.3f}/h)",
                  (f"{'sources':>7} {'s/series':>9} {'$/series':>9} {'GPU busy':>9} {'x IDC':>6} {'$ all IDC CT':>13} "
                   f"{'not inference':>13} {'CPU workers':>11} {'SEG MiB':>8}")]
        for row in result["rows"]:
            overhead = sum(v for k, v in row["usd_by_step"].items() if k != "inference (GPU)")
            lines.append(f"{row['n_sources']:>7} {row['seconds']:>9.1f} {row['usd_per_series']:>9.4f} "
                         f"{row['usd_per_series_gpu_busy']:>9.4f} {row['vs_idc']:>6.2f} {row['usd_idc_scale']:>13,.0f} "
                         f"{overhead:>13.5f} {row['usd_cpu_workers']:>11.5f} {row['outputs_mib']:>8.2f}")
        lines.append("  $/series by GPU-step seconds per source (1 / 2 / 3 sources): " + "; ".join(
            f"{float(g):.0f} s: " + " / ".join(f"{c:.4f}" for c in costs) for g, costs in result["gpu_sensitivity"].items()))
        lines.append("  $/series by staging MB/s (1 / 2 / 3 sources): " + "; ".join(
            f"{float(m):.0f} MB/s: " + " / ".join(f"{c:.5f}" for c in costs) for m, costs in result["staging_sensitivity"].items()))
        by_step = result["rows"][0]["usd_by_step"]
        lines.append("  $/series by step (1 source): " + ", ".join(f"{k} {v:.6f}" for k, v in by_step.items()))
    steps = results["tables"][0]["rows"][2]["seconds_by_step"]
    lines += ["", "seconds per series by step (3 sources): " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()),
              f"IDC, TotalSegmentator alone: ${IDC_TOTALSEGMENTATOR_PER_SERIES}/series ({IDC_SOURCE})"]
    return "\n".join(lines)


def run(times: StepTimes = MEASURED_152, assumptions: Assumptions = ASSUMPTIONS, results_path: Path | None = RESULTS_PATH) -> dict:
    """Price IDC's CT series with the measured step times on both GPU workers; print the table and write JSON."""
    n_series, series, index = idc_ct_scale()
    step_times = times if times.slices == series.slices else times.scaled(series.slices)
    results = {
        "prices": asdict(DATAFLOW_PRICES), "assumptions": asdict(assumptions), "series": asdict(series),
        "n_series": n_series, "index": index, "times_source": step_times.source,
        "tables": [table(times, series, n_series, assumptions, worker) for worker in (L4_WORKER, T4_WORKER)],
    }
    return publish(results, format_report(results), results_path)
