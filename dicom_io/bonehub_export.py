"""A decoded SEG as a BoneHub layout v2 mask (``.seg.nrrd``), with an honest status per label.

``bonehub seg decode SEG --format bonehub-seg-nrrd`` hands our results to BoneHub in
their own format: each schema structure becomes the BoneHub v2 value of the whole
structure (``labels.bonehub_labels.bonehub_value``), and each label a status saying no
more than the SEG does:

- the SEG records the structure's BoneHub statuses (``bonehub_status=``, a BoneHub mask
  that went through the pipeline): that status; several (labels merged into one
  structure): the lowest code, the least authority any of them had;
- else the segment was made or corrected by a person (Segment Algorithm Type MANUAL or
  SEMIAUTOMATIC, e.g. a review correction): 20, BoneHub human-edited, not reviewed;
- else (a model's or the QC consensus's segment): 10, BoneHub automatic, not reviewed.
  QC's verdict lives in the QC SR, not in the SEG, so no segment claims "automatic
  check passed" (11) unless its ``bonehub_status`` says so.
"""

from __future__ import annotations

import os

import highdicom as hd

from dicom_io.bonehub_provenance import statuses_of
from dicom_io.bonehub_seg_nrrd import BoneHubMaskError, BoneHubSegment, write_bonehub_seg_nrrd
from dicom_io.seg_reader import DecodedSeg
from labels.bonehub_labels import bonehub_label_set, bonehub_lookup
from labels.bonehub_status import BoneHubStatus, StatusOrigin, StatusReview
from labels.errors import BoneHubInputError
from labels.slabs import present_values
from labels.schema import BoneSchema, default_schema

AUTOMATIC = BoneHubStatus(StatusOrigin.BONEHUB_AUTOMATIC, StatusReview.NOT_REVIEWED)  # 10
HUMAN_EDITED = BoneHubStatus(StatusOrigin.BONEHUB_HUMAN, StatusReview.NOT_REVIEWED)  # 20


def segment_status(seg: hd.seg.Segmentation, number: int) -> BoneHubStatus:
    """The BoneHub status one segment of ``seg`` supports (see the module docstring)."""
    recorded = statuses_of(seg).get(number)
    if recorded:
        return min(recorded, key=lambda status: status.code)
    item = next(item for item in seg.SegmentSequence if int(item.SegmentNumber) == number)
    return HUMAN_EDITED if item.get("SegmentAlgorithmType") in ("MANUAL", "SEMIAUTOMATIC") else AUTOMATIC


def write_seg_as_bonehub(seg: hd.seg.Segmentation, decoded: DecodedSeg, path: str | os.PathLike,
                         schema: BoneSchema | None = None) -> list[BoneHubSegment]:
    """Write ``decoded`` (``read_seg(seg, ...)``) as a BoneHub ``.seg.nrrd``; returns the labels written.

    Every structure must have a BoneHub v2 value; those without one are named together, and nothing is written.
    """
    schema = schema or default_schema()
    ids = [int(v) for v in present_values(decoded.volume.array) if v != 0]
    try:
        lut = bonehub_lookup(ids, schema)
    except BoneHubInputError as error:
        raise BoneHubMaskError(f"SEG {seg.SOPInstanceUID}: {error}, so no BoneHub mask is written to {path}") from None
    values = {i: int(lut[i]) for i in ids}
    number_of = {s.schema_name: s.number for s in decoded.segments if s.schema_name is not None}
    statuses = {values[i]: segment_status(seg, number_of[schema[i].name]) for i in ids}
    colors = {values[i]: tuple(c / 255 for c in schema[i].color) for i in ids}
    bonehub = decoded.volume.with_array(lut[decoded.volume.array])
    return write_bonehub_seg_nrrd(path, bonehub, bonehub_label_set("v2"), statuses, colors)
