"""3D Slicer's segmentation file (``.seg.nrrd``) read and written by its own conventions, with SimpleITK.

BoneHub-Dataset stores its masks in this format, and reviewers open them in Slicer,
so both directions follow Slicer's conventions rather than treating the file as a
plain label map (which would read segment numbers as labels):

- voxels hold, per *layer*, the ``SegmentN_LabelValue`` of each segment. Segments that
  overlap go to separate layers: the file is then 4-D, a ``list`` axis of layers before
  the three spatial axes (SimpleITK reads that axis as pixel components);
- the header describes segment ``N = 0 .. count-1`` with ``SegmentN_ID``, ``_Name``,
  ``_LabelValue``, ``_Layer``, ``_Color`` (r g b in 0-1), ``_Extent`` (min/max voxel index
  per axis, in file voxels) and ``_Tags`` (``key:value|key:value|``);
- the file may be cropped to the segments (``Segmentation_ReferenceImageExtentOffset``);
  Slicer compensates the origin, so the file's own geometry places it correctly;
- a one-voxel image means "no image data" (a segmentation saved without segments).

Reading refuses what Slicer would misread or silently drop: a segment without a
label value, a layer or label value that no voxel holds, two segments sharing
one value in one layer, voxel values that no segment names. Each error names the
file and the segment. Writing goes to a temporary name renamed at the end, so a
failure leaves no partial file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from dicom_io.errors import DicomInputError
from labels.slabs import present_values

SEG_NRRD_SUFFIX = ".seg.nrrd"
BINARY_LABELMAP = "Binary labelmap"
_INTEGER_PIXELS = (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
                   sitk.sitkVectorUInt8, sitk.sitkVectorInt8, sitk.sitkVectorUInt16, sitk.sitkVectorInt16,
                   sitk.sitkVectorUInt32, sitk.sitkVectorInt32)


class SegNrrdError(DicomInputError):
    """A ``.seg.nrrd`` file that cannot be read as a Slicer segmentation; the message names the file and segment."""


@dataclass(frozen=True)
class SlicerSegment:
    """One segment of a Slicer segmentation file: its header fields and where its voxels are."""

    index: int  # N of the SegmentN_ header keys
    segment_id: str
    name: str
    layer: int
    label_value: int
    tags: Mapping[str, str] = field(default_factory=dict)
    color: tuple[float, float, float] | None = None

    def describe(self) -> str:
        return f"segment {self.index} {self.name!r}"


@dataclass(frozen=True)
class SlicerSegmentation:
    """A Slicer segmentation: one integer volume per layer (same grid) and its segments."""

    path: Path
    layers: tuple[hd.Volume, ...]
    segments: tuple[SlicerSegment, ...]

    def mask(self, segment: SlicerSegment) -> np.ndarray:
        """The segment's voxels as a boolean array on the file's grid."""
        return self.layers[segment.layer].array == segment.label_value


def read_slicer_segmentation(path: str | os.PathLike) -> SlicerSegmentation:
    """A ``.seg.nrrd`` file's layers and segments; raises ``SegNrrdError`` naming the file and what is wrong."""
    path = Path(path)
    image = _read_image(path)
    segments = _segments(image, path)
    layers = _layers(image, path)
    if image.GetNumberOfPixels() == 1 and not segments:
        return SlicerSegmentation(path, (), ())  # Slicer's "no image data"
    for segment in segments:
        if segment.layer >= len(layers):
            raise SegNrrdError(f"{path}: {segment.describe()} is in layer {segment.layer}, the file has {len(layers)}")
    _check_values(layers, segments, path)
    return SlicerSegmentation(path, tuple(layers), tuple(segments))


def _read_image(path: Path) -> sitk.Image:
    if not path.is_file():
        raise SegNrrdError(f"{path}: no such segmentation file")
    if path.stat().st_size == 0:
        raise SegNrrdError(f"{path}: empty file")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise SegNrrdError(f"{path}: cannot read segmentation (truncated or not NRRD?): {reason}") from None
    if image.GetDimension() != 3:
        raise SegNrrdError(f"{path}: a segmentation has 3 spatial axes (plus an optional list of layers), "
                           f"this file has {image.GetDimension()}")
    if image.GetPixelID() not in _INTEGER_PIXELS:
        raise SegNrrdError(f"{path}: voxels must hold integer label values, not {image.GetPixelIDTypeAsString()}")
    return image


def _layers(image: sitk.Image, path: Path) -> list[hd.Volume]:
    count = image.GetNumberOfComponentsPerPixel()
    parts = [image] if count == 1 else [sitk.VectorIndexSelectionCast(image, k) for k in range(count)]
    layers = []
    for part in parts:
        array = sitk.GetArrayViewFromImage(part)
        if array.size and array.min() < 0:
            raise SegNrrdError(f"{path}: negative voxel value {int(array.min())}")
        layers.append(hd.Volume.from_simpleitk(part))
    return layers


def _meta(image: sitk.Image, key: str) -> str | None:
    return image.GetMetaData(key).strip() if image.HasMetaDataKey(key) else None


def _segments(image: sitk.Image, path: Path) -> list[SlicerSegment]:
    """Segments 0, 1, ... as long as the header names one (by any SegmentN_ key Slicer always writes)."""
    segments = []
    index = 0
    while any(image.HasMetaDataKey(f"Segment{index}_{key}") for key in ("ID", "Name", "LabelValue", "Layer")):
        name = _meta(image, f"Segment{index}_Name") or _meta(image, f"Segment{index}_ID") or f"Segment_{index}"
        where = f"{path}: segment {index} {name!r}"
        label_value = _integer(_meta(image, f"Segment{index}_LabelValue"), f"{where}: Segment{index}_LabelValue")
        layer_text = _meta(image, f"Segment{index}_Layer")
        if layer_text is None and image.GetNumberOfComponentsPerPixel() > 1:
            raise SegNrrdError(f"{where}: no Segment{index}_Layer in a file of {image.GetNumberOfComponentsPerPixel()} layers")
        layer = _integer(layer_text or "0", f"{where}: Segment{index}_Layer", minimum=0)
        segments.append(SlicerSegment(index, _meta(image, f"Segment{index}_ID") or name, name, layer, label_value,
                                      _tags(_meta(image, f"Segment{index}_Tags") or ""),
                                      _color(_meta(image, f"Segment{index}_Color"))))
        index += 1
    return segments


def _integer(text: str | None, where: str, minimum: int = 1) -> int:
    if text is None:
        raise SegNrrdError(f"{where} is missing")
    if not text.isdigit() or int(text) < minimum:
        raise SegNrrdError(f"{where} is {text!r}, not an integer >= {minimum}")
    return int(text)


def _tags(text: str) -> dict[str, str]:
    """``key:value|key:value|`` as a dict (a value may itself hold ``:``; pairs without one are skipped)."""
    pairs = (item.split(":", 1) for item in text.split("|") if ":" in item)
    return {key.strip(): value.strip() for key, value in pairs}


def _color(text: str | None) -> tuple[float, float, float] | None:
    try:
        red, green, blue = (float(part) for part in (text or "").split())
    except ValueError:
        return None
    return red, green, blue


def _check_values(layers: Sequence[hd.Volume], segments: Sequence[SlicerSegment], path: Path) -> None:
    """Every segment's value is held by some voxel of its layer, once; every voxel value belongs to a segment."""
    claimed: dict[tuple[int, int], SlicerSegment] = {}
    for segment in segments:
        key = (segment.layer, segment.label_value)
        if key in claimed:
            raise SegNrrdError(f"{path}: {segment.describe()} and {claimed[key].describe()} both claim label value "
                               f"{segment.label_value} in layer {segment.layer}")
        claimed[key] = segment
    for number, layer in enumerate(layers):
        present = _distinct(layer.array) - {0}
        for segment in segments:
            if segment.layer == number and segment.label_value not in present:
                raise SegNrrdError(f"{path}: {segment.describe()} has label value {segment.label_value}, "
                                   f"which no voxel of layer {number} holds")
        if unnamed := sorted(value for value in present if (number, value) not in claimed):
            raise SegNrrdError(f"{path}: voxel value(s) {unnamed[:10]} in layer {number} belong to no segment of the header")


def _distinct(array: np.ndarray) -> set[int]:
    """The values in a layer: a presence table for segment numbers (fast), a sort for anything larger."""
    if array.size and int(array.max()) > 0xFFFF:
        return {int(v) for v in np.unique(array)}
    return {int(v) for v in present_values(array)}


@dataclass(frozen=True)
class SegmentToWrite:
    """A segment for ``write_slicer_segmentation``: its voxels hold ``label_value`` in the one layer written."""

    label_value: int
    segment_id: str
    name: str
    color: tuple[float, float, float]
    tags: Mapping[str, str] = field(default_factory=dict)


def write_slicer_segmentation(path: str | os.PathLike, numbers: hd.Volume, segments: Sequence[SegmentToWrite]) -> None:
    """Write one layer of segment numbers (no overlaps) with Slicer's header; atomic (temporary name, then rename)."""
    path = Path(path)
    if not path.name.lower().endswith(SEG_NRRD_SUFFIX):
        raise SegNrrdError(f"{path}: a Slicer segmentation file must end in {SEG_NRRD_SUFFIX}")
    values = [segment.label_value for segment in segments]
    if len(set(values)) != len(values) or min(values, default=1) < 1:
        raise ValueError(f"{path}: segment label values must be distinct and >= 1, got {values}")
    dtype = np.uint8 if max(values, default=0) < 256 else np.uint16
    image = numbers.with_array(np.asarray(numbers.array, dtype=dtype)).to_simpleitk()
    boxes = sitk.LabelShapeStatisticsImageFilter()
    boxes.Execute(image)
    present = set(boxes.GetLabels())
    for index, segment in enumerate(segments):
        if segment.label_value not in present:
            raise ValueError(f"{path}: segment {segment.name!r} (label value {segment.label_value}) has no voxel")
        x, y, z, size_x, size_y, size_z = boxes.GetBoundingBox(segment.label_value)
        fields = {
            "ID": segment.segment_id, "Name": segment.name, "NameAutoGenerated": "0",
            "Color": " ".join(f"{c:.6f}" for c in segment.color), "ColorAutoGenerated": "0",
            "Extent": f"{x} {x + size_x - 1} {y} {y + size_y - 1} {z} {z + size_z - 1}",
            "LabelValue": str(segment.label_value), "Layer": "0",
            "Tags": "".join(f"{key}:{value}|" for key, value in segment.tags.items()),
        }
        for key, value in fields.items():
            image.SetMetaData(f"Segment{index}_{key}", value)
    image.SetMetaData("Segmentation_MasterRepresentation", BINARY_LABELMAP)  # the key before Slicer 5.4
    image.SetMetaData("Segmentation_SourceRepresentation", BINARY_LABELMAP)  # the key since
    image.SetMetaData("Segmentation_ContainedRepresentationNames", f"{BINARY_LABELMAP}|")
    image.SetMetaData("Segmentation_ReferenceImageExtentOffset", "0 0 0")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial{SEG_NRRD_SUFFIX}")
    try:
        sitk.WriteImage(image, str(partial), useCompression=True)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
