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
"""

from __future__ import annotations

import io
import logging
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple, Protocol, Sequence, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from urllib.request import url2pathname

import pydicom
from pydicom import Dataset
from urllib3.util.retry import Retry

from dicom_io.uids import validate_uid

logger = logging.getLogger(__name__)

DICOM_MEDIA_TYPE = "application/dicom"
DEFAULT_TIMEOUT_S = 60.0
_SUFFIX = ".dcm"


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

    def list_instances(
        self, series_uid: str | None = None, modality: str | None = None, *, study_uid: str | None = None
    ) -> list[InstanceRef]:
        """Instances in the store, optionally of one series, one modality and/or one study, sorted."""


def open_store(uri: str | os.PathLike, *, timeout: float | None = None, token_env: str | None = None) -> Store:
    """The store a URI names: a plain path or ``file://`` URI, ``gs://bucket/prefix``, or a DICOMweb base URL.

    ``timeout`` (seconds) bounds each network request. ``token_env`` names an environment variable
    that holds a bearer token for a DICOMweb server (it can also be given in the URI as
    ``?token_env=NAME``); the token itself never appears in a URI, a log or a message.
    """
    text = os.fspath(uri)
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if token_env is not None and scheme not in ("http", "https", "dicomweb+http", "dicomweb+https"):
        raise ValueError(f"token_env is only used by DICOMweb stores, not by {text!r}")
    if scheme in ("", "file"):
        return LocalStore(_local_path(text) if scheme == "file" else Path(text))
    if scheme == "gs":
        return GcsStore(text, timeout=timeout)
    if scheme in ("http", "https", "dicomweb+http", "dicomweb+https"):
        return DicomWebStore(text, timeout=timeout, token_env=token_env)
    raise ValueError(
        f"unsupported store URI scheme {scheme!r} in {text!r}: use a path or file://, gs://bucket/prefix, "
        "or a DICOMweb base URL (http(s)://... or dicomweb+https://...)"
    )


def _local_path(file_uri: str) -> Path:
    parts = urlsplit(file_uri)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file URI {file_uri!r} names a remote host {parts.netloc!r}; only local paths are supported")
    return Path(url2pathname(parts.path))


def _instance_uids(ds: Dataset) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs of ``ds``, each validated (they become paths and URLs)."""
    return tuple(validate_uid(getattr(ds, keyword, None), f"{keyword} of the dataset to store")  # type: ignore[return-value]
                 for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))


def _validate_key(study_uid: str, series_uid: str, sop_uid: str) -> None:
    validate_uid(study_uid, "StudyInstanceUID")
    validate_uid(series_uid, "SeriesInstanceUID")
    validate_uid(sop_uid, "SOPInstanceUID")


def _encode(ds: Dataset) -> bytes:
    with io.BytesIO() as buffer:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()


def _validate_filters(study_uid: str | None, series_uid: str | None) -> None:
    if study_uid is not None:
        validate_uid(study_uid, "StudyInstanceUID filter")
    if series_uid is not None:
        validate_uid(series_uid, "SeriesInstanceUID filter")


def _matches(ref: InstanceRef, study_uid: str | None, series_uid: str | None, modality: str | None) -> bool:
    return ((study_uid is None or ref.study_uid == study_uid) and (series_uid is None or ref.series_uid == series_uid)
            and (modality is None or ref.modality == modality))


# --------------------------------------------------------------------------------------------- local folder


class LocalStore:
    """``<root>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``; written to a temporary name and renamed, so a crash
    never leaves a partial ``.dcm`` that ``exists`` would report."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({self.uri!r})"

    def _path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        _validate_key(study_uid, series_uid, sop_uid)
        return self.root / study_uid / series_uid / f"{sop_uid}{_SUFFIX}"

    def put(self, ds: Dataset) -> str:
        path = self._path(*_instance_uids(ds))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # hidden: never listed, never `exists`
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            with os.fdopen(fd, "wb") as f:
                pydicom.dcmwrite(f, ds, enforce_file_format=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logger.debug("stored SOP instance %s at %s", path.stem, path)
        return path.as_uri()

    def put_many(self, datasets: Sequence[Dataset]) -> list[str]:
        return [self.put(ds) for ds in datasets]

    def exists(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        return self._path(study_uid, series_uid, sop_uid).is_file()

    def location(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return self._path(study_uid, series_uid, sop_uid).as_uri()

    def get(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        path = self._path(study_uid, series_uid, sop_uid)
        try:
            return pydicom.dcmread(path)
        except FileNotFoundError:
            raise InstanceNotFoundError(f"no SOP instance {sop_uid} of series {series_uid} in {self.uri}") from None

    def list_instances(
        self, series_uid: str | None = None, modality: str | None = None, *, study_uid: str | None = None
    ) -> list[InstanceRef]:
        _validate_filters(study_uid, series_uid)
        studies = [self.root / study_uid] if study_uid else self._subdirs(self.root)
        refs = []
        for study_dir in studies:
            series_dirs = [study_dir / series_uid] if series_uid else self._subdirs(study_dir)
            for series_dir in series_dirs:
                if not series_dir.is_dir():
                    continue
                for path in sorted(series_dir.glob(f"[!.]*{_SUFFIX}")):
                    header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
                    ref = InstanceRef(study_dir.name, series_dir.name, path.name[: -len(_SUFFIX)], str(header.get("Modality", "")))
                    if _matches(ref, None, None, modality):
                        refs.append(ref)
        return sorted(refs)

    @staticmethod
    def _subdirs(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


# --------------------------------------------------------------------------------------------- Google Cloud Storage


def gcs_client():
    """A google-cloud-storage client: default credentials, or anonymous against ``STORAGE_EMULATOR_HOST``."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "bonehub-local"),
                              credentials=AnonymousCredentials())
    return storage.Client()


class GcsStore:
    """``gs://bucket/prefix/<StudyUID>/<SeriesUID>/<SOPUID>.dcm`` with content type ``application/dicom``.

    The modality is kept in the object's custom metadata so listing needs no downloads. With
    ``STORAGE_EMULATOR_HOST`` set (tests, local runs) the client uses anonymous credentials;
    otherwise Application Default Credentials. The client is created on first use. ``timeout``
    bounds each operation, retries of transient errors included.
    """

    def __init__(self, uri: str, *, timeout: float | None = None):
        parts = urlsplit(uri)
        if parts.scheme != "gs" or not parts.netloc:
            raise ValueError(f"not a GCS URI (gs://bucket/prefix): {uri!r}")
        self.bucket_name = parts.netloc
        self.prefix = parts.path.strip("/")
        self.uri = f"gs://{self.bucket_name}/{self.prefix}".rstrip("/")
        self.timeout = timeout or DEFAULT_TIMEOUT_S
        self._bucket = None

    def __repr__(self) -> str:
        return f"GcsStore({self.uri!r})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_bucket": None}  # clients do not pickle; workers reconnect

    def _key(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        _validate_key(study_uid, series_uid, sop_uid)
        return "/".join(p for p in (self.prefix, study_uid, series_uid, f"{sop_uid}{_SUFFIX}") if p)

    def _get_bucket(self):
        if self._bucket is None:
            with self._errors("connect"):
                self._bucket = gcs_client().bucket(self.bucket_name)
        return self._bucket

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        import google.auth.exceptions
        import requests
        from google.api_core import exceptions as gexc

        try:
            yield
        except google.auth.exceptions.DefaultCredentialsError:
            raise StoreUnavailableError(f"no Google credentials to {action} {self.uri}: run `gcloud auth application-default login` "
                                        "or set STORAGE_EMULATOR_HOST for an emulator") from None
        except (gexc.Unauthorized, gexc.Forbidden) as e:
            raise StoreUnavailableError(f"not allowed to {action} {self.uri}: HTTP {e.code}") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, gexc.RetryError) as e:
            raise StoreUnavailableError(f"cannot reach {self.uri} to {action}: {_reason(e)}") from None

    def _retry(self):
        """The library's retry policy (transient errors, backoff), its total time bounded by ``timeout``.

        The same key always gets the same bytes, so retrying an upload is safe.
        """
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.timeout)

    def _bucket_missing(self, action: str) -> StoreUnavailableError:
        return StoreUnavailableError(f"cannot {action} {self.uri}: bucket {self.bucket_name!r} does not exist")

    def put(self, ds: Dataset) -> str:
        from google.api_core import exceptions as gexc

        study, series, sop = _instance_uids(ds)
        blob = self._get_bucket().blob(self._key(study, series, sop))
        blob.metadata = {"modality": str(ds.get("Modality", ""))}
        with self._errors("write to"):
            try:
                blob.upload_from_string(_encode(ds), content_type=DICOM_MEDIA_TYPE, timeout=self.timeout, retry=self._retry())
            except gexc.NotFound:
                raise self._bucket_missing("write to") from None
            except (gexc.Unauthorized, gexc.Forbidden):
                raise
            except gexc.GoogleAPICallError as e:
                raise StoreWriteError(f"upload of SOP instance {sop} to {self.uri} failed: HTTP {e.code} {e.message}") from None
        logger.debug("stored SOP instance %s at gs://%s/%s", sop, self.bucket_name, blob.name)
        return f"gs://{self.bucket_name}/{blob.name}"

    def location(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"gs://{self.bucket_name}/{self._key(study_uid, series_uid, sop_uid)}"

    def put_many(self, datasets: Sequence[Dataset]) -> list[str]:
        return [self.put(ds) for ds in datasets]

    def exists(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        blob = self._get_bucket().blob(self._key(study_uid, series_uid, sop_uid))
        with self._errors("read"):
            return blob.exists(timeout=self.timeout, retry=self._retry())

    def get(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        from google.api_core import exceptions as gexc

        blob = self._get_bucket().blob(self._key(study_uid, series_uid, sop_uid))
        with self._errors("read"):
            try:
                data = blob.download_as_bytes(timeout=self.timeout, retry=self._retry())
            except gexc.NotFound:
                raise InstanceNotFoundError(f"no SOP instance {sop_uid} of series {series_uid} in {self.uri}") from None
        return pydicom.dcmread(io.BytesIO(data))

    def list_instances(
        self, series_uid: str | None = None, modality: str | None = None, *, study_uid: str | None = None
    ) -> list[InstanceRef]:
        from google.api_core import exceptions as gexc

        _validate_filters(study_uid, series_uid)
        base = f"{self.prefix}/" if self.prefix else ""
        prefix = base
        if study_uid:
            prefix += study_uid + "/" + (series_uid + "/" if series_uid else "")
        bucket = self._get_bucket()
        refs = []
        with self._errors("list"):
            try:
                for blob in bucket.client.list_blobs(bucket, prefix=prefix, timeout=self.timeout, retry=self._retry()):
                    parts = blob.name[len(base):].split("/")
                    if len(parts) != 3 or not parts[2].endswith(_SUFFIX) or parts[2].startswith("."):
                        continue
                    found = (blob.metadata or {}).get("modality")
                    if found is None:  # written by another tool: read its header
                        found = str(pydicom.dcmread(io.BytesIO(blob.download_as_bytes(timeout=self.timeout)),
                                                    stop_before_pixels=True).get("Modality", ""))
                    ref = InstanceRef(parts[0], parts[1], parts[2][: -len(_SUFFIX)], found)
                    if _matches(ref, study_uid, series_uid, modality):
                        refs.append(ref)
            except gexc.NotFound:
                raise self._bucket_missing("list") from None
        return sorted(refs)


# --------------------------------------------------------------------------------------------- DICOMweb


_TAG_STUDY, _TAG_SERIES, _TAG_SOP, _TAG_MODALITY = "0020000D", "0020000E", "00080018", "00080060"

#: Answers that mean "try later": retried with backoff (and the server's Retry-After), then StoreUnavailableError.
RETRIED_STATUSES = (429, 500, 502, 503, 504)
#: ``put_many`` batch limits: small enough for a proxy's or the Healthcare API's request size, large
#: enough that a worklist of SEGs goes in a few requests.
STOW_MAX_INSTANCES = 50
STOW_MAX_BYTES = 64 << 20


class _CappedRetry(Retry):
    """urllib3's Retry, with the server's Retry-After capped at ``backoff_max`` so no answer can park a worker.

    A call then ends after ``retries + 1`` attempts of at most ``timeout`` each and ``retries`` waits of at
    most ``backoff_max`` each, whatever the server says.
    """

    def get_retry_after(self, response) -> float | None:
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, self.backoff_max)


class DicomWebStore:
    """A DICOMweb server (Orthanc, Google Cloud Healthcare API, ...): STOW-RS to put, QIDO-RS to find, WADO-RS to get.

    Authentication: a bearer token read from the environment variable ``token_env`` (named in the URI
    as ``?token_env=NAME`` or passed to ``open_store``); for ``healthcare.googleapis.com`` without a
    token, Application Default Credentials through dicomweb-client's GCP session helper
    (``dicomweb-client[gcp]``). Objects are retrieved in the transfer syntax they were stored in.
    """

    def __init__(self, uri: str, *, timeout: float | None = None, token_env: str | None = None, retries: int = 4,
                 backoff_s: float = 1.0, max_wait_s: float = 30.0):
        if retries < 0 or backoff_s < 0 or max_wait_s <= 0:
            raise ValueError(f"retries and backoff_s must be >= 0 and max_wait_s > 0, not {retries}, {backoff_s}, {max_wait_s}")
        parts = urlsplit(uri)
        scheme = parts.scheme.lower().removeprefix("dicomweb+")
        if scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not a DICOMweb URL (http(s)://host/path or dicomweb+https://...): {uri!r}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        token_envs = [v for k, v in query if k == "token_env"]
        self.token_env = token_env or (token_envs[-1] if token_envs else None)
        rest = urlencode([(k, v) for k, v in query if k != "token_env"])
        self.url = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), rest, ""))
        self.uri = self.url + (("&" if rest else "?") + urlencode({"token_env": self.token_env}) if self.token_env else "")
        self.timeout = timeout or DEFAULT_TIMEOUT_S
        self.retries, self.backoff_s, self.max_wait_s = retries, backoff_s, max_wait_s
        self._client = None

    def __repr__(self) -> str:
        return f"DicomWebStore({self.uri!r})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    def _get_client(self):
        if self._client is None:
            import requests
            from dicomweb_client import DICOMwebClient
            from requests.adapters import HTTPAdapter

            if self.token_env:
                token = os.environ.get(self.token_env)
                if not token:
                    raise StoreUnavailableError(f"environment variable {self.token_env} (bearer token for {self.uri}) is not set")
                session = requests.Session()
                session.headers["Authorization"] = f"Bearer {token}"
            elif urlsplit(self.url).hostname == "healthcare.googleapis.com":
                try:
                    from dicomweb_client.ext.gcp.session_utils import create_session_from_gcp_credentials
                except ImportError:
                    raise StoreUnavailableError(f"{self.uri} is a Google Cloud Healthcare API store: install "
                                                "`dicomweb-client[gcp]` or pass token_env") from None
                with self._errors("authenticate to"):
                    session = create_session_from_gcp_credentials()
            else:
                session = requests.Session()
            # Retries live in the session: only answers that say "try later" (429, 5xx) are retried, with
            # backoff and Retry-After; a refused or unresolvable connection fails at once (dicomweb-client's own
            # retrying would wait about 30 s on it).
            adapter = HTTPAdapter(max_retries=_CappedRetry(
                total=self.retries, connect=0, read=0, other=0, status=self.retries, allowed_methods=None,
                status_forcelist=RETRIED_STATUSES, backoff_factor=self.backoff_s, backoff_jitter=self.backoff_s,
                backoff_max=self.max_wait_s, raise_on_status=False,
            ))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            # one request body, never chunked: a retried STOW resends it whole (a chunked body is a spent generator)
            client = DICOMwebClient(self.url, session=session, timeout=(min(self.timeout, 10.0), self.timeout),
                                    chunk_size=1 << 62)
            client.set_http_retry_params(retry=False)
            self._client = client
        return self._client

    @contextmanager
    def _errors(self, action: str, sop_uid: str | None = None) -> Iterator[None]:
        import requests

        try:
            yield
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise StoreUnavailableError(f"cannot reach DICOMweb store {self.uri} to {action}: {_reason(e)}") from None
        except requests.exceptions.HTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status in (401, 403):
                hint = f" (check the token in ${self.token_env})" if self.token_env else ""
                raise StoreUnavailableError(f"DICOMweb store {self.uri} refused to {action}: HTTP {status}{hint}") from None
            if status in RETRIED_STATUSES:
                raise StoreUnavailableError(f"DICOMweb store {self.uri} is busy or down ({action}): HTTP {status} "
                                            f"after {self.retries} retries") from None
            if sop_uid is None:
                raise StoreError(f"DICOMweb store {self.uri} failed to {action}: HTTP {status} {e.response.reason}") from None
            raise
        except Exception as e:
            if type(e).__module__.startswith("google.auth"):
                raise StoreUnavailableError(f"no Google credentials to {action} {self.uri}: {type(e).__name__}") from None
            raise

    def _instance_url(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"{self.url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"

    def location(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        _validate_key(study_uid, series_uid, sop_uid)
        return self._instance_url(study_uid, series_uid, sop_uid)

    def put(self, ds: Dataset) -> str:
        study, series, sop = _instance_uids(ds)
        self._stow([ds])
        return self._instance_url(study, series, sop)

    def put_many(self, datasets: Sequence[Dataset], *, max_instances: int = STOW_MAX_INSTANCES,
                 max_bytes: int = STOW_MAX_BYTES) -> list[str]:
        """Store ``datasets`` in as few STOW-RS requests as the limits allow; return their locations in order.

        One multipart request per batch of at most ``max_instances`` instances and ``max_bytes`` encoded
        bytes (a larger instance goes alone), so a worklist of SEGs costs a few round trips instead of one
        each; every request is retried like ``put``. The first refused request raises ``StoreWriteError``
        naming its instances: the batches before it are stored, the ones after it are not sent.
        """
        if max_instances < 1 or max_bytes < 1:
            raise ValueError(f"max_instances and max_bytes must be >= 1, not {max_instances}, {max_bytes}")
        keys = [_instance_uids(ds) for ds in datasets]  # every UID checked before anything is sent
        batch: list[Dataset] = []
        size = 0
        for ds in datasets:
            encoded = len(_encode(ds))
            if batch and (len(batch) == max_instances or size + encoded > max_bytes):
                self._stow(batch)
                batch, size = [], 0
            batch.append(ds)
            size += encoded
        if batch:
            self._stow(batch)
        return [self._instance_url(*key) for key in keys]

    def _stow(self, batch: list[Dataset]) -> None:
        """Store ``batch`` by STOW-RS, replacing what the server holds under the same UIDs, as every store does.

        Orthanc keeps or overwrites a re-sent instance; the Google Cloud Healthcare API accepts an identical
        copy but answers 409 Conflict to a changed one (a rerun's consensus SEG or QC SR, a Beam retry that
        re-encodes a SEG with a new content time). Then the instances of the batch that the server already
        holds are deleted (Delete Instance: not in the DICOMweb standard, offered by the Healthcare API and
        dcm4chee) and the batch is sent once more. Only UIDs this call writes are ever deleted.
        """
        try:
            self._post(batch)
        except StoreConflictError as conflict:
            if not self._delete_existing(batch, conflict):
                raise
            self._post(batch)

    def _delete_existing(self, batch: list[Dataset], conflict: StoreConflictError) -> bool:
        """Delete the refused instances of ``batch`` that the server holds; whether there were any."""
        refused = [key for key in map(_instance_uids, batch) if key[2] in conflict.refused]
        held = [key for key in refused if self.exists(*key)]
        client = self._get_client()
        for study, series, sop in held:
            with self._errors("replace"):
                try:
                    client.delete_instance(study, series, sop)
                except Exception as e:
                    if _status(e) in (401, 403, *RETRIED_STATUSES):
                        raise
                    raise StoreConflictError(f"{conflict}; replacing SOP instance {sop} needs Delete Instance, which "
                                             f"{self.uri} refused: HTTP {_status(e)}") from None
            logger.info("replaced SOP instance %s in %s (the server refused a changed copy with HTTP 409)", sop, self.uri)
        return bool(held)

    def _post(self, batch: list[Dataset]) -> None:
        """One STOW-RS request; a refusal raises ``StoreWriteError`` naming the instances and the reason."""
        import requests

        sops = [str(ds.SOPInstanceUID) for ds in batch]
        what = (f"SOP instance {sops[0]} (series {batch[0].SeriesInstanceUID})" if len(batch) == 1
                else f"{len(batch)} SOP instances ({', '.join(sops)})")
        client = self._get_client()
        with self._errors("store", sop_uid=sops[0]):
            try:
                response = client.store_instances(batch)
            except requests.exceptions.HTTPError as e:
                if _status(e) in (401, 403, *RETRIED_STATUSES):
                    raise  # a store we cannot use now, not a refused object
                body = _parse_stow_body(e.response)
                failed = {sop: _stow_failures(body, sop) for sop in sops}
                reasons = [reason for sop in sops for reason in failed[sop]]
                message = (f"STOW-RS of {what} to {self.uri} failed: HTTP {e.response.status_code} {e.response.reason}"
                           + (f"; {'; '.join(reasons)}" if reasons else ""))
                if e.response.status_code == 409:
                    raise StoreConflictError(message, [sop for sop in sops if failed[sop]] or sops) from None
                raise StoreWriteError(message) from None
        failures = [reason for sop in sops for reason in _stow_failures(response, sop)]
        if failures:
            raise StoreWriteError(f"STOW-RS of {what} to {self.uri} failed: {'; '.join(failures)}")
        for item in response.get("ReferencedSOPSequence", []):
            if "WarningReason" in item:
                logger.warning("STOW-RS of SOP instance %s to %s: warning 0x%04X", item.get("ReferencedSOPInstanceUID"),
                               self.uri, item.WarningReason)
        logger.debug("stored %s in %s", what, self.uri)

    def exists(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        _validate_key(study_uid, series_uid, sop_uid)
        client = self._get_client()
        with self._errors("search"):
            try:
                found = client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid,
                                                    search_filters={"SOPInstanceUID": sop_uid})
            except Exception as e:
                if _status(e) == 404:
                    return False
                raise
        return any(_json_value(row, _TAG_SOP) == sop_uid for row in found)

    def get(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        _validate_key(study_uid, series_uid, sop_uid)
        client = self._get_client()
        with self._errors("retrieve"):
            try:
                return client.retrieve_instance(study_uid, series_uid, sop_uid, media_types=((DICOM_MEDIA_TYPE, "*"),))
            except Exception as e:
                if _status(e) == 404:
                    raise InstanceNotFoundError(f"no SOP instance {sop_uid} of series {series_uid} in {self.uri}") from None
                raise

    def list_instances(
        self, series_uid: str | None = None, modality: str | None = None, *, study_uid: str | None = None
    ) -> list[InstanceRef]:
        _validate_filters(study_uid, series_uid)
        filters = {}
        if series_uid:
            filters["SeriesInstanceUID"] = series_uid
        if modality:
            filters["Modality"] = modality
        client = self._get_client()
        with self._errors("search"):
            try:
                rows = client.search_for_instances(study_instance_uid=study_uid, search_filters=filters,
                                                   fields=["Modality", "SeriesInstanceUID"], get_remaining=True)
            except Exception as e:
                if _status(e) == 404:  # unknown study
                    return []
                raise
        refs = {InstanceRef(_json_value(r, _TAG_STUDY), _json_value(r, _TAG_SERIES), _json_value(r, _TAG_SOP),
                            _json_value(r, _TAG_MODALITY) or (modality or "")) for r in rows}
        return sorted(ref for ref in refs if _matches(ref, study_uid, series_uid, modality))


def _reason(error: Exception) -> str:
    """A short cause for a network error ("[Errno 111] Connection refused"), without urllib3's nesting."""
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(error))
    return found.group(0).strip() if found else type(error).__name__


def _status(error: Exception) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _json_value(row: dict, tag: str) -> str:
    values = row.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _parse_stow_body(response) -> Dataset | None:
    """The STOW-RS response body of a refused request, when the server sent DICOM JSON."""
    if response is None or not response.content or "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return Dataset.from_json(response.json())
    except ValueError:
        return None


_STOW_FAILURES = {0xA700: "out of resources", 0xA900: "dataset does not match SOP class", 0xC000: "cannot understand",
                  0x0110: "processing failure", 0x0122: "SOP class not supported", 0x0111: "duplicate SOP instance",
                  0x0124: "not authorized", 0x0212: "mismatched SOP class"}


def _stow_failures(response: Dataset | None, sop_uid: str) -> list[str]:
    """Failure reasons a STOW-RS response gives for ``sop_uid`` (PS3.18 Table 10.5.3-1): empty when it was stored."""
    if response is None:
        return []
    reasons = []
    for item in response.get("FailedSOPSequence", []):
        if item.get("ReferencedSOPInstanceUID", sop_uid) == sop_uid:
            code = item.get("FailureReason")
            text = f"failure reason 0x{code:04X} ({_STOW_FAILURES.get(code, 'see PS3.4 Annex GG')})" if code is not None else "failed"
            reasons.append(f"server reports {text} for SOP instance {sop_uid}")
    return reasons
