"""A BoneHub-Dataset's own masks as a segmentation source: the source datasets' ground truth votes in QC.

Source spec ``bonehub:ROOT[?name=..&version=..]`` (``models.sources``); ROOT is a folder of
``Dataset_NNN/`` folders or one of them (``dicom_io.bonehub_layout``).

- **Which mask.** A CT made from a BoneHub image carries the subject in its headers
  (ClinicalTrialProtocolID = dataset id ``001``, ClinicalTrialSubjectID = subject id
  ``001_000001``; ``dicom_io.volume_*``); its masks are that subject's files in
  ``Segmentation/``. A CT without those ids, or a subject without a mask, is
  ``PrecomputedNotFoundError``.
- **Which labels.** The layout is told by the file: ``.seg.nrrd`` is layout v2 (9-digit
  values, label set ``bonehub_v2``), NIfTI layout v1 (4-digit, ``bonehub_v1``); values map
  to schema ids through that label set, an unknown value is an error naming it. Every
  mask must lie on the CT's own grid (Slicer's cropped extents included): a mask on
  another grid is refused, never resampled, because it belongs to another image.
- **Several labels on one voxel** (a bone and its cortical shell in two layers, a
  side-less label next to a sided one, several files of one subject): the voxel takes
  the most specific structure (a label whose schema targets lie within the other's);
  labels of the same structure are united; overlapping unrelated structures are refused.
- **Status as provenance.** Each label's BoneHub status (tags, else Subject_info, else
  unknown) travels with the prediction (``Prediction.statuses``: schema name ->
  codes), for ``dicom_io.bonehub_provenance.stamp_statuses`` to write into the SEG.
  A label whose review failed (automatic check failed, expert rejected) or whose origin
  is "not available" does not vote: it is left out (``withheld``) and logged. A subject
  with no voting label fails alone.
- **Vocabulary.** None declared (``vocabulary`` empty): datasets label different bones (a
  pelvis dataset labels no rib), so a whole-label-map vocabulary would make every
  unlabelled bone an "absent" vote, and its groups would keep the source out of bone-level
  comparisons; QC infers per SEG what it labels.
- **Version.** Fixed at construction, since it names the SEGs: ``version=`` or the
  ``version`` of each dataset's Dataset_info under ROOT (``001:1.0 002:2.1``; ``?`` where none).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicom_io.bonehub_layout import BoneHubSubject, check_ids, find_subjects
from dicom_io.bonehub_seg_nrrd import BoneHubMask, BoneHubMaskError, BoneHubSegment, mask_layout, read_bonehub_mask, \
    subject_statuses
from dicom_io.ct_series import CTSeries
from dicom_io.geometry import describe_grid, match_grid
from dicom_io.label_images import LabelGridError
from labels.label_sets import LabelSet, NativeLabel, load_label_set
from labels.schema import BoneSchema
from models.base import Prediction
from models.precomputed import PrecomputedNotFoundError

log = logging.getLogger("bonehub.bonehub_dataset")

SOURCE_NAME = "BoneHub-Dataset"


@dataclass(frozen=True)
class BoneHubPrediction(Prediction):
    """A prediction from BoneHub masks; ``statuses`` holds each structure's BoneHub statuses (provenance)."""

    withheld: tuple[str, ...] = ()  # BoneHub labels that do not vote (failed review, not available)
    layouts: tuple[str, ...] = ()  # the layout versions of the files read


class BoneHubDatasetSource:
    """Each CT's subject mask(s) from a BoneHub-Dataset folder, in schema ids, with statuses."""

    sees_pixels = False  # the masks exist already: input augmentations cannot apply
    vocabulary: frozenset[str] = frozenset()  # see the module docstring

    def __init__(self, root: str | os.PathLike, *, name: str = SOURCE_NAME, version: str | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise PrecomputedNotFoundError(f"{name}: {self.root} is not a folder (a BoneHub-Dataset root)")
        self.name = name
        self.version = version or _dataset_versions(self.root)
        self._subjects: dict[str, dict[str, BoneHubSubject]] = {}  # dataset id -> subject id -> subject

    def __repr__(self) -> str:
        return f"BoneHubDatasetSource({str(self.root)!r}, {self.name!r}, {self.version!r})"

    def load(self) -> None:
        """Nothing heavy: label sets load on first use."""

    def subject(self, ct: CTSeries) -> BoneHubSubject:
        """The BoneHub subject a CT was made from, by the ids in its headers."""
        header = ct.datasets[0]
        dataset_id = str(header.get("ClinicalTrialProtocolID", "") or "")
        subject_id = str(header.get("ClinicalTrialSubjectID", "") or "")
        if not dataset_id or not subject_id:
            raise PrecomputedNotFoundError(
                f"{self.name}: CT series {ct.series_instance_uid} carries no BoneHub dataset/subject id "
                "(ClinicalTrialProtocolID / ClinicalTrialSubjectID), so it was not made from a BoneHub image")
        check_ids(dataset_id, subject_id)
        if dataset_id not in self._subjects:
            folder = self.root if self.root.name == f"Dataset_{dataset_id}" else self.root / f"Dataset_{dataset_id}"
            if not folder.is_dir():
                raise PrecomputedNotFoundError(f"{self.name}: no folder for BoneHub dataset {dataset_id} in {self.root} "
                                               f"(CT series {ct.series_instance_uid})")
            self._subjects[dataset_id] = {s.subject_id: s for s in find_subjects(folder)}
        found = self._subjects[dataset_id].get(subject_id)
        if found is None or not found.segmentations:
            raise PrecomputedNotFoundError(f"{self.name}: no mask for BoneHub subject {subject_id} in {self.root} "
                                           f"(CT series {ct.series_instance_uid})")
        return found

    def predict(self, ct: CTSeries) -> BoneHubPrediction:
        subject = self.subject(ct)
        statuses = subject_statuses(subject.subject_info, f"Subject_info_{subject.dataset_id}.json subject {subject.subject_id}")
        masks = [read_bonehub_mask(path, load_label_set(mask_layout(path)), statuses) for path in subject.segmentations]
        return combine_masks(masks, ct, subject.subject_id)


def _dataset_versions(root: Path) -> str:
    """``001:1.0 002:?`` from the Dataset_info records under ``root`` (a layout error is refused here, early)."""
    subjects = find_subjects(root)
    versions = {s.dataset_id: str(s.dataset_info.get("version") or "?") for s in subjects}
    return " ".join(f"{dataset}:{version}" for dataset, version in sorted(versions.items())) or "?"


def _on_ct(mask: BoneHubMask, ct: CTSeries) -> list[np.ndarray]:
    """The mask's layers on the CT grid; a mask on any other grid is refused."""
    layers = []
    for layer in mask.layers:
        matched = match_grid(layer, ct.geometry)
        if matched is None:
            raise LabelGridError(f"{mask.path}: its grid ({describe_grid(layer)}) is not the grid "
                                 f"({describe_grid(ct.geometry)}) of CT series {ct.series_instance_uid}")
        layers.append(matched.array)
    return layers


def _votes(segment: BoneHubSegment) -> bool:
    return segment.status is None or segment.status.is_usable


def combine_masks(masks: list[BoneHubMask], ct: CTSeries, subject_id: str) -> BoneHubPrediction:
    """One label volume on the CT grid from a subject's masks, in a compact label set of their voting labels."""
    entries: list[tuple[BoneHubSegment, NativeLabel, np.ndarray]] = []
    withheld = []
    for mask in masks:
        label_set = load_label_set(mask.layout)
        layers = _on_ct(mask, ct)
        for segment in mask.segments:
            if not _votes(segment):
                withheld.append(f"{segment.name} ({mask.layout} {segment.value}, status {segment.status.describe()})")
                continue
            entries.append((segment, label_set.labels[segment.value], layers[segment.layer] == segment.voxel_value))
    if withheld:
        log.info("BoneHub subject %s: labels that do not vote: %s", subject_id, "; ".join(withheld))
    voting = [(s, n, m) for s, n, m in entries if n.targets()]
    if not voting:
        raise BoneHubMaskError(f"BoneHub subject {subject_id}: no label of {', '.join(str(m.path) for m in masks)} "
                               f"votes ({len(withheld)} withheld, {len(entries) - len(voting)} not bones)")
    schema = load_label_set(masks[0].layout).schema
    natives, numbers = _compact(voting)
    painted = np.zeros(ct.volume.spatial_shape, np.uint16)
    order = sorted(range(len(voting)), key=lambda i: _specificity(voting[i][1], schema))
    for i in order:
        segment, native, inside = voting[i]
        _check_overlap(painted, inside, numbers[i], natives, segment, schema)
        painted[inside & (painted == 0)] = numbers[i]
    statuses: dict[str, set[int]] = {}
    for segment, native, _ in voting:
        for target in native.targets():
            statuses.setdefault(target, set()).update([segment.status.code] if segment.status is not None else [])
    compact = LabelSet(f"BoneHub masks of subject {subject_id}", natives.values(), schema)
    return BoneHubPrediction(ct.volume.with_array(painted), compact,
                             {name: tuple(sorted(codes)) for name, codes in statuses.items() if codes},
                             tuple(withheld), tuple(sorted({m.layout for m in masks})))


def _compact(voting: list[tuple[BoneHubSegment, NativeLabel, np.ndarray]]) -> tuple[dict[int, NativeLabel], list[int]]:
    """A number per distinct BoneHub value (v1 and v2 values never collide: 4 and 9 digits), named ``VALUE NAME``.

    Compact numbers keep the label volume small: 9-digit values would need int32 and a
    lookup table of a billion entries to harmonize.
    """
    natives: dict[int, NativeLabel] = {}
    by_value: dict[int, int] = {}
    numbers = []
    for _, native, _ in voting:
        if native.value not in by_value:
            number = by_value[native.value] = len(by_value) + 1
            natives[number] = NativeLabel(number, f"{native.value} {native.name}", native.schema_name, native.split_by_side)
        numbers.append(by_value[native.value])
    return natives, numbers


def _specificity(native: NativeLabel, schema: BoneSchema) -> tuple[int, int]:
    """Sort key: deeper structures first, then labels with fewer targets (a sided label before its side-less one)."""
    depth = max(len(schema.ancestors(target)) for target in native.targets())
    return -depth, len(native.targets())


def _covers(outer: NativeLabel, inner: NativeLabel, schema: BoneSchema) -> bool:
    """Whether every target of ``inner`` is a target of ``outer`` or lies under one."""
    region = set(outer.targets()) | {d.name for t in outer.targets() for d in schema.descendants(t)}
    return set(inner.targets()) <= region


def _check_overlap(painted: np.ndarray, inside: np.ndarray, number: int, natives: Mapping[int, NativeLabel],
                   segment: BoneHubSegment, schema: BoneSchema) -> None:
    """Refuse a label that overlaps an already painted label it does not contain (unrelated structures)."""
    native = natives[number]
    for other in np.unique(painted[inside]):
        if other in (0, number) or _covers(native, natives[int(other)], schema):
            continue
        count = int(np.count_nonzero(inside & (painted == other)))
        raise BoneHubMaskError(f"{segment.where} ({native.name}) overlaps {natives[int(other)].name} on {count} voxels; "
                               "only a label and labels inside it may overlap")
