"""A DICOMweb server as a store (Orthanc, Google Cloud Healthcare API, dcm4chee): STOW-RS, QIDO-RS, WADO-RS.

dicomweb-client and requests are imported on first use. Every request is bounded by a timeout and
retried only when the server says "try later" (``retry``); a server that will not overwrite a changed
copy (HTTP 409) gets its copy deleted and the new one stored, as every store's ``put`` replaces.
"""

from __future__ import annotations

import logging
import os
import uuid
from contextlib import contextmanager
from typing import Iterator, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydicom import Dataset

from dicom_io.seg_file import dicom_file_bytes
from dicom_io.stores.base import (
    DEFAULT_TIMEOUT_S, DICOM_MEDIA_TYPE, InstanceNotFoundError, InstanceRef, StoreConflictError, StoreError,
    StoreUnavailableError, StoreWriteError, instance_uids, matches, network_reason, validate_filters,
    validate_key,
)
from dicom_io.stores.redact import redact_url, split_credentials
from dicom_io.stores.retry import RETRIED_STATUSES, http_status, mount_retries
from dicom_io.stores.stow import STOW_MAX_BYTES, STOW_MAX_INSTANCES, parse_stow_body, stow_failures

logger = logging.getLogger(__name__)

_TAG_STUDY, _TAG_SERIES, _TAG_SOP, _TAG_MODALITY = "0020000D", "0020000E", "00080018", "00080060"


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
        bare, self._basic_auth, self._url_token = split_credentials(uri)  # secrets go in headers, never in a URL sent
        parts = urlsplit(bare)
        scheme = parts.scheme.lower().removeprefix("dicomweb+")
        if scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not a DICOMweb URL (http(s)://host/path or dicomweb+https://...): {redact_url(uri)!r}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        token_envs = [v for k, v in query if k == "token_env"]
        self.token_env = token_env or (token_envs[-1] if token_envs else None)
        rest = urlencode([(k, v) for k, v in query if k != "token_env"])
        self.url = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), rest, ""))
        # ``uri`` reopens the store (workers get it in their settings) and so keeps the credentials it was given;
        # ``shown`` is what messages, logs and tables carry
        self.uri = uri if (self._basic_auth or self._url_token) else (
            self.url + (("&" if rest else "?") + urlencode({"token_env": self.token_env}) if self.token_env else ""))
        self.shown = redact_url(self.uri)
        self.timeout = timeout or DEFAULT_TIMEOUT_S
        self.retries, self.backoff_s, self.max_wait_s = retries, backoff_s, max_wait_s
        self._client = None
        self._session = None  # the client's session: STOW-RS posts our own encoding of each instance through it

    def __repr__(self) -> str:
        return f"DicomWebStore({self.shown!r})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None, "_session": None}

    def _get_client(self):
        if self._client is None:
            import requests
            from dicomweb_client import DICOMwebClient

            if self._url_token or self.token_env:
                token = self._url_token or os.environ.get(self.token_env)
                if not token:
                    raise StoreUnavailableError(f"environment variable {self.token_env} (bearer token for {self.shown}) is not set")
                session = requests.Session()
                session.headers["Authorization"] = f"Bearer {token}"
            elif urlsplit(self.url).hostname == "healthcare.googleapis.com":
                try:
                    from dicomweb_client.ext.gcp.session_utils import create_session_from_gcp_credentials
                except ImportError:
                    raise StoreUnavailableError(f"{self.shown} is a Google Cloud Healthcare API store: install "
                                                "`dicomweb-client[gcp]` or pass token_env") from None
                with self._errors("authenticate to"):
                    session = create_session_from_gcp_credentials()
            else:
                session = requests.Session()
            if self._basic_auth:
                session.auth = self._basic_auth
            mount_retries(session, self.retries, self.backoff_s, self.max_wait_s)  # retries live in the session
            # one request body, never chunked: a retried STOW resends it whole (a chunked body is a spent generator)
            client = DICOMwebClient(self.url, session=session, timeout=(min(self.timeout, 10.0), self.timeout),
                                    chunk_size=1 << 62)
            client.set_http_retry_params(retry=False)
            self._client, self._session = client, session
        return self._client

    @contextmanager
    def _errors(self, action: str, sop_uid: str | None = None) -> Iterator[None]:
        import requests

        try:
            yield
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise StoreUnavailableError(f"cannot reach DICOMweb store {self.shown} to {action}: {network_reason(e)}") from None
        except requests.exceptions.HTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status in (401, 403):
                hint = f" (check the token in ${self.token_env})" if self.token_env else ""
                raise StoreUnavailableError(f"DICOMweb store {self.shown} refused to {action}: HTTP {status}{hint}") from None
            if status in RETRIED_STATUSES:
                raise StoreUnavailableError(f"DICOMweb store {self.shown} is busy or down ({action}): HTTP {status} "
                                            f"after {self.retries} retries") from None
            if sop_uid is None:
                raise StoreError(f"DICOMweb store {self.shown} failed to {action}: HTTP {status} {e.response.reason}") from None
            raise
        except Exception as e:
            if type(e).__module__.startswith("google.auth"):
                raise StoreUnavailableError(f"no Google credentials to {action} {self.shown}: {type(e).__name__}") from None
            raise

    def _instance_url(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"{self.url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"

    def location(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        validate_key(study_uid, series_uid, sop_uid)
        return self._instance_url(study_uid, series_uid, sop_uid)

    def put(self, ds: Dataset) -> str:
        study, series, sop = instance_uids(ds)
        self._stow([(ds, dicom_file_bytes(ds))])
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
        keys = [instance_uids(ds) for ds in datasets]  # every UID checked before anything is sent
        batch: list[tuple[Dataset, bytes]] = []
        size = 0
        for ds in datasets:
            encoded = dicom_file_bytes(ds)  # what is sent: a deflated SEG as small as on disk
            if batch and (len(batch) == max_instances or size + len(encoded) > max_bytes):
                self._stow(batch)
                batch, size = [], 0
            batch.append((ds, encoded))
            size += len(encoded)
        if batch:
            self._stow(batch)
        return [self._instance_url(*key) for key in keys]

    def _stow(self, batch: list[tuple[Dataset, bytes]]) -> None:
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

    def _delete_existing(self, batch: list[tuple[Dataset, bytes]], conflict: StoreConflictError) -> bool:
        """Delete the refused instances of ``batch`` that the server holds; whether there were any."""
        refused = [key for key in (instance_uids(ds) for ds, _ in batch) if key[2] in conflict.refused]
        held = [key for key in refused if self.exists(*key)]
        client = self._get_client()
        for study, series, sop in held:
            with self._errors("replace"):
                try:
                    client.delete_instance(study, series, sop)
                except Exception as e:
                    if http_status(e) in (401, 403, *RETRIED_STATUSES):
                        raise
                    raise StoreConflictError(f"{conflict}; replacing SOP instance {sop} needs Delete Instance, which "
                                             f"{self.shown} refused: HTTP {http_status(e)}") from None
            logger.info("replaced SOP instance %s in %s (the server refused a changed copy with HTTP 409)", sop, self.shown)
        return bool(held)

    def _post(self, batch: list[tuple[Dataset, bytes]]) -> None:
        """One STOW-RS request; a refusal raises ``StoreWriteError`` naming the instances and the reason."""
        import requests

        sops = [str(ds.SOPInstanceUID) for ds, _ in batch]
        what = (f"SOP instance {sops[0]} (series {batch[0][0].SeriesInstanceUID})" if len(batch) == 1
                else f"{len(batch)} SOP instances ({', '.join(sops)})")
        with self._errors("store", sop_uid=sops[0]):
            try:
                response = self._send([encoded for _, encoded in batch])
            except requests.exceptions.HTTPError as e:
                if http_status(e) in (401, 403, *RETRIED_STATUSES):
                    raise  # a store we cannot use now, not a refused object
                body = parse_stow_body(e.response)
                failed = {sop: stow_failures(body, sop) for sop in sops}
                reasons = [reason for sop in sops for reason in failed[sop]]
                message = (f"STOW-RS of {what} to {self.shown} failed: HTTP {e.response.status_code} {e.response.reason}"
                           + (f"; {'; '.join(reasons)}" if reasons else ""))
                if e.response.status_code == 409:
                    raise StoreConflictError(message, [sop for sop in sops if failed[sop]] or sops) from None
                raise StoreWriteError(message) from None
        failures = [reason for sop in sops for reason in stow_failures(response, sop)]
        if failures:
            raise StoreWriteError(f"STOW-RS of {what} to {self.shown} failed: {'; '.join(failures)}")
        for item in response.get("ReferencedSOPSequence", []):
            if "WarningReason" in item:
                logger.warning("STOW-RS of SOP instance %s to %s: warning 0x%04X", item.get("ReferencedSOPInstanceUID"),
                               self.shown, item.WarningReason)
        logger.debug("stored %s in %s", what, self.shown)

    def _send(self, parts: list[bytes]) -> Dataset:
        """POST ``parts`` (DICOM files) as one STOW-RS request (PS3.18 10.5: multipart/related, application/dicom).

        dicomweb-client's ``store_instances`` encodes each dataset itself with pydicom (zlib level 6 for a
        deflated SEG, 10 % larger); this sends the bytes every other store writes (``dicom_file_bytes``),
        through the client's session (its authentication and retries) and with its timeouts.
        """
        self._get_client()
        boundary = uuid.uuid4().hex
        body = b"".join(b"\r\n--%s\r\nContent-Type: %s\r\n\r\n%s" % (boundary.encode(), DICOM_MEDIA_TYPE.encode(), part)
                        for part in parts) + b"\r\n--%s--" % boundary.encode()
        response = self._session.post(
            f"{self.url}/studies", data=body, timeout=(min(self.timeout, 10.0), self.timeout),
            headers={"Content-Type": f'multipart/related; type="{DICOM_MEDIA_TYPE}"; boundary={boundary}',
                     "Accept": "application/dicom+json"})
        response.raise_for_status()
        if not response.content or "json" not in response.headers.get("Content-Type", ""):
            return Dataset()
        return Dataset.from_json(response.json())

    def exists(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        validate_key(study_uid, series_uid, sop_uid)
        client = self._get_client()
        with self._errors("search"):
            try:
                found = client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid,
                                                    search_filters={"SOPInstanceUID": sop_uid})
            except Exception as e:
                if http_status(e) == 404:
                    return False
                raise
        return any(_json_value(row, _TAG_SOP) == sop_uid for row in found)

    def get(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        validate_key(study_uid, series_uid, sop_uid)
        client = self._get_client()
        with self._errors("retrieve"):
            try:
                return client.retrieve_instance(study_uid, series_uid, sop_uid, media_types=((DICOM_MEDIA_TYPE, "*"),))
            except Exception as e:
                if http_status(e) == 404:
                    raise InstanceNotFoundError(f"no SOP instance {sop_uid} of series {series_uid} in {self.shown}") from None
                raise

    def check_writable(self) -> None:
        """The server answers a search with these credentials (writing would store an instance, so it is not tried)."""
        self.list_instances(study_uid="1.2.826.0.1.3680043.8.498.1")  # a study that is nowhere: finds nothing

    def list_instances(
        self, series_uid: str | None = None, modality: str | None = None, *, study_uid: str | None = None
    ) -> list[InstanceRef]:
        validate_filters(study_uid, series_uid)
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
                if http_status(e) == 404:  # unknown study
                    return []
                raise
        refs = {InstanceRef(_json_value(r, _TAG_STUDY), _json_value(r, _TAG_SERIES), _json_value(r, _TAG_SOP),
                            _json_value(r, _TAG_MODALITY) or (modality or "")) for r in rows}
        return sorted(ref for ref in refs if matches(ref, study_uid, series_uid, modality))


def _json_value(row: dict, tag: str) -> str:
    values = row.get(tag, {}).get("Value") or [""]
    return str(values[0])
