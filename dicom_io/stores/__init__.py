"""Where the pipeline's DICOM objects (SEG, SR, CT series) live: a local folder, a GCS bucket or a DICOMweb server.

One small interface, three stores (``open_store`` picks one from a URI):

- ``file:///path`` or a plain path: ``LocalStore``
- ``gs://bucket/prefix``: ``GcsStore`` (google-cloud-storage; honours ``STORAGE_EMULATOR_HOST``)
- ``http(s)://.../dicom-web`` or ``dicomweb+http(s)://...``: ``DicomWebStore`` (STOW-RS / QIDO-RS / WADO-RS)

Every object is addressed by (StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID), and the file
stores lay it out the same way DICOMweb does: ``<root>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``.
Output UIDs are deterministic (``dicom_io.provenance``), so a rerun writes to the same key: it
overwrites instead of duplicating, and a crashed run resumes by asking ``exists`` before it
recomputes. The same tree is what OHIF and 3D Slicer expect (one folder per series), and a
folder or bucket can be pushed to a DICOMweb server unchanged.

Errors: a store that cannot be reached or used (connection refused, timeout, no credentials,
missing bucket, HTTP 401/403) raises ``StoreUnavailableError`` naming the store URI; a write the
server refuses raises ``StoreWriteError`` naming the SOP instance and the HTTP status (a DICOMweb
server that will not overwrite a changed copy, HTTP 409, gets its copy deleted and the new one
stored: ``DicomWebStore._stow``); a missing object raises ``InstanceNotFoundError``. Logs name UIDs and store URIs only, never patient data
or tokens.

The package's modules: ``base`` (the interface, its errors, UID checks), ``local``, ``gcs``, ``dicomweb``
(with ``retry``: which answers are retried and how, and ``stow``: STOW-RS batch limits and failure
reasons), and ``uri`` (``open_store``).
"""

from dicom_io.stores.base import (
    DEFAULT_TIMEOUT_S,
    DICOM_MEDIA_TYPE,
    InstanceNotFoundError,
    InstanceRef,
    Store,
    StoreConflictError,
    StoreError,
    StoreUnavailableError,
    StoreWriteError,
)
from dicom_io.stores.dicomweb import DicomWebStore
from dicom_io.stores.gcs import GcsStore, gcs_client
from dicom_io.stores.local import LocalStore
from dicom_io.stores.retry import RETRIED_STATUSES
from dicom_io.stores.stow import STOW_MAX_BYTES, STOW_MAX_INSTANCES
from dicom_io.stores.uri import open_store

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DICOM_MEDIA_TYPE",
    "RETRIED_STATUSES",
    "STOW_MAX_BYTES",
    "STOW_MAX_INSTANCES",
    "DicomWebStore",
    "GcsStore",
    "InstanceNotFoundError",
    "InstanceRef",
    "LocalStore",
    "Store",
    "StoreConflictError",
    "StoreError",
    "StoreUnavailableError",
    "StoreWriteError",
    "gcs_client",
    "open_store",
]
