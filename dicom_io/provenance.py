"""Who made a segmentation, and the deterministic UIDs that follow from it.

Output identity derives from (source series UID, source name, version,
augmentation, SEG type), so rerunning a job overwrites instead of duplicating and a
crashed run can resume by skipping outputs that already exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import uuid

from dicom_io.uids import validate_uid


@dataclass(frozen=True)
class SegmentationSource:
    """A segmentation source: a model (or precomputed result) under one input augmentation."""

    name: str  # e.g. "TotalSegmentator total"
    version: str  # e.g. "2.18.0"
    augmentation: str = "none"  # e.g. "rotate(5,0,0)"; recorded in the SEG
    algorithm_type: str = "AUTOMATIC"  # AUTOMATIC | SEMIAUTOMATIC | MANUAL
    vocabulary: frozenset[str] = frozenset()  # schema structures the source can label (dicom_io.vocabulary); empty: unknown

    def describe(self) -> str:
        """Human-readable one-liner used as SeriesDescription (LO, 64 chars)."""
        text = f"{self.name} {self.version}" + ("" if self.augmentation == "none" else f" [{self.augmentation}]")
        return text[:64]


_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "bonehub-segmentation")


def derived_uid(*parts: str) -> str:
    """A UID that is a pure function of ``parts``: a name-based (SHA-1) UUID under the 2.25 root (PS3.5 B.2).

    pydicom's ``generate_uid(prefix=None)`` ignores its entropy sources and is random, so it cannot be used here.
    """
    return f"2.25.{uuid.uuid5(_NAMESPACE, chr(31).join(str(p) for p in parts)).int}"


def segmentation_uids(source_series_uid: str, source: SegmentationSource, seg_type: str) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the SEG of this type for this series and source."""
    validate_uid(source_series_uid, "source SeriesInstanceUID")
    key = (source_series_uid, source.name, source.version, source.augmentation, seg_type)
    return derived_uid(*key, "series"), derived_uid(*key, "instance")
