"""Stage 1's CPU steps as Beam DoFns, the elements they hand over, and the settings every worker gets.

- ``PlanOutputs``: a series' outputs (source × augmentation), each with its SEG UIDs;
- ``SkipExisting``: outputs the store holds go straight to the manifest, before anything is downloaded;
- ``StageSeries``: fetch a series, read and check it, stage it as one object (``pipeline.staging``);
- ``EncodeAndStore``: encode each staged label map as a SEG on the staged CT, store a series' SEGs together,
  each row with the subject columns of the CT's headers;
- ``WriteManifest``: merge every row of the run into the manifest.

The GPU step between staging and encoding is ``pipeline.segment_predict.Predict``; the graph that
joins them is ``pipeline.segment_job``. Every failure becomes a manifest row naming its step.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import apache_beam as beam
import pandas as pd

from pipeline import staging
from pipeline.overlap import Overlap
from pipeline.stage1 import (
    OutputTask, SourceInfo, encode_output, existing_output, failed, plan_outputs, segment_count, written,
)
from pipeline.staging import Staging, StagingMissingError
from results.manifest import EXISTS, WRITTEN, ManifestRow, merge_into_manifest, subject_from_headers
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
    seg_compression: str | None = None  # the transfer syntax; None: the SEG type's default (dicom_io.seg_writer)
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
    """Fetch one series, read and check it, and stage it for the GPU step.

    A CT staged before with the same content is used as is; what was staged for other pixels under the
    same series UID is removed first (``staging`` keys objects by ``ct_fingerprint``).
    """

    def __init__(self, settings: SegmentSettings):
        self.settings = settings

    def process(self, keyed: tuple[str, Iterable[OutputTask]]) -> Iterator:
        from dicom_io.ct_series import read_ct_series

        series_uid, tasks = keyed
        tasks = tuple(tasks)
        started = time.perf_counter()
        step = "stage"
        try:
            step = "fetch"
            folder = fetch_series(tasks[0].series, self.settings.cache_dir, idc_endpoint_url=self.settings.idc_endpoint_url)
            step = "read CT"
            ct = read_ct_series(folder, series_uid)
            step = "stage"
            area = Staging(self.settings.staging_uri)
            fingerprint = staging.ct_fingerprint(ct)
            ct_uri = area.ct_uri(series_uid, fingerprint)
            for stale in area.stale(series_uid, fingerprint):
                log.warning("series %s: %s was staged from other pixels under the same UIDs; removed, made again",
                            series_uid, stale)
                staging.discard(stale)
            if staging.is_staged(ct_uri):
                log.info("series %s: staged before, %s", series_uid, ct_uri)
            else:
                staging.put_ct(ct_uri, ct)
            if not self.settings.keep_downloads and tasks[0].series.kind != LOCAL:
                shutil.rmtree(folder, ignore_errors=True)
        except Exception as error:
            for task in tasks:
                yield beam.pvalue.TaggedOutput(FAILED_TAG, failed(task, step, error, started))
            return
        yield StagedSeries(ct_uri, tasks)


class EncodeAndStore(beam.DoFn):
    """Encode each staged label map of a series as a SEG on its CT, store them together, clear what is stored.

    The SEGs of a series are encoded side by side (``pipeline.overlap``) and go in one ``put_many`` (one
    STOW-RS request to a DICOMweb store; files written side by side in a folder). When that
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
        with Overlap() as encoding:  # the series' SEGs side by side, one per core
            for output in series.outputs:
                encoding.submit(self._encode, output, ct)
        encoded, rows = [], []
        for result in encoding.results():
            (rows if isinstance(result, ManifestRow) else encoded).append(result)
        for (output, seg, began), location in zip(encoded, self._put([e[1] for e in encoded]), strict=True):
            if isinstance(location, BaseException):
                rows.append(failed(output.task, "store", location, began))
            else:
                staging.discard(output.labels_uri)
                rows.append(written(output.task, location, seg, began))
        subject = subject_from_headers(ct.datasets[0])  # tables only: never logged
        yield from (replace(row, **subject) for row in rows)
        if series.complete and all(row.status in (WRITTEN, EXISTS) for row in rows):  # all in the store
            staging.discard(series.ct_uri)

    def _encode(self, output: StagedOutput, ct) -> tuple | ManifestRow:
        """(output, SEG, start time counting its inference), or the row of its failure."""
        began = time.perf_counter() - output.seconds
        step = "read staged labels"
        try:
            result = staging.get_labels(output.labels_uri)
            step = "encode"
            return output, encode_output(output.task, ct, result, self.settings.seg_compression), began
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
    def __init__(self, manifest_uri: str, store_uri: str):
        self.manifest_uri, self.store_uri = manifest_uri, store_uri

    def process(self, rows: list[ManifestRow]) -> Iterator[str]:
        from dicom_io.stores import open_store

        store = open_store(self.store_uri)
        merged = merge_into_manifest(self.manifest_uri, rows, lambda row: stored_segment_count(row, store))
        log.info("manifest %s: %d rows from this run, %d in all", self.manifest_uri, len(rows), len(merged))
        yield self.manifest_uri


def stored_segment_count(row: pd.Series, store) -> int:
    """Segments of an output's SEG as stored (0 when it cannot be read: the count is a courtesy, the row stays)."""
    try:
        seg = store.get(row["study_instance_uid"], row["seg_series_instance_uid"], row["seg_sop_instance_uid"])
    except Exception as error:
        log.warning("%s: segment count of the stored SEG unknown: %s", row["seg_sop_instance_uid"], error)
        return 0
    return segment_count(seg)
