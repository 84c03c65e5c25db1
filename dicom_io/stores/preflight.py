"""Before any work: can this run write where it was told to? A bad ``--out`` fails in a second, not after inference.

Each store checks itself (``check_writable``): a local folder is created if needed and written and removed
once; a GCS prefix must name a bucket that exists and that these credentials can write (one empty object is
written and removed); a DICOMweb server must answer a search with these credentials (writing would store an
instance, so it is not tried).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from dicom_io.stores.base import StoreError
from dicom_io.stores.redact import redact_url
from labels.errors import BoneHubInputError


class OutputNotWritableError(BoneHubInputError):
    """An output location (store, table or report folder) that this run cannot write; names it and why."""


def check_output_store(store) -> None:
    """Raise ``OutputNotWritableError`` unless ``store`` can be written."""
    try:
        store.check_writable()
    except StoreError as error:
        raise OutputNotWritableError(f"output store {redact_url(store.uri)}: {error}") from None


def check_local_folder(folder: str | os.PathLike, what: str) -> None:
    """``folder`` exists (or is created) and a file can be written in it and removed."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise OutputNotWritableError(f"{what} {path} is a file, not a folder")
    probe = path / f".bonehub-write-check-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OutputNotWritableError(f"{what} {path} cannot be written: {error.strerror or error}") from None
