"""DICOM SEG (ours, dcmqi's, TotalSegmentator's, highdicom's) -> schema label map on the CT grid.

highdicom returns only the slice range the SEG stores (empty frames are
omitted by writers), so the result is padded back onto the full CT geometry
when the CT is given. Segments that are not bones of the schema are reported,
not silently merged; ``strict=True`` turns them into an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from labels.schema import BoneSchema, default_schema
from dicom_io.ct_series import CTSeries
from dicom_io.errors import DicomInputError
from dicom_io.geometry import describe_grid, match_grid
from dicom_io.segment_codes import SegmentInfo, resolve_segment
from dicom_io.vocabulary import vocabulary_of


class UnknownSegmentError(DicomInputError):
    """A segment whose codes and label match no structure of the bone schema (strict mode)."""


class SegGeometryError(DicomInputError):
    """The SEG does not belong to the given CT: other frame of reference, series or grid."""


class SegOverlapError(DicomInputError):
    """Bone segments overlap: they cannot become one label map."""


@dataclass(frozen=True)
class DecodedSeg:
    """A SEG as a schema label map plus what each of its segments became."""

    volume: hd.Volume  # uint16 schema ids
    segments: tuple[SegmentInfo, ...]
    sop_instance_uid: str
    series_instance_uid: str
    referenced_series_uids: tuple[str, ...]
    vocabulary: frozenset[str] | None = None  # what the source can label, as the SEG records it (dicom_io.vocabulary)

    @property
    def ignored(self) -> tuple[SegmentInfo, ...]:
        """Segments that are neither bones of the schema nor the LABELMAP background (segment 0)."""
        return tuple(s for s in self.segments if s.schema_name is None and s.number != 0)


def load_segmentation(seg: str | os.PathLike | Dataset | hd.seg.Segmentation) -> hd.seg.Segmentation:
    if isinstance(seg, hd.seg.Segmentation):
        return seg
    if isinstance(seg, Dataset):
        return hd.seg.Segmentation.from_dataset(seg, copy=False)
    try:
        return hd.seg.segread(seg)
    except (InvalidDicomError, AttributeError, ValueError, TypeError, KeyError) as error:
        raise DicomInputError(f"{seg}: not a readable DICOM SEG ({error})") from error


def read_seg(
    seg: str | os.PathLike | Dataset | hd.seg.Segmentation,
    ct: CTSeries | None = None,
    *,
    schema: BoneSchema | None = None,
    strict: bool = False,
) -> DecodedSeg:
    """Decode ``seg`` into schema ids, on the full grid of ``ct`` when given (else on the SEG's own extent)."""
    schema = schema or default_schema()
    seg = load_segmentation(seg)
    where = f"SEG {seg.SOPInstanceUID}"
    segments = _resolve_group_remainders(tuple(resolve_segment(item, schema) for item in seg.SegmentSequence), schema, where)
    if strict and (unresolved := [s for s in segments if s.schema_name is None and s.number != 0]):
        listed = "; ".join(f"segment {s.number} {s.label!r} ({s.type.scheme} {s.type.value} {s.type.meaning}): {s.reason}" for s in unresolved)
        raise UnknownSegmentError(f"{where}: segments not in the bone schema: {listed}")
    referenced = tuple(str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", []))
    if ct is not None:
        _check_belongs_to(seg, ct, referenced, where)

    mapped = {s.number: schema[s.schema_name].id for s in segments if s.schema_name is not None}
    numbers = _segment_number_volume(seg, sorted(mapped), where, ct)
    lut = np.zeros(max([0, *mapped, int(numbers.array.max(initial=0))]) + 1, dtype=np.uint16)
    for number, schema_id in mapped.items():
        lut[number] = schema_id
    volume = numbers.with_array(lut[numbers.array])
    if ct is not None:
        on_ct = match_grid(volume, ct.geometry)
        if on_ct is None:
            raise SegGeometryError(f"{where}: its frames ({describe_grid(volume)}) do not lie on the grid "
                                   f"({describe_grid(ct.geometry)}) of CT series {ct.series_instance_uid}")
        volume = on_ct
    return DecodedSeg(volume, segments, str(seg.SOPInstanceUID), str(seg.SeriesInstanceUID), referenced,
                      vocabulary_of(seg, schema))


def _check_belongs_to(seg: hd.seg.Segmentation, ct: CTSeries, referenced: tuple[str, ...], where: str) -> None:
    frame_of_reference = seg.get("FrameOfReferenceUID")
    if frame_of_reference != ct.frame_of_reference_uid:
        raise SegGeometryError(f"{where}: frame of reference {frame_of_reference} is not the CT's {ct.frame_of_reference_uid}")
    if referenced and ct.series_instance_uid not in referenced:
        raise SegGeometryError(f"{where}: references series {list(referenced)}, not CT series {ct.series_instance_uid}")


def _resolve_group_remainders(segments: tuple[SegmentInfo, ...], schema: BoneSchema, where: str) -> tuple[SegmentInfo, ...]:
    """A group segment next to segments of its own parts means "the rest of the group".

    TotalSegmentator v2 codes its ``sacrum`` (the sacrum without S1) with the
    sacrum's code next to a separate S1 segment; read literally it would claim
    the whole sacrum. When exactly one part of the group is not segmented on its
    own, the group segment becomes that part; otherwise the SEG is ambiguous.
    """
    named = {s.schema_name for s in segments if s.schema_name}
    resolved = []
    for segment in segments:
        parts = [d.name for d in schema.descendants(segment.schema_name)] if segment.schema_name else []
        if parts and named & set(parts):
            rest = [p for p in parts if schema[p].level == "bone" and p not in named]
            if len(rest) != 1:
                raise SegGeometryError(f"{where}: segment {segment.number} {segment.label!r} ({segment.schema_name}) overlaps segments of its own parts {sorted(named & set(parts))}")
            segment = replace(segment, schema_name=rest[0], reason=f"{segment.reason}; the rest of {segment.schema_name}")
        resolved.append(segment)
    return tuple(resolved)


def _segment_number_volume(seg: hd.seg.Segmentation, numbers: list[int], where: str, ct: CTSeries | None) -> hd.Volume:
    """Volume whose voxels hold segment numbers (0 = none) for the wanted segments."""
    if not numbers:
        geometry = ct.geometry if ct is not None else seg.get_volume_geometry()
        return geometry.with_array(np.zeros(geometry.spatial_shape, np.uint16))
    if seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL:
        return _fractional_as_numbers(seg, numbers, where)
    try:
        return seg.get_volume(segment_numbers=numbers, combine_segments=True, relabel=False, dtype=np.uint16)
    except (ValueError, RuntimeError) as error:
        if "overlap" in str(error).lower():
            raise SegOverlapError(f"{where}: bone segments {numbers} overlap; a bone label map needs disjoint segments") from error
        raise


def _fractional_as_numbers(seg: hd.seg.Segmentation, numbers: list[int], where: str) -> hd.Volume:
    """FRACTIONAL segments thresholded at 0.5 (probability or occupancy), combined without overlap."""
    combined = None
    for number in numbers:
        fraction = seg.get_volume(segment_numbers=[number], rescale_fractional=True, dtype=np.float32).squeeze_channel()
        if combined is None:
            combined = fraction.with_array(np.zeros(fraction.spatial_shape, np.uint16))
        inside = fraction.array >= 0.5
        if (combined.array[inside] != 0).any():
            raise SegOverlapError(f"{where}: fractional segment {number} overlaps another bone segment at >= 0.5")
        combined.array[inside] = number
    return combined
