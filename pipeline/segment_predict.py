"""Stage 1's GPU step as a Beam DoFn: every pending source of a series run on its staged CT.

On Dataflow this is the only step with the accelerator hint (``pipeline.dataflow``). The sources are
loaded once per worker process and shared by its threads, and one inference runs at a time, so a GPU
holds one copy of each model while the other threads read staged CTs and stage label maps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import apache_beam as beam
from apache_beam.utils.shared import Shared

from pipeline import staging
from pipeline.segment_steps import FAILED_TAG, PredictedSeries, SegmentSettings, StagedOutput, StagedSeries
from pipeline.overlap import Overlap
from pipeline.stage1 import OutputTask, failed, predict_output
from results.manifest import ManifestRow

if TYPE_CHECKING:  # models load lazily: building the job graph needs none of them
    from models.base import Prediction
    from models.segment import AugmentedCT

log = logging.getLogger("bonehub.segment")


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

    The CT is read once, and each augmented CT made once for all sources that see pixels
    (``models.segment.AugmentedCT``). A label map staged by an earlier attempt is kept and its
    source is not run (nor loaded) again.
    """

    def __init__(self, settings: SegmentSettings):
        self.settings = settings
        self._shared = Shared()  # one LoadedSources per process for every thread running this step

    def setup(self) -> None:
        self.sources = self._shared.acquire(LoadedSources)

    def process(self, series: StagedSeries) -> Iterator:
        done, to_run = [], []
        for task in series.tasks:
            uri = staging.labels_uri(series.ct_uri, task.seg_uids[1])
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
        """Each (task, label map URI) run on the staged CT: its staged output, or its failure row.

        Inference runs in this thread, one output after the other; each prediction is harmonized,
        inverted and staged in a worker thread (``pipeline.overlap``) while the next one runs.
        """
        started = time.perf_counter()
        try:
            ct = staging.get_ct(ct_uri)
        except Exception as error:
            return [failed(task, "read staged CT", error, started) for task, _ in to_run]
        seen: dict[str, AugmentedCT] = {}  # augmentation text -> the CT as the sources see it
        with Overlap() as finishing:
            for task, uri in to_run:
                started = time.perf_counter()
                predicted = self._predict(task, ct, seen, started)
                if isinstance(predicted, ManifestRow):
                    finishing.add(predicted)
                else:
                    finishing.submit(_finish, task, uri, *predicted, started)
            return finishing.results()

    def _predict(self, task: OutputTask, ct, seen: dict, started: float) -> tuple[Prediction, AugmentedCT] | ManifestRow:
        """(prediction, the augmented CT it was made on), or the row of the failure."""
        from models.augment import parse_augmentation
        from models.segment import augmented_ct

        step = "load source"
        try:
            model = self.sources.get(task.source.spec)
            step = "augment"
            if task.augmentation not in seen:
                seen[task.augmentation] = augmented_ct(ct, parse_augmentation(task.augmentation))
            step = "predict"
            return predict_output(task, model, seen[task.augmentation]), seen[task.augmentation]
        except Exception as error:  # a crashed model fails this output only
            log.debug("%s: traceback of the failure", task.describe(), exc_info=True)
            return failed(task, step, error, started)

    def teardown(self) -> None:
        self.sources = None  # the models go when the process's last thread lets go


def _finish(task: OutputTask, uri: str, prediction: Prediction, seen: AugmentedCT, started: float) -> StagedOutput | ManifestRow:
    """A prediction harmonized, brought onto the CT grid and staged: its staged output, or the row of the failure."""
    from models.segment import schema_labels

    step = "harmonize"
    try:
        result = schema_labels(prediction, seen)
        step = "stage labels"
        staging.put_labels(uri, result)
    except Exception as error:
        log.debug("%s: traceback of the failure", task.describe(), exc_info=True)
        return failed(task, step, error, started)
    return StagedOutput(task, uri, time.perf_counter() - started)
