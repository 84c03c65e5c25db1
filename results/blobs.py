"""Whole objects by URI, in a local folder or on GCS: the run's tables, reports and staged series.

Writes replace an object whole (a temporary file renamed locally; one upload on GCS, atomic per
object), so a reader never sees half of one, and a step that dies mid-write leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path


def read_bytes(uri: str) -> bytes | None:
    """The object at ``uri`` (local path or ``gs://``), or None when there is none."""
    if uri.startswith("gs://"):
        blob = _gcs_blob(uri)
        return blob.download_as_bytes() if blob.exists() else None
    path = Path(uri)
    return path.read_bytes() if path.is_file() else None


def write_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    if uri.startswith("gs://"):
        _gcs_blob(uri).upload_from_string(data, content_type=content_type)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except BaseException:  # a full disk, a kill: the object keeps its old version and no partial copy stays
        partial.unlink(missing_ok=True)
        raise


def read_versioned(uri: str) -> tuple[bytes | None, int]:
    """The object at ``uri`` and its GCS generation (0: no object; always 0 for a local file).

    With ``write_if_unchanged`` this makes a read-change-write that fails instead of
    overwriting a concurrent writer's object.
    """
    if not uri.startswith("gs://"):
        return read_bytes(uri), 0
    from google.api_core.exceptions import NotFound, PreconditionFailed

    blob = _gcs_blob(uri)
    while True:  # a writer that replaces the object between the two calls makes the download fail: read again
        try:
            blob.reload()
            return blob.download_as_bytes(if_generation_match=blob.generation), int(blob.generation or 0)
        except NotFound:
            return None, 0
        except PreconditionFailed:
            continue


def write_if_unchanged(uri: str, data: bytes, generation: int, content_type: str = "application/octet-stream") -> bool:
    """Write ``uri`` only if its GCS generation is still ``generation`` (0: only if absent); False if it changed.

    A local file is written unconditionally: local callers hold a lock instead (``results.table_io``).
    """
    if not uri.startswith("gs://"):
        write_bytes(uri, data, content_type)
        return True
    from google.api_core.exceptions import NotFound, PreconditionFailed

    try:
        _gcs_blob(uri).upload_from_string(data, content_type=content_type, if_generation_match=generation)
    except (PreconditionFailed, NotFound):
        return False
    return True


def exists(uri: str) -> bool:
    return _gcs_blob(uri).exists() if uri.startswith("gs://") else Path(uri).is_file()


def delete(uri: str) -> None:
    """Remove the object at ``uri``; one already gone is no error (a retried step deletes twice)."""
    if uri.startswith("gs://"):
        from google.api_core.exceptions import NotFound

        try:
            _gcs_blob(uri).delete()
        except NotFound:
            pass
        return
    Path(uri).unlink(missing_ok=True)


def list_uris(prefix: str) -> list[str]:
    """Every object under the folder or ``gs://`` prefix ``prefix``, sorted (none when it does not exist)."""
    if prefix.startswith("gs://"):
        bucket, _, name = prefix.removeprefix("gs://").partition("/")
        from dicom_io.stores import gcs_client

        return sorted(f"gs://{bucket}/{blob.name}" for blob in gcs_client().list_blobs(bucket, prefix=name.rstrip("/") + "/"))
    root = Path(prefix)
    return sorted(str(path) for path in root.rglob("*") if path.is_file()) if root.is_dir() else []


def join(root: str, *parts: str) -> str:
    """``root/part/...`` for a folder or a ``gs://`` prefix."""
    return "/".join([root.rstrip("/"), *parts]) if root.startswith("gs://") else str(Path(root, *parts))


def _gcs_blob(uri: str):
    from dicom_io.stores import gcs_client

    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not bucket or not name:
        raise ValueError(f"URI {uri!r} is not of the form gs://bucket/path/name")
    return gcs_client().bucket(bucket).blob(name)
