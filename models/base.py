"""The one interface every segmentation source implements.

A source is loaded once per worker (``load``, e.g. from a Beam ``DoFn.setup``) and
then predicts one CT series at a time. Its output is a label volume in patient
space on any grid, tagged with the native label set it speaks; ``None`` means the
labels are already schema ids (e.g. decoded from a DICOM SEG).
``models.harmonize.to_schema`` turns a prediction into a schema map on the CT grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import highdicom as hd

from dicom_io.ct_series import CTSeries
from labels.label_sets import LabelSet


@dataclass(frozen=True)
class Prediction:
    """A source's output for one CT series."""

    labels: hd.Volume  # label volume on any grid in patient space
    label_set: LabelSet | None  # native label set; None = already schema ids
    # provenance a source can vouch for per schema structure (BoneHub status codes of the labels it came from)
    statuses: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@runtime_checkable
class SegmentationModel(Protocol):
    """A segmentation source: a model, a baseline or precomputed results."""

    name: str
    version: str

    def load(self) -> None:
        """Do the heavy set-up (weights, device) once per worker; cheap to call again."""
        ...

    def predict(self, ct: CTSeries) -> Prediction:
        """Segment ``ct``; the labels may lie on any grid covering the CT."""
        ...


def vocabulary(model: SegmentationModel) -> frozenset[str]:
    """The schema structures ``model`` can label, from its optional ``vocabulary`` attribute (empty: it does not say).

    Optional so that any class with ``name``, ``version``, ``load`` and ``predict``
    stays a source; QC then infers what it can label from what it labelled.
    """
    return frozenset(getattr(model, "vocabulary", frozenset()))
