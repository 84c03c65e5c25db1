"""Before any work: can this run write where it was told to? A bad ``--out`` fails in a second, not after inference.

Each store checks itself (``check_writable``): a local folder is created if needed and written and removed
once; a GCS prefix must name a bucket that exists and that these credentials can write (one empty object is
written and removed); a DICOMweb server must answer a search with these credentials (writing would store an
instance, so it is not tried).
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

from dicom_io.stores.base import StoreError
from dicom_io.stores.redact import redact_url
from labels.errors import BoneHubInputError

log = logging.getLogger("bonehub.preflight")
# a hidden temporary file of a write in progress, named with its writer's process id (LocalStore.put, results.blobs)
_TEMP_FILE = re.compile(r"^\..+\.(\d+)\.(?:[0-9a-f]{32}\.tmp|partial)$")


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


def remove_dead_temp_files(folder: str | os.PathLike) -> int:
    """Remove the temporary files under ``folder`` whose writer (a process on this machine) is gone; return how many.

    A killed run leaves its half-written copies behind; a running one keeps its own.
    """
    removed = 0
    for root, _, names in os.walk(folder):
        for name in names:
            match = _TEMP_FILE.match(name)
            if match and not _running(int(match.group(1))):
                Path(root, name).unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporary file(s) left in %s by runs that were killed", removed, folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
