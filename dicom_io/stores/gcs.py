"""A Google Cloud Storage bucket as a store: ``gs://bucket/prefix/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``.

google-cloud-storage is imported on first use, so the other stores work without it; with
``STORAGE_EMULATOR_HOST`` set (tests, local runs) the client talks to that emulator anonymously.
"""

from __future__ import annotations

import io
import logging
import os
from contextlib import contextmanager
from typing import Iterator, Sequence
from urllib.parse import urlsplit

import pydicom
from pydicom import Dataset

from dicom_io.seg_file import dicom_file_bytes
from dicom_io.stores.base import (
    DEFAULT_TIMEOUT_S, DICOM_MEDIA_TYPE, SUFFIX, InstanceNotFoundError, InstanceRef, StoreUnavailableError,
    StoreWriteError, instance_uids, matches, network_reason, validate_filters, validate_key,
)

logger = logging.getLogger(__name__)


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
        validate_key(study_uid, series_uid, sop_uid)
        return "/".join(p for p in (self.prefix, study_uid, series_uid, f"{sop_uid}{SUFFIX}") if p)

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
            raise StoreUnavailableError(f"cannot reach {self.uri} to {action}: {network_reason(e)}") from None

    def _retry(self):
        """The library's retry policy (transient errors, backoff), its total time bounded by ``timeout``.

        The same key always gets the same bytes, so retrying an upload is safe.
        """
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.timeout)

    def _bucket_missing(self, action: str) -> StoreUnavailableError:
        return StoreUnavailableError(f"cannot {action} {self.uri}: bucket {self.bucket_name!r} does not exist")

    def check_writable(self) -> None:
        """The bucket exists and these credentials can write to the prefix (one empty object written, removed)."""
        import uuid

        with self._errors("write a check object to"):
            bucket = self._get_bucket()
            if not bucket.exists():
                raise self._bucket_missing("write")
            probe = bucket.blob("/".join(p for p in (self.prefix, f".bonehub-write-check-{uuid.uuid4().hex}") if p))
            probe.upload_from_string(b"")
            probe.delete()

    def put(self, ds: Dataset) -> str:
        from google.api_core import exceptions as gexc

        study, series, sop = instance_uids(ds)
        blob = self._get_bucket().blob(self._key(study, series, sop))
        blob.metadata = {"modality": str(ds.get("Modality", ""))}
        with self._errors("write to"):
            try:
                blob.upload_from_string(dicom_file_bytes(ds), content_type=DICOM_MEDIA_TYPE, timeout=self.timeout, retry=self._retry())
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

        validate_filters(study_uid, series_uid)
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
                    if len(parts) != 3 or not parts[2].endswith(SUFFIX) or parts[2].startswith("."):
                        continue
                    found = (blob.metadata or {}).get("modality")
                    if found is None:  # written by another tool: read its header
                        found = str(pydicom.dcmread(io.BytesIO(blob.download_as_bytes(timeout=self.timeout)),
                                                    stop_before_pixels=True).get("Modality", ""))
                    ref = InstanceRef(parts[0], parts[1], parts[2][: -len(SUFFIX)], found)
                    if matches(ref, study_uid, series_uid, modality):
                        refs.append(ref)
            except gexc.NotFound:
                raise self._bucket_missing("list") from None
        return sorted(refs)
