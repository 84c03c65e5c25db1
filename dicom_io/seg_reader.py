"""DICOM SEG (ours, dcmqi's, TotalSegmentator's, highdicom's) -> schema label map on the CT grid.

highdicom returns only the slice range the SEG stores (empty frames are
omitted by writers), so the result is padded back onto the full CT geometry
when the CT is given. Segments that are not bones of the schema are reported,
not silently merged; ``strict=True`` turns them into an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from labels.schema import BoneSchema, default_schema
from dicom_io.ct_series import CTSeries
from dicom_io.errors import DicomInputError
from dicom_io.segment_codes import SegmentInfo, resolve_segment


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
    segments = tuple(resolve_segment(item, schema) for item in seg.SegmentSequence)
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
        try:
            volume = volume.match_geometry(ct.geometry)
        except (ValueError, RuntimeError) as error:
            raise SegGeometryError(f"{where}: its grid does not match CT series {ct.series_instance_uid} ({error})") from error
    return DecodedSeg(volume, segments, str(seg.SOPInstanceUID), str(seg.SeriesInstanceUID), referenced)


def _check_belongs_to(seg: hd.seg.Segmentation, ct: CTSeries, referenced: tuple[str, ...], where: str) -> None:
    frame_of_reference = seg.get("FrameOfReferenceUID")
    if frame_of_reference != ct.frame_of_reference_uid:
        raise SegGeometryError(f"{where}: frame of reference {frame_of_reference} is not the CT's {ct.frame_of_reference_uid}")
    if referenced and ct.series_instance_uid not in referenced:
        raise SegGeometryError(f"{where}: references series {list(referenced)}, not CT series {ct.series_instance_uid}")


def _segment_number_volume(seg: hd.seg.Segmentation, numbers: list[int], where: str, ct: CTSeries | None) -> hd.Volume:
    """Volume whose voxels hold segment numbers (0 = none) for the wanted segments."""
    if not numbers:
        geometry = ct.geometry if ct is not None else seg.get_volume_geometry()
        return geometry.with_array(np.zeros(geometry.spatial_shape, np.uint16))
    try:
        return seg.get_volume(segment_numbers=numbers, combine_segments=True, relabel=False, dtype=np.uint16)
    except (ValueError, RuntimeError) as error:
        if "overlap" in str(error).lower():
            raise SegOverlapError(f"{where}: bone segments {numbers} overlap; a bone label map needs disjoint segments") from error
        raise
