"""One IDC series as the index describes it, checked before its UID becomes a folder name or its URL an s5cmd argument."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dicom_io.uids import validate_uid

# IDC's layout: one folder per series (its CRDC UUID), one object per instance.
# The index stores the folder with a trailing wildcard, which is what s5cmd cp needs.
_SERIES_URL = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,62}/[^*?\s]+/\*")


@dataclass(frozen=True, slots=True)
class IdcSeries:
    """One series as the IDC index describes it: what is needed to fetch and check it.

    PatientID and other patient attributes are deliberately absent: selection
    may filter on PatientID, but only UIDs and storage locations travel on.
    ``series_aws_url`` is the index's ``s3://bucket/<series folder>/*``.
    """

    series_uid: str
    study_uid: str
    collection_id: str
    modality: str
    instance_count: int
    series_aws_url: str
    series_size_mb: float

    def __post_init__(self) -> None:
        # Checked here because the UID becomes a folder name and the URL an
        # s5cmd argument: a bad value must fail before either is used.
        validate_uid(self.series_uid, "IDC SeriesInstanceUID")
        validate_uid(self.study_uid, f"IDC StudyInstanceUID of series {self.series_uid}")
        if not _SERIES_URL.fullmatch(self.series_aws_url):
            raise ValueError(
                f"series {self.series_uid}: bucket URL {self.series_aws_url!r} is not of the "
                "form s3://<bucket>/<series folder>/*"
            )
        if self.instance_count < 1:
            raise ValueError(f"series {self.series_uid}: instance_count must be >= 1, got {self.instance_count}")
