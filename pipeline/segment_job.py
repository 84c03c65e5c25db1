"""Stage 1 as an Apache Beam job: series refs in, SEGs in a store and a manifest out.

    series refs ─ PlanOutputs ─ SkipExisting ─┬─ (done: rows of outputs that exist)
                                              └─ GroupByKey(series) ─ FetchAndSegment[FetchSeries ─ MakeOutputs] ─ rows
    all rows ─ ToList ─ merge into the manifest

Elements are ``OutputTask``s (UIDs, a source spec, an augmentation text), never
volumes. The grouping makes each series download once; fetching and segmenting
are fused into one stage (no shuffle between them), so the worker that fetched a
series is the one that reads it from its local disk, and consecutive outputs of
that series reuse the CT it read. Models are built and loaded once per worker
process on first use and shared by its threads. Every failure becomes a manifest
row; nothing a single series or source does can stop the others. On Dataflow,
``FetchAndSegment`` is the one step with a GPU (``pipeline.dataflow``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils.shared import Shared

from pipeline.dataflow import DataflowProfile, runs_on_dataflow
from pipeline.inputs import SeriesRef, fetch_series
from pipeline.manifest import ManifestRow, merge_into_manifest
from pipeline.stage1 import OutputTask, SourceInfo, existing_output, failed, make_output, plan_outputs

log = logging.getLogger("bonehub.segment")

DONE = "done"
FAILED_TAG = "failed"


@dataclass(frozen=True)
class SegmentSettings:
    """Everything a worker needs besides the element: small and picklable."""

    sources: tuple[SourceInfo, ...]
    augmentations: tuple[str, ...]  # canonical texts, "none" first
    store_uri: str
    manifest_uri: str
    cache_dir: str
    seg_type: str = "labelmap"
    idc_endpoint_url: str | None = None


class PlanOutputs(beam.DoFn):
    def __init__(self, settings: SegmentSettings):
        self.settings = settings

    def process(self, series: SeriesRef) -> Iterator[OutputTask]:
        yield from plan_outputs(series, self.settings.sources, self.settings.augmentations, self.settings.seg_type)


class SkipExisting(beam.DoFn):
    """Outputs already in the store go straight to the manifest; the rest go on, keyed by series."""

    def __init__(self, settings: SegmentSettings):
        self.settings = settings

    def setup(self) -> None:
        from dicom_io.stores import open_store

        self.store = open_store(self.settings.store_uri)

    def process(self, task: OutputTask) -> Iterator:
        try:
            row = existing_output(task, self.store)
        except Exception as error:  # an unreachable store fails the output, not the run
            yield beam.pvalue.TaggedOutput(DONE, failed(task, "check store", error))
            return
        if row is not None:
            log.info("%s: exists, skipped", task.describe())
            yield beam.pvalue.TaggedOutput(DONE, row)
        else:
            yield task.series.series_uid, task


class FetchSeries(beam.DoFn):
    """Bring one series onto this worker's disk once for all its pending outputs."""

    def __init__(self, settings: SegmentSettings):
        self.settings = settings

    def process(self, keyed: tuple[str, Iterable[OutputTask]]) -> Iterator:
        _, tasks = keyed
        tasks = list(tasks)
        started = time.perf_counter()
        try:
            folder = fetch_series(tasks[0].series, self.settings.cache_dir,
                                  idc_endpoint_url=self.settings.idc_endpoint_url)
        except Exception as error:
            for task in tasks:
                yield beam.pvalue.TaggedOutput(FAILED_TAG, failed(task, "fetch", error, started))
            return
        for task in tasks:
            yield str(folder), task


class _OnePredictAtATime:
    """A loaded source whose ``predict`` holds its process's lock; every other attribute is the source's own."""

    def __init__(self, model, lock: threading.Lock):
        self._model, self._lock = model, lock

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def predict(self, ct):
        with self._lock:
            return self._model.predict(ct)


class LoadedSources:
    """The sources loaded in one worker process, shared by all its threads (``beam.utils.shared``).

    Each source is built and loaded once per process (a load failure is remembered), and one
    ``predict`` runs at a time: on a GPU worker the other threads download, read and encode meanwhile,
    instead of stacking model copies and activations on one GPU.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, _OnePredictAtATime] = {}
        self._errors: dict[str, BaseException] = {}

    def get(self, spec: str) -> _OnePredictAtATime:
        with self._lock:
            if spec in self._errors:
                raise self._errors[spec]
            if spec not in self._models:
                from models.sources import build_source

                try:
                    model = build_source(spec)
                    log.info("loading source %s", model.name)
                    model.load()
                except Exception as error:
                    self._errors[spec] = error
                    raise
                self._models[spec] = _OnePredictAtATime(model, self._lock)
            return self._models[spec]


class MakeOutputs(beam.DoFn):
    """Read the CT (cached for consecutive outputs of the same series), run the source, store the SEG."""

    def __init__(self, settings: SegmentSettings):
        self.settings = settings
        self._shared = Shared()  # one LoadedSources per process for every thread running this step

    def setup(self) -> None:
        from dicom_io.stores import open_store

        self.store = open_store(self.settings.store_uri)
        self.sources = self._shared.acquire(LoadedSources)
        self.ct_key: tuple[str, str] | None = None
        self.ct = None
        self.seen: dict[str, object] = {}  # augmentation text -> augmented CT of the current series

    def _read_ct(self, folder: str, series_uid: str):
        from dicom_io.ct_series import read_ct_series

        if self.ct_key != (folder, series_uid):
            self.ct_key, self.ct, self.seen = None, None, {}  # never keep a stale CT after a failed read
            self.ct = read_ct_series(folder, series_uid)
            self.ct_key = (folder, series_uid)
        return self.ct

    def _seen(self, ct, augmentation: str):
        """The augmented CT, made once per series and augmentation for all sources that see pixels."""
        from models.augment import parse_augmentation
        from models.segment import augmented_ct

        if augmentation not in self.seen:
            self.seen[augmentation] = augmented_ct(ct, parse_augmentation(augmentation))
        return self.seen[augmentation]

    def process(self, element: tuple[str, OutputTask]) -> Iterator[ManifestRow]:
        folder, task = element
        started = time.perf_counter()
        try:
            ct = self._read_ct(folder, task.series.series_uid)
        except Exception as error:
            yield failed(task, "read CT", error, started)
            return
        try:
            model = self.sources.get(task.source.spec)
        except Exception as error:
            yield failed(task, "load source", error, started)
            return
        seen = None
        if task.source.sees_pixels:
            try:
                seen = self._seen(ct, task.augmentation)
            except Exception as error:
                yield failed(task, "augment", error, started)
                return
        yield make_output(task, ct, model, self.store, seen)

    def teardown(self) -> None:
        self.sources, self.ct, self.seen = None, None, {}  # the models go when the process's last thread lets go


class WriteManifest(beam.DoFn):
    def __init__(self, manifest_uri: str):
        self.manifest_uri = manifest_uri

    def process(self, rows: list[ManifestRow]) -> Iterator[str]:
        merged = merge_into_manifest(self.manifest_uri, rows)
        log.info("manifest %s: %d rows from this run, %d in all", self.manifest_uri, len(rows), len(merged))
        yield self.manifest_uri


class FetchAndSegment(beam.PTransform):
    """Tasks grouped by series → (rows of failed fetches, rows of made outputs): the step that runs the sources.

    One composite so that one resource hint covers it: on Dataflow it is the GPU step, and fetch and
    segment stay on the same worker (``pipeline.dataflow``).
    """

    def __init__(self, settings: SegmentSettings):
        super().__init__()
        self.settings = settings

    def expand(self, by_series):
        fetched = by_series | "FetchSeries" >> beam.ParDo(FetchSeries(self.settings)).with_outputs(FAILED_TAG, main="fetched")
        made = fetched.fetched | "MakeOutputs" >> beam.ParDo(MakeOutputs(self.settings))
        return fetched[FAILED_TAG], made


class SegmentSeries(beam.PTransform):
    """Series refs → manifest rows of every (series, source, augmentation) output.

    ``gpu_hints``: Beam resource hints of ``FetchAndSegment`` alone (``DataflowProfile.gpu_hints``).
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
        segment = FetchAndSegment(s)
        if self.gpu_hints:
            segment = segment.with_resource_hints(**self.gpu_hints)
        fetch_failed, made = checked.pending | "BySeries" >> beam.GroupByKey() | "FetchAndSegment" >> segment
        return (checked[DONE], fetch_failed, made) | "AllRows" >> beam.Flatten()


def segment_pipeline(series: Sequence[SeriesRef], settings: SegmentSettings, beam_args: Sequence[str] = (),
                     dataflow: DataflowProfile | None = None) -> beam.Pipeline:
    """Stage 1 over ``series`` as a Beam pipeline, built but not run.

    ``beam_args`` are Beam pipeline options (``--runner``, ``--direct_num_workers``,
    ``--direct_running_mode``, Dataflow options); DirectRunner by default. With the Dataflow runner the
    job follows ``dataflow`` (``DataflowProfile()`` when None): its GPU hint on ``FetchAndSegment`` and
    its defaults for the options not given (``pipeline.dataflow``).
    """
    profile = (dataflow or DataflowProfile()) if runs_on_dataflow(beam_args) else None
    options = PipelineOptions(profile.pipeline_args(beam_args) if profile else list(beam_args))
    pipeline = beam.Pipeline(options=options)
    _ = (pipeline
         | "Series" >> beam.Create(list(series))
         | "Segment" >> SegmentSeries(settings, profile.gpu_hints() if profile else None)
         | "Collect" >> beam.combiners.ToList()
         | "WriteManifest" >> beam.ParDo(WriteManifest(settings.manifest_uri)))
    return pipeline


def run_segment_job(series: Sequence[SeriesRef], settings: SegmentSettings, beam_args: Sequence[str] = (),
                    dataflow: DataflowProfile | None = None) -> None:
    """Run Stage 1 over ``series`` (``segment_pipeline``) and merge its rows into ``settings.manifest_uri``."""
    os.makedirs(settings.cache_dir, exist_ok=True)
    segment_pipeline(series, settings, beam_args, dataflow).run().wait_until_finish()
