"""What every store shares: the ``Store`` interface, its errors, and the checks on the UIDs that address an object.

Every object is addressed by (StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID); those UIDs become
paths, object keys and URLs, so each is validated before a store uses it.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol, Sequence, runtime_checkable

from pydicom import Dataset

from dicom_io.uids import validate_uid

DICOM_MEDIA_TYPE = "application/dicom"
DEFAULT_TIMEOUT_S = 60.0
SUFFIX = ".dcm"  # the file stores' name of an instance: <SOPInstanceUID>.dcm


class StoreError(RuntimeError):
    """A store operation failed; the message names the store URI."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached or used (connection, timeout, credentials, missing bucket)."""


class StoreWriteError(StoreError):
    """The store refused an object (the message names the SOP instance and the reason)."""


class StoreConflictError(StoreWriteError):
    """The server holds a different object under the same UIDs and will not overwrite it (HTTP 409).

    ``refused``: the SOP Instance UIDs the answer names as failed (all of the request's when it names none).
    """

    def __init__(self, message: str, refused: Sequence[str] = ()):
        super().__init__(message)
        self.refused = tuple(refused)


class InstanceNotFoundError(StoreError, LookupError):
    """No object with these UIDs in the store."""


class InstanceRef(NamedTuple):
    """Where one instance sits: enough for Stage 2/3 to ``get`` it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str


@runtime_checkable
class Store(Protocol):
    uri: str

    def put(self, ds: Dataset) -> str:
        """Store ``ds`` (replacing an object with the same UIDs); return its location URI."""

    def put_many(self, datasets: Sequence[Dataset]) -> list[str]:
        """Store several objects (one request per batch where the store has batches); their locations in order."""

    def exists(self, study_uid: str, series_uid: str, sop_uid: str) -> bool: ...

    def location(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """The URI ``put`` returns for this object, without touching the store."""

    def get(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset: ...

    def check_writable(self) -> None:
        """Raise ``StoreError`` (or ``OutputNotWritableError``) if a run could not write here; called before any work."""

    def list_instances(
        self, series_uid: str | None = None, modality: str | None = None, *, study_uid: str | None = None
    ) -> list[InstanceRef]:
        """Instances in the store, optionally of one series, one modality and/or one study, sorted."""


def instance_uids(ds: Dataset) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs of ``ds``, each validated (they become paths and URLs)."""
    return tuple(validate_uid(getattr(ds, keyword, None), f"{keyword} of the dataset to store")  # type: ignore[return-value]
                 for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))


def validate_key(study_uid: str, series_uid: str, sop_uid: str) -> None:
    """Refuse an object address whose UIDs are not valid."""
    validate_uid(study_uid, "StudyInstanceUID")
    validate_uid(series_uid, "SeriesInstanceUID")
    validate_uid(sop_uid, "SOPInstanceUID")


def validate_filters(study_uid: str | None, series_uid: str | None) -> None:
    """Refuse a ``list_instances`` filter UID that is not valid."""
    if study_uid is not None:
        validate_uid(study_uid, "StudyInstanceUID filter")
    if series_uid is not None:
        validate_uid(series_uid, "SeriesInstanceUID filter")


def matches(ref: InstanceRef, study_uid: str | None, series_uid: str | None, modality: str | None) -> bool:
    """Whether ``ref`` passes the ``list_instances`` filters (None: any)."""
    return ((study_uid is None or ref.study_uid == study_uid) and (series_uid is None or ref.series_uid == series_uid)
            and (modality is None or ref.modality == modality))


def network_reason(error: Exception) -> str:
    """A short cause for a network error ("[Errno 111] Connection refused"), without urllib3's nesting."""
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(error))
    return found.group(0).strip() if found else type(error).__name__
