"""Stage 1 as an Apache Beam job: series refs in, SEGs in a store and a manifest out.

    series refs ─ PlanOutputs ─ SkipExisting ─┬─ (done: rows of outputs that exist)
                                              └─ GroupByKey(series) ─ StageSeries ─ Predict ─ EncodeAndStore ─ rows
    all rows ─ ToList ─ merge into the manifest

Elements are ``OutputTask``s and URIs (UIDs, a source spec, an augmentation text, staging URIs),
never volumes. The grouping makes each series download once. The three steps that do the work
hand over through the staging area (``pipeline.staging``):

- ``StageSeries`` (CPU, ``pipeline.segment_steps``): fetch the series, read and check it, stage it as one object;
- ``Predict`` (the GPU step on Dataflow, ``pipeline.segment_predict``; ``pipeline.dataflow``): read the
  staged CT once per series, run every pending source under every augmentation on it, stage each label map;
- ``EncodeAndStore`` (CPU, ``pipeline.segment_steps``): encode each label map as a SEG on the CT and store
  the series' SEGs together.

Models are built and loaded once per worker process on first use and shared by its threads. Every
failure becomes a manifest row naming its step; nothing a single series or source does can stop the
others, and what was staged before a failure is used, not redone, by the rerun.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.dataflow import DataflowProfile, runs_on_dataflow
from pipeline.runner import new_pipeline
from pipeline.selection import series_from_line, write_selection
from results import blobs
from pipeline.segment_predict import Predict
from pipeline.segment_steps import (
    DONE,
    FAILED_TAG,
    EncodeAndStore,
    PlanOutputs,
    SegmentSettings,
    SkipExisting,
    StageSeries,
    WriteManifest,
)
from results.series_ref import SeriesRef


class SegmentSeries(beam.PTransform):
    """Series refs → manifest rows of every (series, source, augmentation) output.

    ``gpu_hints``: Beam resource hints of ``Predict`` alone (``DataflowProfile.gpu_hints``).
    """

    def __init__(self, settings: SegmentSettings, gpu_hints: Mapping[str, str] | None = None):
        super().__init__()
        self.settings = settings
        self.gpu_hints = dict(gpu_hints or {})

    def expand(self, series):
        s = self.settings
        checked = (series
                   | "PlanOutputs" >> beam.ParDo(PlanOutputs(s))
                   | "SkipExisting" >> beam.ParDo(SkipExisting(s)).with_outputs(DONE, main="pending"))
        staged = (checked.pending
                  | "BySeries" >> beam.GroupByKey()
                  | "StageSeries" >> beam.ParDo(StageSeries(s)).with_outputs(FAILED_TAG, main="staged"))
        predict = beam.ParDo(Predict(s)).with_outputs(FAILED_TAG, main="predicted")
        if self.gpu_hints:
            predict = predict.with_resource_hints(**self.gpu_hints)
        predicted = staged.staged | "Predict" >> predict
        made = predicted.predicted | "EncodeAndStore" >> beam.ParDo(EncodeAndStore(s))
        return (checked[DONE], staged[FAILED_TAG], predicted[FAILED_TAG], made) | "AllRows" >> beam.Flatten()


def segment_pipeline(series: Iterable[SeriesRef], settings: SegmentSettings, beam_args: Sequence[str] = (),
                     dataflow: DataflowProfile | None = None, selection_root: str | None = None,
                     selection_uri: str | None = None) -> beam.Pipeline:
    """Stage 1 over ``series`` as a Beam pipeline, built but not run.

    ``beam_args`` are Beam pipeline options (``--runner``, ``--direct_num_workers``,
    ``--direct_running_mode``, Dataflow options); DirectRunner by default. With the Dataflow runner the
    job follows ``dataflow`` (``DataflowProfile()`` when None): its GPU hint on ``Predict`` and
    its defaults for the options not given (``pipeline.dataflow``). The series travel as a file the job
    reads (``pipeline.selection``) under ``selection_root`` (the staging area for a run; a local temp
    folder when None, for a pipeline only built), so the job's size does not grow with the selection;
    ``selection_uri`` is that file when the caller already wrote it (``series`` is then not read).
    """
    profile = (dataflow or DataflowProfile()) if runs_on_dataflow(beam_args) else None
    options = PipelineOptions(profile.pipeline_args(beam_args) if profile else list(beam_args))
    pipeline = new_pipeline(options)
    _ = (pipeline
         | "Series" >> beam.io.ReadFromText(selection_uri or write_selection(series, selection_root))
         | "ParseSeries" >> beam.Map(series_from_line)
         | "Segment" >> SegmentSeries(settings, profile.gpu_hints() if profile else None)
         | "Collect" >> beam.combiners.ToList()
         | "WriteManifest" >> beam.ParDo(WriteManifest(settings.manifest_uri, settings.store_uri)))
    return pipeline


def run_segment_job(series: Sequence[SeriesRef], settings: SegmentSettings, beam_args: Sequence[str] = (),
                    dataflow: DataflowProfile | None = None) -> None:
    """Run Stage 1 over ``series`` (``segment_pipeline``) and merge its rows into ``settings.manifest_uri``."""
    os.makedirs(settings.cache_dir, exist_ok=True)
    if not settings.staging_uri.startswith("gs://"):
        os.makedirs(settings.staging_uri, exist_ok=True)
    selection = write_selection(series, settings.staging_uri)  # the pipeline reads this file (same content, same name)
    segment_pipeline(series, settings, beam_args, dataflow, selection_uri=selection).run().wait_until_finish()
    blobs.delete(selection)  # nothing of a finished run stays staged
