"""Stage 1 as plain functions: which outputs a run asks for, and how one output is made.

An output is one (series, source, augmentation). Its SEG UIDs follow from that
identity before anything runs, so a rerun can ask the store whether it already
exists and skip it. ``predict_output`` makes one output's prediction
(``models.segment.schema_labels`` its label map on the CT grid) and
``encode_output`` its SEG; a bad item never stops the run: its failure becomes
a manifest row naming the step and the reason (``failed``), a stored one a
``written`` row.
The Beam job in ``segment_job`` only wraps these functions.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicom_io.bonehub_provenance import stamp_statuses
from dicom_io.ct_series import CTSeries
from dicom_io.provenance import SegmentationSource, segmentation_uids
from dicom_io.seg_writer import write_seg
from dicom_io.stores import Store
from dicom_io.vocabulary import encode_vocabulary
from models.augment import parse_augmentation
from models.base import Prediction, SegmentationModel, vocabulary
from models.segment import AugmentedCT, SchemaLabels, predict, sees_pixels
from results.manifest import EXISTS, FAILED, WRITTEN, ManifestRow
from results.series_ref import SeriesRef

log = logging.getLogger("bonehub.stage1")


@dataclass(frozen=True)
class SourceInfo:
    """What the job graph needs to know of a source without loading it."""

    spec: str  # models.sources spec: how a worker builds the adapter
    name: str
    version: str
    sees_pixels: bool
    vocabulary: frozenset[str] = frozenset()  # schema structures it can label: recorded in its SEGs and the manifest

    @classmethod
    def of(cls, spec: str, model: SegmentationModel) -> SourceInfo:
        return cls(spec, model.name, model.version, sees_pixels(model), vocabulary(model))


@dataclass(frozen=True)
class OutputTask:
    """One output to make: small, so it travels between Beam steps."""

    series: SeriesRef
    source: SourceInfo
    augmentation: str  # canonical text (``str(parse_augmentation(...))``)
    seg_type: str

    @property
    def provenance(self) -> SegmentationSource:
        return SegmentationSource(self.source.name, self.source.version, self.augmentation, vocabulary=self.source.vocabulary)

    @property
    def seg_uids(self) -> tuple[str, str]:
        """(SeriesInstanceUID, SOPInstanceUID) of the SEG this task writes."""
        return segmentation_uids(self.series.series_uid, self.provenance, self.seg_type)

    def describe(self) -> str:
        return f"series {self.series.series_uid} | {self.source.name} | {self.augmentation}"

    def row(self, status: str, *, location: str = "", error: str = "", segments: int = 0, seconds: float = 0.0) -> ManifestRow:
        seg_series, seg_sop = self.seg_uids
        return ManifestRow(
            series_instance_uid=self.series.series_uid, study_instance_uid=self.series.study_uid,
            source=self.source.name, source_version=self.source.version, augmentation=self.augmentation,
            seg_type=self.seg_type, seg_series_instance_uid=seg_series, seg_sop_instance_uid=seg_sop,
            location=location, status=status, error=error, segments=segments, seconds=round(seconds, 3),
            finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            ct_kind=self.series.kind, ct_location=self.series.location, ct_instances=self.series.instance_count,
            vocabulary=encode_vocabulary(self.source.vocabulary), source_path=self.series.source_path,
        )


def canonical_augmentations(texts: Sequence[str]) -> list[str]:
    """Canonical, de-duplicated augmentation texts, always starting with ``none`` (the plain input)."""
    canonical = [str(parse_augmentation(text)) for text in ("none", *texts)]
    return list(dict.fromkeys(canonical))


def plan_outputs(series: SeriesRef, sources: Sequence[SourceInfo], augmentations: Sequence[str],
                 seg_type: str) -> list[OutputTask]:
    """Every output of one series: each source under each augmentation it can take.

    Sources that do not look at the pixels (precomputed results) only get ``none``.
    """
    return [
        OutputTask(series, source, augmentation, seg_type)
        for source in sources
        for augmentation in augmentations
        if source.sees_pixels or augmentation == "none"
    ]


def existing_output(task: OutputTask, store: Store) -> ManifestRow | None:
    """The manifest row of an output already in the store (an earlier run made it), else None."""
    seg_series, seg_sop = task.seg_uids
    if store.exists(task.series.study_uid, seg_series, seg_sop):
        return task.row(EXISTS, location=store.location(task.series.study_uid, seg_series, seg_sop))
    return None


def failed(task: OutputTask, step: str, error: BaseException | str, started: float | None = None) -> ManifestRow:
    """A failure row; the reason is one line naming the step and the error type."""
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    reason = " ".join(f"{step}: {reason}".split())
    log.warning("%s: failed: %s", task.describe(), reason)
    return task.row(FAILED, error=reason, seconds=time.perf_counter() - started if started else 0.0)


def predict_output(task: OutputTask, model: SegmentationModel, seen: AugmentedCT) -> Prediction:
    """One output's prediction on ``seen``, the series' CT under the task's augmentation (shared by its sources);
    raises what the source raises. ``models.segment.schema_labels`` brings it onto the CT grid in schema ids."""
    if str(seen.augmentation) != task.augmentation:
        raise ValueError(f"the augmented CT shared for {seen.augmentation} was passed for {task.augmentation}")
    log.info("%s: segmenting", task.describe())
    return predict(model, seen)


def encode_output(task: OutputTask, ct: CTSeries, result: SchemaLabels, compression: str | None = None) -> Dataset:
    """One output's label map as a SEG on ``ct``, with the UIDs and provenance of ``task`` and the statuses its
    source vouched per structure (BoneHub masks), stored with ``compression`` (None: the SEG type's default);
    raises on failure."""
    seg = write_seg(result.labels, ct, task.provenance, seg_type=task.seg_type, compression=compression)
    stamp_statuses(seg, result.statuses)
    return seg


def segment_count(seg: Dataset) -> int:
    """Structures in a SEG: its segments other than a LABELMAP's background (segment 0)."""
    return sum(1 for item in seg.SegmentSequence if int(item.SegmentNumber) > 0)


def written(task: OutputTask, location: str, seg: Dataset, started: float) -> ManifestRow:
    """The row of ``seg`` stored at ``location``; ``started``: when work on it began (``time.perf_counter``)."""
    segments = segment_count(seg)
    seconds = time.perf_counter() - started
    log.info("%s: %d segments -> %s (%.1f s)", task.describe(), segments, location, seconds)
    return task.row(WRITTEN, location=location, segments=segments, seconds=seconds)
