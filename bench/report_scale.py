"""Does the QC run's summary scale to a whole collection? ``model_comparison`` and ``write_report`` on 100,000 series.

Input: a synthetic QC table (``synthetic_table``), vectorised and seeded: ``series`` series
x 60 structures (skeleton, the spine and thoracic cage bones, shoulder girdle) x 3 members
(two augmentations of one source and a second source), with the columns of
``qc.results.TABLE_COLUMNS``. Values are plausible, not real: presence per member with a
per-structure rate (some structures mostly out of the field of view, so ``absent`` rows
occur), an agreement near 0.9 where the member and another member see the structure and 0
where only one of them does, the score as ``qc.score`` forms it (minimum agreement x ½ per
penalised consensus rule), the outlier source where one source's members agree clearly
less, and a few member and consensus flags.

Ours: what the QC job does after merging a run, on a QC folder whose table is in shards by series
(``results.qc_shards``, each shard's comparison aggregates beside it, ``results.comparison_parts``):
``write_comparison`` adds up the shards' aggregates into ``model_comparison.parquet``, then
``write_report`` on the report's columns of the table (``qc.report.COLUMNS``) with those aggregates.
Before: the same from the table kept as one file (read whole, ``model_comparison`` and the report's
comparison section each explode its member columns). Each runs in a fresh process, so its peak
resident memory (``ru_maxrss``) is its own; both must write the same comparison and the same report.
Anchor: the same on 1,000 series, so the printed ratio shows how time and HTML size grow
with the collection (100x the series).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.publish import publish
import numpy as np
import pandas as pd

from labels.schema import default_schema
from qc.comparison import model_comparison
from qc.report import COLUMNS as REPORT_COLUMNS
from qc.report import write_report
from qc.results import ABSENT, ACCEPT, REVIEW, TABLE_COLUMNS
from results.blobs import join
from results.comparison_parts import update_parts, write_comparison
from results.qc_shards import merge_qc_table, read_qc_table
from results.qc_tables import REPORT, TABLE
from results.table_io import read_table, write_table

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "report_scale.json"
FULL_SERIES, ANCHOR_SERIES = 100_000, 1_000
QUICK_SERIES = (1_000, 100)  # series, anchor series of --quick
MEMBERS = ("TotalSegmentator total 2", "TotalSegmentator total 2 [rotate(0,0,5)]", "MOOSE clin_ct 1")
SOURCES = ("TotalSegmentator total 2", "TotalSegmentator total 2", "MOOSE clin_ct 1")
REGIONS = ("spine", "thoracic_cage", "shoulder_girdle")
COMPARISON, SETTINGS_TEXT = "model_comparison.parquet", "synthetic table (bench.report_scale)"
MEMBER_RULES = ("extra_components", "too_small", "wrong_side", "rib_vertebra_level")


def structures() -> list[str]:
    """``skeleton`` and every bone of the spine, thoracic cage and shoulder girdle regions (60 structures)."""
    schema = default_schema()
    bones = [s.name for s in schema.bones() if any(a.name in REGIONS for a in schema.ancestors(s.name))]
    return ["skeleton", *bones]


def synthetic_table(series: int, seed: int = 0) -> pd.DataFrame:
    """A plausible QC table of ``series`` series (see the module docstring); every column vectorised."""
    rng = np.random.default_rng(seed)
    names = structures()
    n = series * len(names)
    bone = np.tile(np.arange(len(names)), series)
    seen_rate = rng.uniform(0.3, 1.0, len(names))[bone]  # how often a CT shows this structure
    shown = rng.random(n) < seen_rate
    miss = np.array([0.01, 0.01, 0.05])  # the second source misses more
    present = shown[:, None] & (rng.random((n, 3)) >= miss)
    present |= ~shown[:, None] & (rng.random((n, 3)) < 0.002)  # rare false positives
    n_present = present.sum(axis=1)
    others = n_present[:, None] - present
    agreement = np.where(present & (others > 0), rng.beta([30, 30, 12], 2, (n, 3)), 0.0)
    agreement = np.where(~present & (others == 0), 1.0, agreement)  # it and the others agree it is not there
    agreement = np.round(agreement, 3)  # as the table will hold it
    consensus_rule = rng.random(n) < 0.01
    score = agreement.min(axis=1) * np.where(consensus_rule, 0.5, 1.0)
    status = np.where(n_present == 0, ABSENT, np.where(score < 0.8, REVIEW, ACCEPT)).astype(object)
    score[n_present == 0] = np.nan
    by_source = np.stack([agreement[:, :2].mean(axis=1), agreement[:, 2]], axis=1)
    worst = by_source.argmin(axis=1)
    margin = np.abs(by_source[:, 0] - by_source[:, 1])
    outlier = np.where((status == REVIEW) & (by_source.min(axis=1) < 0.8) & (margin >= 0.1),
                       np.array([SOURCES[0], SOURCES[2]], dtype=object)[worst], "")
    flags = pd.Series("", index=range(n), dtype="str")
    choices = np.array([f"{r}@{m}" for r in MEMBER_RULES for m in MEMBERS], dtype=object)
    flags = _add_flag(flags, rng.random(n) < 0.02, choices[rng.integers(0, len(choices), n)])
    flags = _add_flag(flags, consensus_rule, "fov_cutoff")
    flags = _add_flag(flags, (n_present > 0) & (n_present < 3), "presence")
    text = np.array([f"{v:.3f}" for v in np.linspace(0, 1, 1001)], dtype=object)
    joined = [pd.Series(text[np.rint(agreement[:, i] * 1000).astype(int)], dtype="str") for i in range(3)]
    uids = np.array([f"1.2.826.0.1.3680043.8.498.{i}" for i in range(series)], dtype=object)
    schema = default_schema()
    table = pd.DataFrame({
        "series_uid": np.repeat(uids, len(names)),
        "study_uid": np.repeat(uids, len(names)),
        "bone": np.array(names, dtype=object)[bone],
        "level": np.array([schema[b].level for b in names], dtype=object)[bone],
        "members": ";".join(MEMBERS),
        "n_sources": 3,
        "n_present": n_present,
        "dice_mean": np.where(n_present > 0, agreement.mean(axis=1), np.nan),
        "dice_min": np.where(n_present > 0, agreement.min(axis=1), np.nan),
        "hd95_mm": rng.gamma(2.0, 1.5, n),
        "assd_mm": rng.gamma(2.0, 0.4, n),
        "nsd": np.where(n_present > 0, agreement.mean(axis=1), np.nan),
        "centroid_spread_mm": rng.gamma(2.0, 0.8, n),
        "volume_ml": rng.gamma(4.0, 8.0, n),
        "volume_cv": rng.gamma(2.0, 0.03, n),
        "score": score,
        "status": status,
        "flags": flags,
        "outlier_source": outlier,
        "member_agreement": joined[0] + ";" + joined[1] + ";" + joined[2],
        "consensus_segment": 0,
        "member_present": pd.Series(np.array(["0", "1"], dtype=object)[present[:, 0].astype(int)], dtype="str") + ";"
        + pd.Series(np.array(["0", "1"], dtype=object)[present[:, 1].astype(int)], dtype="str") + ";"
        + pd.Series(np.array(["0", "1"], dtype=object)[present[:, 2].astype(int)], dtype="str"),
        "level_shift": 0,
    })
    return table[TABLE_COLUMNS]


def _add_flag(flags: pd.Series, where: np.ndarray, flag: object) -> pd.Series:
    """``flag`` (one text, or one per row) appended to the ';'-joined ``flags`` of the rows ``where``."""
    added = pd.Series(np.broadcast_to(np.asarray(flag, dtype=object), len(flags)), index=flags.index, dtype="str")
    joined = flags.where(flags == "", flags + ";") + added
    return joined.where(where, flags)


def measure(series: int, folder: Path) -> dict:
    """Both ways of writing the comparison and the report for ``series`` series: seconds, CPU seconds, peak memory.

    CPU seconds (the measured process) are shown too: on a shared machine they change less with the load than
    wall time. Building the table and writing its shards (merge and aggregates, which a run pays for the shards
    its series fall in) are timed and not counted.
    """
    started = time.perf_counter()
    table = synthetic_table(series)
    built = time.perf_counter()
    whole, sharded = folder / f"whole_{series}", folder / f"sharded_{series}"
    whole.mkdir()
    table.sort_values("series_uid", kind="stable").to_parquet(whole / f"{TABLE}.parquet", index=False)  # as it was stored
    update_parts(str(sharded), merge_qc_table(str(sharded), TABLE, table))
    written = time.perf_counter()
    rows = len(table)
    del table
    before, ours = _in_fresh_process(_from_one_file, whole), _in_fresh_process(_from_shards, sharded)
    same_comparison = pd.read_parquet(whole / COMPARISON).equals(pd.read_parquet(sharded / COMPARISON))
    same_report = (whole / REPORT).read_bytes() == (sharded / REPORT).read_bytes()
    if not (same_comparison and same_report):
        raise AssertionError(f"{series} series: the sharded table's comparison or report differs from the single file's")
    return {"series": series, "rows": rows, "comparison_rows": len(pd.read_parquet(sharded / COMPARISON)),
            "report_mib": (sharded / REPORT).stat().st_size / 2**20, "build_seconds": built - started,
            "shards_seconds": written - built, **ours, "before": before}


def _in_fresh_process(step, folder: Path) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(step, str(folder)).result()


def _from_one_file(folder: str) -> dict:
    """The QC job before the shards: the table read whole, the comparison and report computed from it."""
    clocks = [(time.perf_counter(), time.process_time())]
    table = read_table(join(folder, f"{TABLE}.parquet"))
    comparison = model_comparison(table)
    write_table(join(folder, COMPARISON), comparison)
    clocks.append((time.perf_counter(), time.process_time()))
    write_report(table, [], Path(folder, REPORT), settings_text=SETTINGS_TEXT)
    clocks.append((time.perf_counter(), time.process_time()))
    return _timings(clocks)


def _from_shards(folder: str) -> dict:
    """The QC job now: the comparison from the shards' aggregates, the report from its columns of the table."""
    clocks = [(time.perf_counter(), time.process_time())]
    parts = write_comparison(folder, COMPARISON)
    clocks.append((time.perf_counter(), time.process_time()))
    table = read_qc_table(folder, TABLE, REPORT_COLUMNS)
    write_report(table, [], Path(folder, REPORT), settings_text=SETTINGS_TEXT, comparison=parts)
    clocks.append((time.perf_counter(), time.process_time()))
    return _timings(clocks)


def _peak_rss_mib() -> float:
    """This process's peak resident memory: ``VmHWM`` where Linux gives it, which a spawned process does not inherit
    (``ru_maxrss`` keeps the parent's peak across the exec, so it would show the benchmark's own table), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timings(clocks: list[tuple[float, float]]) -> dict:
    found = {"peak_rss_mib": _peak_rss_mib()}
    for step, (before, after) in zip(("comparison", "report"), zip(clocks, clocks[1:])):
        found[f"{step}_seconds"], found[f"{step}_cpu_seconds"] = after[0] - before[0], after[1] - before[1]
    return found


def run(series: int = FULL_SERIES, anchor_series: int = ANCHOR_SERIES, results_path: Path | None = RESULTS_PATH) -> dict:
    """Measure ``anchor_series`` then ``series`` series; print both and their ratio, write JSON."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        anchor = measure(anchor_series, Path(folder))
        ours = measure(series, Path(folder))
    results = {"benchmark": "report_scale", "ours": ours, "anchor": anchor,
               "machine": {"cpu_cores": os.cpu_count(), "load_average_before": list(load_before),
                           "load_average_after": list(os.getloadavg())}}
    return publish(results, format_report(results), results_path)


def format_report(results: dict) -> str:
    ours, anchor = results["ours"], results["anchor"]
    lines = [f"report_scale: QC table of {ours['series']:,} series ({ours['rows']:,} rows) vs anchor "
             f"{anchor['series']:,} series ({anchor['rows']:,} rows); series ratio {ours['series'] / anchor['series']:g}x"]
    for key, label in (("comparison_seconds", "comparison s"), ("comparison_cpu_seconds", "comparison CPU s"),
                       ("report_seconds", "report s"), ("report_cpu_seconds", "report CPU s"),
                       ("peak_rss_mib", "peak memory MiB")):
        for name, found, reference in (("sharded", ours, anchor), ("one file", ours["before"], anchor["before"])):
            ratio = found[key] / reference[key] if reference[key] else float("nan")
            lines.append(f"  {label + ' (' + name + ')':36s} {found[key]:10.2f}   anchor {reference[key]:8.2f}   "
                         f"ratio {ratio:6.1f}x")
    for key, label in (("report_mib", "report MiB"), ("build_seconds", "table built in s (not counted)"),
                       ("shards_seconds", "shards written in s (not counted)")):
        ratio = ours[key] / anchor[key] if anchor[key] else float("nan")
        lines.append(f"  {label:36s} {ours[key]:10.2f}   anchor {anchor[key]:8.2f}   ratio {ratio:6.1f}x")
    lines.append("  the sharded folder's comparison and report equal the single file's (checked)")
    load = results["machine"]
    lines.append(f"  load average before {load['load_average_before'][0]:.2f}, after {load['load_average_after'][0]:.2f}")
    return "\n".join(lines)
