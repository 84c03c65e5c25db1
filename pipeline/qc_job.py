"""Stage 2 as an Apache Beam job: stored SEGs in, consensus SEGs, QC SRs, tables and a report out.

    manifest SEGs ─ KeyBy(series) ─ GroupByKey ─ AssessSeries ─ ToList ─ WriteQcOutputs

Elements are ``StoredSeg``s (UIDs and locations), never volumes; a series' SEGs
meet on one worker, which fetches the CT once and decodes every SEG there.
Outputs, under ``qc_dir`` (a folder or gs:// prefix; names in ``results.qc_tables``):

- ``qc_table/``: one row per (series, structure), columns ``qc.results.TABLE_COLUMNS``;
- ``qc_series/``: one row per series (done or failed, SEGs left out, the consensus SEG and SR UIDs);
  both in shards by series (``results.qc_shards``): a run rewrites only its series' shards;
- ``model_comparison.parquet``: one row per (source, structure) over every series of the QC table
  (``qc.comparison``), the sum of each shard's aggregates (``results.comparison_parts``);
- ``qc_report.html``: the human-readable report of everything in the table, from the columns it
  needs and the comparison's aggregates.

Rerunning replaces the rows of the series it redid, so QC can be rerun with new
thresholds over the same SEGs without running any model.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import pandas as pd

from pipeline.runner import new_pipeline
from pipeline.stage2 import SeriesOutcome, qc_series
from qc.results import TABLE_COLUMNS
from qc.score import QcSettings
from results.blobs import write_bytes
from results.comparison_parts import update_parts, write_comparison
from results.members import StoredSeg
from results.qc_tables import REPORT, REVIEW_LABELS, SERIES_TABLE, TABLE, output_uri
from results.qc_shards import merge_qc_table, read_qc_table
from results.series_ref import LOCAL, SeriesRef
from results.table_io import read_table

log = logging.getLogger("bonehub.qc")

COMPARISON = "model_comparison.parquet"  # read back by no stage, so not among results.qc_tables' names


@dataclass(frozen=True)
class QcJobSettings:
    """Everything a worker needs besides the element: small and picklable."""

    store_uri: str  # where the SEGs are; the consensus SEGs and SRs are stored there too
    qc_dir: str
    cache_dir: str
    qc: QcSettings = QcSettings()
    ct_folder: str | None = None  # read every CT from this folder instead of where the manifest says
    idc_endpoint_url: str | None = None
    snapshots: int = 3  # pictures per series in the report
    consensus_seg_type: str = "labelmap"  # or "binary" (see pipeline.stage2)


class AssessSeries(beam.DoFn):
    def __init__(self, settings: QcJobSettings):
        self.settings = settings

    def setup(self) -> None:
        from dicom_io.stores import open_store

        self.store = open_store(self.settings.store_uri)

    def process(self, keyed: tuple[str, Iterable[StoredSeg]]) -> Iterator[SeriesOutcome]:
        series_uid, segs = keyed
        segs = sorted(segs, key=lambda s: s.member.name)  # stable member order, whatever order the shuffle gave
        s = self.settings
        override = SeriesRef(series_uid, segs[0].study_uid, LOCAL, s.ct_folder) if s.ct_folder else None
        yield qc_series(series_uid, segs, self.store, s.qc, s.cache_dir, ct_override=override,
                        idc_endpoint_url=s.idc_endpoint_url, snapshots=s.snapshots,
                        consensus_seg_type=s.consensus_seg_type)


class WriteQcOutputs(beam.DoFn):
    """Merge this run's rows into the tables, then rebuild the report from the whole table."""

    def __init__(self, settings: QcJobSettings):
        self.settings = settings

    def process(self, outcomes: list[SeriesOutcome]) -> Iterator[str]:
        write_qc_outputs(outcomes, self.settings)
        yield self.settings.qc_dir


def write_qc_outputs(outcomes: Sequence[SeriesOutcome], settings: QcJobSettings) -> pd.DataFrame:
    """Merge the outcomes into the sharded tables, then write the comparison and the report; return the report's table."""
    from qc.report import COLUMNS, write_report

    # a series redone this time is replaced whole; one that failed keeps its earlier rows
    new = pd.DataFrame([r.as_row() for o in outcomes for r in o.results], columns=TABLE_COLUMNS)
    update_parts(settings.qc_dir, merge_qc_table(settings.qc_dir, TABLE, new))
    merge_qc_table(settings.qc_dir, SERIES_TABLE, pd.DataFrame([o.row() for o in outcomes]))
    parts = write_comparison(settings.qc_dir, COMPARISON)  # from the shards as stored now, concurrent runs' rows too
    table = read_qc_table(settings.qc_dir, TABLE, COLUMNS)
    table = pd.DataFrame(columns=list(COLUMNS)) if table is None else table
    snapshots = [p for o in outcomes for p in o.snapshots]
    with tempfile.TemporaryDirectory() as folder:
        local = write_report(table, snapshots, Path(folder) / REPORT, settings_text=settings.qc.describe(),
                             review_labels=read_table(output_uri(settings.qc_dir, REVIEW_LABELS)), comparison=parts)
        write_bytes(output_uri(settings.qc_dir, REPORT), local.read_bytes(), content_type="text/html")
    log.info("QC tables and report in %s: %d series this run, %d structures in the table", settings.qc_dir,
             len(outcomes), len(table))
    return table


class QcSeries(beam.PTransform):
    """Stored SEGs → one ``SeriesOutcome`` per series."""

    def __init__(self, settings: QcJobSettings):
        super().__init__()
        self.settings = settings

    def expand(self, segs):
        return (segs
                | "BySeries" >> beam.Map(lambda seg: (seg.series_uid, seg))
                | "GroupSeries" >> beam.GroupByKey()
                | "AssessSeries" >> beam.ParDo(AssessSeries(self.settings)))


def run_qc_job(segs: Sequence[StoredSeg], settings: QcJobSettings, beam_args: Sequence[str] = ()) -> None:
    """Run Stage 2 over the series of ``segs``; results go to ``settings.qc_dir`` and the store."""
    os.makedirs(settings.cache_dir, exist_ok=True)
    with new_pipeline(beam_args) as pipeline:
        _ = (pipeline
             | "StoredSegs" >> beam.Create(list(segs))
             | "QC" >> QcSeries(settings)
             | "Collect" >> beam.combiners.ToList()
             | "WriteQcOutputs" >> beam.ParDo(WriteQcOutputs(settings)))
