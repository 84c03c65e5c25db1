"""A BoneHub label's status carried in the SEG segment it became, so QC and the dataset export see it.

A BoneHub-Dataset mask (``models.bonehub_dataset``) is a vote whose authority varies
per label: a source dataset's expert-accepted ground truth (33) is not an unchecked
BoneHub automatic result (10). Each segment of its SEG records the statuses of the
BoneHub labels it was made from in the segment's Algorithm Parameters (0066,0032),
``bonehub_status=<codes>`` beside ``augmentation=`` and ``vocabulary=``
(``dicom_io.vocabulary``): a standard attribute, so it survives every store. Several
labels can become one structure (a bone and its cortical shell, a side-less label split
by side): their distinct codes are joined with ``+`` (``bonehub_status=10+33``). A
structure whose labels have no known status gets no parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pydicom.dataset import Dataset

from dicom_io.segment_codes import resolve_segment
from labels.bonehub_status import BoneHubStatus
from labels.errors import BoneHubInputError
from labels.schema import BoneSchema, default_schema

PARAMETER = "bonehub_status"
_IN_PARAMETERS = re.compile(rf"(?:^|,)\s*{PARAMETER}=([0-9+]*)")


def encode_statuses(codes: Sequence[int]) -> str:
    """Distinct codes, sorted, joined with ``+`` (``[33, 10, 33]`` -> ``"10+33"``)."""
    return "+".join(str(code) for code in sorted(set(int(code) for code in codes)))


def stamp_statuses(seg: Dataset, statuses: Mapping[str, Sequence[int]], schema: BoneSchema | None = None) -> int:
    """Add ``bonehub_status=`` to each segment of ``seg`` whose schema structure has statuses; returns how many.

    ``statuses``: schema name -> the status codes of the BoneHub labels it was made from.
    Segments without an algorithm (MANUAL) and structures without codes are left as they are.
    """
    schema = schema or default_schema()
    stamped = 0
    for item in seg.get("SegmentSequence", []):
        name = resolve_segment(item, schema).schema_name
        codes = statuses.get(name, ()) if name is not None else ()
        for algorithm in item.get("SegmentationAlgorithmIdentificationSequence", []) if codes else []:
            existing = str(algorithm.get("AlgorithmParameters", ""))
            if _IN_PARAMETERS.search(existing):
                raise ValueError(f"segment {item.SegmentNumber} of SEG {seg.get('SOPInstanceUID', '?')} already "
                                 f"records {PARAMETER}")
            algorithm.AlgorithmParameters = ",".join(p for p in (existing, f"{PARAMETER}={encode_statuses(codes)}") if p)
            stamped += 1
    return stamped


def statuses_of(seg: Dataset) -> dict[int, tuple[BoneHubStatus, ...]]:
    """{segment number: the BoneHub statuses it records}, for the segments that record any.

    A malformed code is a ``BoneHubInputError`` naming the SEG and the segment.
    """
    found: dict[int, tuple[BoneHubStatus, ...]] = {}
    for item in seg.get("SegmentSequence", []):
        for algorithm in item.get("SegmentationAlgorithmIdentificationSequence", []):
            match = _IN_PARAMETERS.search(str(algorithm.get("AlgorithmParameters", "")))
            if match is None:
                continue
            where = f"SEG {seg.get('SOPInstanceUID', '?')} segment {item.SegmentNumber}"
            try:
                found[int(item.SegmentNumber)] = tuple(BoneHubStatus.parse(code) for code in match.group(1).split("+"))
            except BoneHubInputError as error:
                raise BoneHubInputError(f"{where}: {PARAMETER}: {error}") from None
    return found
