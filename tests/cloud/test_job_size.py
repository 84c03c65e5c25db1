"""A whole collection can be submitted: the Stage 1 job's size does not grow with the number of series."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

from pipeline.cli import main
from pipeline.dataflow import DataflowProfile, pipeline_proto
from pipeline.segment_job import segment_pipeline
from pipeline.segment_steps import SegmentSettings
from pipeline.selection import series_from_line, write_selection
from results.series_ref import IDC, SeriesRef

DATAFLOW = ["--runner", "DataflowRunner", "--project", "bonehub-test", "--region", "europe-west4",
            "--temp_location", "gs://bonehub-test/tmp", "--sdk_container_image", "europe-west4-docker.pkg.dev/p/r/w:t",
            "--dry_run=True"]
STUDY = "1.2.826.0.1.3680043.8.498.2"


def _selection(n: int) -> list[SeriesRef]:
    return [SeriesRef(f"1.2.826.0.1.3680043.8.498.{100000 + i}", STUDY, IDC, f"s3://idc-open-data/{i:08x}/*", 120)
            for i in range(n)]


def _job_bytes(series: list[SeriesRef], root) -> int:
    settings = SegmentSettings(sources=(), augmentations=("none", "rotate(0,0,5)"), store_uri="gs://bonehub-test/seg",
                               manifest_uri="gs://bonehub-test/seg/manifest.parquet", cache_dir=str(root),
                               staging_uri="gs://bonehub-test-checkpoints/staging")
    return pipeline_proto(segment_pipeline(series, settings, DATAFLOW, DataflowProfile(), str(root))).ByteSize()


def test_200000_series_make_a_job_as_small_as_20(tmp_path):
    big, small = _job_bytes(_selection(200_000), tmp_path / "big"), _job_bytes(_selection(20), tmp_path / "small")
    assert big < 1_000_000  # Dataflow refuses job graphs of about 20 MB
    assert abs(big - small) < 1_000  # only the selection file's name differs


def test_the_selection_file_round_trips_and_is_reused(tmp_path):
    series = _selection(3)
    uri = write_selection(series, str(tmp_path))
    assert write_selection(series, str(tmp_path)) == uri  # named by content: a rerun reuses it
    lines = gzip.decompress((tmp_path / "selection" / uri.rsplit("/", 1)[1]).read_bytes()).decode().splitlines()
    assert [series_from_line(line) for line in lines] == series


def test_a_dry_run_leaves_no_selection_file_behind(tmp_path, monkeypatch, capsys):
    """The selection a dry run writes (the job names it) goes with the temp folder it was written to."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    series = Path(__file__).resolve().parents[1] / "data" / "idc" / "nlst_review_series.csv"
    assert main(["segment", "--idc-csv", str(series), "--source", "baseline", "--out", "gs://bonehub-test/seg",
                 "--staging", "gs://bonehub-test-checkpoints/staging", *DATAFLOW[:-1],
                 "--dry-run-proto", str(tmp_path / "p.textproto")]) == 0
    assert "the pipeline, not run" in capsys.readouterr().out
    assert (tmp_path / "p.textproto").stat().st_size > 0
    assert [p.name for p in temp.rglob('*') if 'selection' in p.name] == []  # (Beam leaves a folder of its own)
