"""BoneHub-Dataset masks in (both layout versions) and BoneHub ``.seg.nrrd`` masks out.

BoneHub keeps one mask per subject in ``Segmentation/``, in one of two layouts:

- layout v1 (label set ``bonehub_v1``): a NIfTI label map whose voxels are 4-digit BoneHub
  values; the file holds no statuses;
- layout v2 (label set ``bonehub_v2``): a 3D Slicer ``.seg.nrrd`` (``dicom_io.slicer_seg_nrrd``)
  whose voxels hold per-file segment numbers; each segment's tags
  ``BoneHubLabel:NAME|BoneHubValue:VALUE|BoneHubStatus:CODE|`` say which 9-digit BoneHub label
  it is and that label's status (``labels.bonehub_status``). A segment drawn in Slicer has no
  tags: its name, when it is a BoneHub label name, says the label (status unknown).

A label's status comes from its tags, else from the subject's Subject_info record
(``statuses``), else it is unknown (None). Reading refuses, naming the file and the
segment: a segment with no BoneHub label, a value the label set does not list, a bad
status code, two segments of one label, a 4-D or non-integer NIfTI, and everything the
Slicer reader refuses (empty, truncated, a label value no voxel holds ...).

Writing (``write_bonehub_seg_nrrd``) makes the file BoneHub's own tools and Slicer open:
one layer, segment numbers 1..n in value order, the tags above on every segment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from dicom_io.errors import DicomInputError
from dicom_io.nifti_complete import nifti_data_problem
from dicom_io.slicer_seg_nrrd import (SEG_NRRD_SUFFIX, SegmentToWrite, SlicerSegment, read_slicer_segmentation,
                                      write_slicer_segmentation)
from labels.bonehub_status import BoneHubStatus
from labels.errors import BoneHubInputError
from labels.label_sets import LabelSet, NativeLabel, UnmappedLabelError
from labels.slabs import present_values

LAYOUT_V1 = "bonehub_v1"  # NIfTI masks, 4-digit values in the voxels
LAYOUT_V2 = "bonehub_v2"  # .seg.nrrd masks, 9-digit values in the segment tags
NIFTI_SUFFIXES = (".nii.gz", ".nii")
V1_MAX_VALUE = 9999
TAG_LABEL, TAG_VALUE, TAG_STATUS = "BoneHubLabel", "BoneHubValue", "BoneHubStatus"


class BoneHubMaskError(DicomInputError):
    """A BoneHub mask that cannot be used; the message names the file and the segment or value."""


@dataclass(frozen=True)
class BoneHubSegment:
    """One BoneHub label in a mask file: its value, name, status and where its voxels are."""

    value: int  # BoneHub label value of the file's layout
    name: str  # BoneHub label name
    status: BoneHubStatus | None  # None: the file and the subject's record do not say
    layer: int
    voxel_value: int  # what its voxels hold in its layer
    where: str  # "FILE segment N 'NAME'" or "FILE value V", for messages


@dataclass(frozen=True)
class BoneHubMask:
    """One BoneHub mask file read: layers of voxel values on the file's grid and the labels they hold."""

    path: Path
    layout: str  # LAYOUT_V1 or LAYOUT_V2, also the name of the label set its values belong to
    layers: tuple[hd.Volume, ...]
    segments: tuple[BoneHubSegment, ...]

    def mask(self, segment: BoneHubSegment) -> np.ndarray:
        """The label's voxels as a boolean array on the file's grid."""
        return self.layers[segment.layer].array == segment.voxel_value

    def value_volume(self) -> hd.Volume:
        """The BoneHub values as one int32 label volume; refused when labels overlap (several layers)."""
        if not self.layers:
            raise BoneHubMaskError(f"{self.path}: the mask holds no image data")
        values = np.zeros(self.layers[0].spatial_shape, np.int32)
        for segment in self.segments:
            inside = self.mask(segment)
            if (values[inside] != 0).any():
                raise BoneHubMaskError(f"{self.path}: {segment.where} overlaps another label; read it per label (mask())")
            values[inside] = segment.value
        return self.layers[0].with_array(values)


def mask_layout(path: str | os.PathLike) -> str:
    """The layout version a mask file is in, by its name: ``.seg.nrrd`` v2, NIfTI v1."""
    name = Path(path).name.lower()
    if name.endswith(SEG_NRRD_SUFFIX):
        return LAYOUT_V2
    if name.endswith(NIFTI_SUFFIXES):
        return LAYOUT_V1
    raise BoneHubMaskError(f"{path}: not a BoneHub mask (expected {SEG_NRRD_SUFFIX} or .nii.gz)")


def read_bonehub_mask(path: str | os.PathLike, label_set: LabelSet,
                      statuses: Mapping[str, BoneHubStatus] | None = None) -> BoneHubMask:
    """A mask of either layout; ``label_set``: that layout's (``mask_layout``); ``statuses``: by label name."""
    path = Path(path)
    layout = mask_layout(path)
    if layout == LAYOUT_V2:
        return _read_seg_nrrd(path, label_set, statuses or {})
    return _read_nifti(path, label_set, statuses or {})


def _read_seg_nrrd(path: Path, label_set: LabelSet, statuses: Mapping[str, BoneHubStatus]) -> BoneHubMask:
    segmentation = read_slicer_segmentation(path)
    if not segmentation.segments:
        raise BoneHubMaskError(f"{path}: the segmentation holds no segment")
    segments = tuple(_bonehub_segment(segment, label_set, statuses, path) for segment in segmentation.segments)
    _check_distinct(segments, path)
    return BoneHubMask(path, LAYOUT_V2, segmentation.layers, segments)


def _bonehub_segment(segment: SlicerSegment, label_set: LabelSet, statuses: Mapping[str, BoneHubStatus],
                     path: Path) -> BoneHubSegment:
    """Which BoneHub label a Slicer segment is: its BoneHubValue tag, else its label name; and its status."""
    where = f"{path}: {segment.describe()}"
    tags = segment.tags
    by_name = label_set.by_name(tags.get(TAG_LABEL) or segment.name)
    if TAG_VALUE in tags:
        text = tags[TAG_VALUE]
        if not text.isdigit():
            raise BoneHubMaskError(f"{where}: {TAG_VALUE} {text!r} is not a label value")
        value = _known(int(text), label_set, where).value
        if TAG_LABEL in tags and by_name is not None and by_name.value != value:
            raise BoneHubMaskError(f"{where}: {TAG_LABEL} {tags[TAG_LABEL]} is value {by_name.value} in "
                                   f"{label_set.name}, but {TAG_VALUE} says {value}")
    elif by_name is not None:
        value = by_name.value
    else:
        raise BoneHubMaskError(f"{where} has no BoneHub label: no {TAG_VALUE} tag, and its name is not a "
                               f"{label_set.name} label name")
    label = _known(value, label_set, where)
    status = statuses.get(label.name)
    if TAG_STATUS in tags:
        try:
            status = BoneHubStatus.parse(tags[TAG_STATUS])
        except BoneHubInputError as error:
            raise BoneHubMaskError(f"{where}: {error}") from None
    return BoneHubSegment(value, label.name, status, segment.layer, segment.label_value, where)


def _known(value: int, label_set: LabelSet, where: str) -> NativeLabel:
    try:
        label_set.check_values([value])
    except UnmappedLabelError as error:
        raise BoneHubMaskError(f"{where}: {error}") from None
    return label_set.labels[value]


def _check_distinct(segments: tuple[BoneHubSegment, ...], path: Path) -> None:
    seen: dict[int, BoneHubSegment] = {}
    for segment in segments:
        if segment.value in seen:
            raise BoneHubMaskError(f"{path}: {segment.where} and {seen[segment.value].where} are both BoneHub "
                                   f"label {segment.value} ({segment.name})")
        seen[segment.value] = segment


def _read_nifti(path: Path, label_set: LabelSet, statuses: Mapping[str, BoneHubStatus]) -> BoneHubMask:
    """A layout v1 mask: voxels are BoneHub values; statuses only from the subject's record."""
    if not path.is_file() or path.stat().st_size == 0:
        raise BoneHubMaskError(f"{path}: {'empty file' if path.is_file() else 'no such mask file'}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise BoneHubMaskError(f"{path}: cannot read mask (truncated or not NIfTI?): {reason}") from None
    if (problem := nifti_data_problem(path)) is not None:
        raise BoneHubMaskError(f"{path}: cannot read mask: {problem}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise BoneHubMaskError(f"{path}: a mask is one 3-D label image, this one is {image.GetDimension()}-D "
                               f"with {image.GetNumberOfComponentsPerPixel()} component(s)")
    array = sitk.GetArrayViewFromImage(image)
    if array.dtype.kind == "f":
        if not np.array_equal(array, np.round(array)):
            raise BoneHubMaskError(f"{path}: mask voxels hold non-integer values")
        image = sitk.Cast(image, sitk.sitkInt32)
    volume = hd.Volume.from_simpleitk(image)
    if volume.array.size and volume.array.min() < 0:
        raise BoneHubMaskError(f"{path}: negative voxel value {int(volume.array.min())}")
    if volume.array.size and volume.array.max() > V1_MAX_VALUE:
        raise BoneHubMaskError(f"{path}: voxel value {int(volume.array.max())} is not a 4-digit layout v1 value")
    values = [int(v) for v in present_values(volume.array) if v != 0]
    if not values:
        raise BoneHubMaskError(f"{path}: the mask labels no voxel")
    segments = []
    for value in values:
        where = f"{path}: value {value}"
        label = _known(value, label_set, where)
        segments.append(BoneHubSegment(value, label.name, statuses.get(label.name), 0, value, where))
    return BoneHubMask(path, LAYOUT_V1, (volume,), tuple(segments))


def subject_statuses(record: Mapping[str, object], where: str) -> dict[str, BoneHubStatus]:
    """{label name: status} from a Subject_info record's ``segmentation`` entry; {} when it has none.

    Records of the layout v1 era hold availability flags (-1, 0, 1, 2), not status codes:
    read as codes they would claim the wrong origin, so such a record gives no statuses.
    Any other value must be a valid status code.
    """
    entries = record.get("segmentation") or {}
    if not isinstance(entries, Mapping):
        raise BoneHubMaskError(f"{where}: 'segmentation' must map label names to status codes")
    if all(isinstance(code, int) and code in (-1, 0, 1, 2) for code in entries.values()):
        return {}
    statuses = {}
    for name, code in entries.items():
        try:
            statuses[str(name)] = BoneHubStatus.parse(code)  # type: ignore[arg-type]
        except BoneHubInputError as error:
            raise BoneHubMaskError(f"{where}: label {name}: {error}") from None
    return statuses


def write_bonehub_seg_nrrd(path: str | os.PathLike, values: hd.Volume, label_set: LabelSet,
                           statuses: Mapping[int, BoneHubStatus],
                           colors: Mapping[int, tuple[float, float, float]] | None = None) -> list[BoneHubSegment]:
    """Write a layout v2 mask from a volume of BoneHub values (0 = background); returns its labels.

    Every value must be in ``label_set`` and have a status; ``colors`` (r, g, b in 0-1) per value,
    grey where not given. The file is written under a temporary name and renamed at the end.
    """
    path = Path(path)
    present = [int(v) for v in np.unique(values.array) if v != 0]
    if not present:
        raise BoneHubMaskError(f"{path}: nothing to write, the mask labels no voxel")
    numbers = np.zeros(values.spatial_shape, np.uint8 if len(present) < 256 else np.uint16)
    to_write, written = [], []
    for number, value in enumerate(present, start=1):
        label = _known(value, label_set, f"{path}: value {value}")
        if value not in statuses:
            raise ValueError(f"{path}: no status for BoneHub label {value} ({label.name})")
        status = statuses[value]
        numbers[values.array == value] = number
        tags = {TAG_LABEL: label.name, TAG_VALUE: str(value), TAG_STATUS: str(status.code)}
        to_write.append(SegmentToWrite(number, label.name, label.name, (colors or {}).get(value, (0.5, 0.5, 0.5)), tags))
        written.append(BoneHubSegment(value, label.name, status, 0, number, f"{path}: segment {number - 1} {label.name!r}"))
    write_slicer_segmentation(path, values.with_array(numbers), to_write)
    return written
