"""Stage 1 as an Apache Beam job: series refs in, SEGs in a store and a manifest out.

    series refs ─ PlanOutputs ─ SkipExisting ─┬─ (done: rows of outputs that exist)
                                              └─ GroupByKey(series) ─ StageSeries ─ Predict ─ EncodeAndStore ─ rows
    all rows ─ ToList ─ merge into the manifest

Elements are ``OutputTask``s and URIs (UIDs, a source spec, an augmentation text, staging URIs),
never volumes. The grouping makes each series download once. The three steps that do the work
hand over through the staging area (``pipeline.staging``):

- ``StageSeries`` (CPU): fetch the series, read and check it, stage it as one object;
- ``Predict`` (the GPU step on Dataflow, ``pipeline.dataflow``): read the staged CT once per series,
  run every pending source under every augmentation on it, stage each label map;
- ``EncodeAndStore`` (CPU): encode each label map as a SEG on the CT and store the series' SEGs together.

Models are built and loaded once per worker process on first use and shared by its threads. Every
failure becomes a manifest row naming its step; nothing a single series or source does can stop the
others, and what was staged before a failure is used, not redone, by the rerun.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils.shared import Shared

from pipeline import staging
from pipeline.dataflow import DataflowProfile, runs_on_dataflow
from pipeline.stage1 import (
    OutputTask,
    SourceInfo,
    encode_output,
    existing_output,
    failed,
    plan_outputs,
    predict_output,
    written,
)
from pipeline.staging import Staging, StagingMissingError
from results.manifest import EXISTS, WRITTEN, ManifestRow, merge_into_manifest
from results.series_ref import LOCAL, SeriesRef, fetch_series

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
    cache_dir: str  # series downloads
    staging_uri: str  # pipeline.staging: a folder, or gs:// on Dataflow
    seg_type: str = "labelmap"
    idc_endpoint_url: str | None = None
    keep_downloads: bool = True  # False on Dataflow: a worker's disk would fill up with series it has staged


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


@dataclass(frozen=True)
class StagedSeries:
    """A series' pending outputs and its staged CT: what ``StageSeries`` hands to ``Predict``."""

    ct_uri: str
    tasks: tuple[OutputTask, ...]


@dataclass(frozen=True)
class StagedOutput:
    """One output whose label map is staged, with the seconds its inference took."""

    task: OutputTask
    labels_uri: str
    seconds: float


@dataclass(frozen=True)
class PredictedSeries:
    """What ``Predict`` hands to ``EncodeAndStore``: the staged label maps of one series.

    ``complete``: every pending output of the series has one (none failed), so once they are stored
    the staged CT is no longer needed.
    """

    ct_uri: str
    outputs: tuple[StagedOutput, ...]
    complete: bool


class StageSeries(beam.DoFn):
    """Fetch one series, read and check it, and stage it for the GPU step; a CT staged before is used as is."""

    def __init__(self, settings: SegmentSettings):
        self.settings = settings

    def process(self, keyed: tuple[str, Iterable[OutputTask]]) -> Iterator:
        from dicom_io.ct_series import read_ct_series

        series_uid, tasks = keyed
        tasks = tuple(tasks)
        started = time.perf_counter()
        step = "stage"
        try:
            ct_uri = Staging(self.settings.staging_uri).ct_uri(series_uid)
            if staging.is_staged(ct_uri):
                log.info("series %s: staged before, %s", series_uid, ct_uri)
            else:
                step = "fetch"
                folder = fetch_series(tasks[0].series, self.settings.cache_dir,
                                      idc_endpoint_url=self.settings.idc_endpoint_url)
                step = "read CT"
                ct = read_ct_series(folder, series_uid)
                step = "stage"
                staging.put_ct(ct_uri, ct)
                if not self.settings.keep_downloads and tasks[0].series.kind != LOCAL:
                    shutil.rmtree(folder, ignore_errors=True)
        except Exception as error:
            for task in tasks:
                yield beam.pvalue.TaggedOutput(FAILED_TAG, failed(task, step, error, started))
            return
        yield StagedSeries(ct_uri, tasks)


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
    ``predict`` runs at a time: on a GPU worker the other threads read staged CTs, augment them and
    stage label maps meanwhile, instead of stacking model copies and activations on one GPU.
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


class Predict(beam.DoFn):
    """Run every pending output of one series on its staged CT and stage each label map.

    The CT is read once, and each augmented CT made once for all sources that see pixels. A label map
    staged by an earlier attempt is kept and its source is not run (nor loaded) again.
    """

    def __init__(self, settings: SegmentSettings):
        self.settings = settings
        self._shared = Shared()  # one LoadedSources per process for every thread running this step

    def setup(self) -> None:
        self.sources = self._shared.acquire(LoadedSources)

    def process(self, series: StagedSeries) -> Iterator:
        area = Staging(self.settings.staging_uri)
        done, to_run = [], []
        for task in series.tasks:
            uri = area.labels_uri(task.series.series_uid, task.seg_uids[1])
            if staging.is_staged(uri):
                log.info("%s: label map staged before, %s", task.describe(), uri)
                done.append(StagedOutput(task, uri, 0.0))
            else:
                to_run.append((task, uri))
        results = self._run(series.ct_uri, to_run) if to_run else []
        failures = [result for result in results if not isinstance(result, StagedOutput)]
        for row in failures:
            yield beam.pvalue.TaggedOutput(FAILED_TAG, row)
        done += [result for result in results if isinstance(result, StagedOutput)]
        if done:
            yield PredictedSeries(series.ct_uri, tuple(done), complete=not failures)

    def _run(self, ct_uri: str, to_run: list[tuple[OutputTask, str]]) -> list[StagedOutput | ManifestRow]:
        """Each (task, label map URI) run on the staged CT: its staged output, or its failure row."""
        started = time.perf_counter()
        try:
            ct = staging.get_ct(ct_uri)
        except Exception as error:
            return [failed(task, "read staged CT", error, started) for task, _ in to_run]
        seen: dict[str, object] = {}  # augmentation text -> the CT as the sources see it
        return [self._predict(task, uri, ct, seen) for task, uri in to_run]

    def _predict(self, task: OutputTask, uri: str, ct, seen: dict) -> StagedOutput | ManifestRow:
        from models.augment import parse_augmentation
        from models.segment import augmented_ct

        started = time.perf_counter()
        step = "load source"
        try:
            model = self.sources.get(task.source.spec)
            view = None
            if task.source.sees_pixels:
                step = "augment"
                if task.augmentation not in seen:
                    seen[task.augmentation] = augmented_ct(ct, parse_augmentation(task.augmentation))
                view = seen[task.augmentation]
            step = "predict"
            schema_map = predict_output(task, ct, model, view)
            step = "stage labels"
            staging.put_labels(uri, schema_map)
        except Exception as error:  # a crashed model fails this output only
            log.debug("%s: traceback of the failure", task.describe(), exc_info=True)
            return failed(task, step, error, started)
        return StagedOutput(task, uri, time.perf_counter() - started)

    def teardown(self) -> None:
        self.sources = None  # the models go when the process's last thread lets go


class EncodeAndStore(beam.DoFn):
    """Encode each staged label map of a series as a SEG on its CT, store them together, clear what is stored.

    The SEGs of a series go in one ``put_many`` (one STOW-RS request to a DICOMweb store). When that
    fails, each is sent alone, so every output's row says whether it, not its batch, was stored.
    """

    def __init__(self, settings: SegmentSettings):
        self.settings = settings

    def setup(self) -> None:
        from dicom_io.stores import open_store

        self.store = open_store(self.settings.store_uri)

    def process(self, series: PredictedSeries) -> Iterator[ManifestRow]:
        started = time.perf_counter()
        try:
            ct = staging.get_ct(series.ct_uri)
        except Exception as error:
            retried = isinstance(error, StagingMissingError)  # a first attempt may have stored all and cleared up
            for output in series.outputs:
                yield (retried and self._stored_before(output.task)) or failed(output.task, "read staged CT", error, started)
            return
        encoded, rows = [], []
        for output in series.outputs:
            result = self._encode(output, ct)
            (rows if isinstance(result, ManifestRow) else encoded).append(result)
        for (output, seg, schema_map, began), location in zip(encoded, self._put([e[1] for e in encoded]), strict=True):
            if isinstance(location, BaseException):
                rows.append(failed(output.task, "store", location, began))
            else:
                staging.discard(output.labels_uri)
                rows.append(written(output.task, location, schema_map, began))
        yield from rows
        if series.complete and all(row.status in (WRITTEN, EXISTS) for row in rows):  # all in the store
            staging.discard(series.ct_uri)

    def _encode(self, output: StagedOutput, ct) -> tuple | ManifestRow:
        """(output, SEG, label map, start time counting its inference), or the row of its failure."""
        began = time.perf_counter() - output.seconds
        step = "read staged labels"
        try:
            schema_map = staging.get_labels(output.labels_uri)
            step = "encode"
            return output, encode_output(output.task, ct, schema_map), schema_map, began
        except StagingMissingError as error:  # a retried bundle: a first attempt may have stored it and cleared up
            return self._stored_before(output.task) or failed(output.task, step, error, began)
        except Exception as error:
            log.debug("%s: traceback of the failure", output.task.describe(), exc_info=True)
            return failed(output.task, step, error, began)

    def _stored_before(self, task: OutputTask) -> ManifestRow | None:
        """The ``exists`` row of an output the store holds (Dataflow retries bundles whose worker died)."""
        try:
            return existing_output(task, self.store)
        except Exception:
            return None

    def _put(self, segs: list) -> list[str | BaseException]:
        """Each SEG's location, or the error that kept it out of the store."""
        if not segs:
            return []
        try:
            return self.store.put_many(segs)
        except Exception as error:
            log.info("storing %d SEGs together failed (%s); storing each alone", len(segs), error)
        results: list[str | BaseException] = []
        for seg in segs:
            try:
                results.append(self.store.put(seg))
            except Exception as error:
                results.append(error)
        return results


class WriteManifest(beam.DoFn):
    def __init__(self, manifest_uri: str):
        self.manifest_uri = manifest_uri

    def process(self, rows: list[ManifestRow]) -> Iterator[str]:
        merged = merge_into_manifest(self.manifest_uri, rows)
        log.info("manifest %s: %d rows from this run, %d in all", self.manifest_uri, len(rows), len(merged))
        yield self.manifest_uri


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


def segment_pipeline(series: Sequence[SeriesRef], settings: SegmentSettings, beam_args: Sequence[str] = (),
                     dataflow: DataflowProfile | None = None) -> beam.Pipeline:
    """Stage 1 over ``series`` as a Beam pipeline, built but not run.

    ``beam_args`` are Beam pipeline options (``--runner``, ``--direct_num_workers``,
    ``--direct_running_mode``, Dataflow options); DirectRunner by default. With the Dataflow runner the
    job follows ``dataflow`` (``DataflowProfile()`` when None): its GPU hint on ``Predict`` and
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
    if not settings.staging_uri.startswith("gs://"):
        os.makedirs(settings.staging_uri, exist_ok=True)
    segment_pipeline(series, settings, beam_args, dataflow).run().wait_until_finish()
