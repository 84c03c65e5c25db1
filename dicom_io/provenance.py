"""Who made a segmentation, and the deterministic UIDs that follow from it.

Output identity derives from (source series UID, source name, version,
augmentation), so rerunning a job overwrites instead of duplicating and a
crashed run can resume by skipping outputs that already exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import generate_uid

from dicom_io.uids import validate_uid


@dataclass(frozen=True)
class SegmentationSource:
    """A segmentation source: a model (or precomputed result) under one input augmentation."""

    name: str  # e.g. "TotalSegmentator total"
    version: str  # e.g. "2.18.0"
    augmentation: str = "none"  # e.g. "rotate(5,0,0)"; recorded in the SEG
    algorithm_type: str = "AUTOMATIC"  # AUTOMATIC | SEMIAUTOMATIC | MANUAL

    def describe(self) -> str:
        """Human-readable one-liner used as SeriesDescription (LO, 64 chars)."""
        text = f"{self.name} {self.version}" + ("" if self.augmentation == "none" else f" [{self.augmentation}]")
        return text[:64]


def derived_uid(*parts: str) -> str:
    """A UID (2.25 form) that is a pure function of ``parts``: same inputs, same UID."""
    return generate_uid(prefix=None, entropy_srcs=[str(p) for p in parts])


def segmentation_uids(source_series_uid: str, source: SegmentationSource) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the SEG for this series and source."""
    validate_uid(source_series_uid, "source SeriesInstanceUID")
    key = (source_series_uid, source.name, source.version, source.augmentation)
    return derived_uid(*key, "series"), derived_uid(*key, "instance")
