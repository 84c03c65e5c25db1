"""Which store a URI names: a plain path or ``file://`` URI, ``gs://bucket/prefix``, or a DICOMweb base URL."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from dicom_io.stores.base import Store
from dicom_io.stores.dicomweb import DicomWebStore
from dicom_io.stores.gcs import GcsStore
from dicom_io.stores.local import LocalStore
from dicom_io.stores.redact import redact_url
from labels.errors import BoneHubInputError

_DICOMWEB_SCHEMES = ("http", "https", "dicomweb+http", "dicomweb+https")


class StoreUriError(BoneHubInputError, ValueError):
    """A URI that names no store this project can use (unknown scheme, remote file URI, misplaced option)."""


def open_store(uri: str | os.PathLike, *, timeout: float | None = None, token_env: str | None = None) -> Store:
    """The store a URI names: a plain path or ``file://`` URI, ``gs://bucket/prefix``, or a DICOMweb base URL.

    ``timeout`` (seconds) bounds each network request. ``token_env`` names an environment variable
    that holds a bearer token for a DICOMweb server (it can also be given in the URI as
    ``?token_env=NAME``); the token itself never appears in a URI, a log or a message.
    """
    text = os.fspath(uri)
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if token_env is not None and scheme not in _DICOMWEB_SCHEMES:
        raise StoreUriError(f"token_env is only used by DICOMweb stores, not by {redact_url(text)!r}")
    if scheme in ("", "file"):
        return LocalStore(_local_path(text) if scheme == "file" else Path(text))
    if scheme == "gs":
        return GcsStore(text, timeout=timeout)
    if scheme in _DICOMWEB_SCHEMES:
        return DicomWebStore(text, timeout=timeout, token_env=token_env)
    raise StoreUriError(
        f"unsupported store URI scheme {scheme!r} in {redact_url(text)!r}: use a path or file://, gs://bucket/prefix, "
        "or a DICOMweb base URL (http(s)://... or dicomweb+https://...)"
    )


def _local_path(file_uri: str) -> Path:
    parts = urlsplit(file_uri)
    if parts.netloc not in ("", "localhost"):
        raise StoreUriError(f"file URI {file_uri!r} names a remote host {parts.netloc!r}; only local paths are supported")
    return Path(url2pathname(parts.path))
