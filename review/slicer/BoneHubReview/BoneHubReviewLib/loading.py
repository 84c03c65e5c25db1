"""How Load gets an item: the exported NRRD files (checked against the ROI grid) or its ROI series on DICOMweb.

Also the DICOMweb URL and access token as the reviewer types them, and a quick check that the store
answers. Standard library only.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .formats import ReviewError
from .geometry import Grid, grid_mismatch, roi_grid
from .nrrd import nrrd_grid, read_nrrd_header


@dataclass(frozen=True)
class SeriesRef:
    """A DICOM series to retrieve, by its study and series UIDs."""

    study_uid: str
    series_uid: str


@dataclass(frozen=True)
class DicomWebRequest:
    """What Slicer's ``DICOMUtils.importFromDICOMWeb`` needs for an item; ``seg`` is None for an empty start mask."""

    endpoint: str
    access_token: str | None
    ct: SeriesRef
    seg: SeriesRef | None


@dataclass(frozen=True)
class LoadPlan:
    """How Load gets the item: ``files`` (ct_path, mask_path) or ``dicomweb`` (request)."""

    source: str
    ct_path: Path | None = None
    mask_path: Path | None = None
    request: DicomWebRequest | None = None


def normalize_endpoint(url: str) -> str:
    """A DICOMweb base URL as dicomweb-client wants it: http(s), no trailing '/' or '/studies'."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReviewError(f"DICOMweb URL {url!r} must start with http:// or https:// and name a host")
    if parts.query or parts.fragment:
        raise ReviewError(f"DICOMweb URL {url!r}: give the service's base URL, without '?' or '#'")
    path = parts.path.rstrip("/")
    if path.endswith("/studies"):
        path = path[: -len("/studies")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def normalize_token(token: str) -> str | None:
    """The bare access token (a pasted 'Bearer ' prefix removed), or None when there is none."""
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[len("bearer "):].strip()
    if any(ch.isspace() for ch in token):
        raise ReviewError("the access token must be one word (paste the token only)")
    return token or None


def auth_headers(token: str | None) -> dict[str, str]:
    """``Authorization: Bearer <token>``, as Slicer's importFromDICOMWeb sends it, or no header."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def _series_ref(item: dict, key: str) -> SeriesRef | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not value.get("study_uid") or not value.get("series_uid"):
        raise ReviewError(f"item {item.get('item_id', '?')}: {key} needs study_uid and series_uid")
    return SeriesRef(str(value["study_uid"]), str(value["series_uid"]))


def dicomweb_request(item: dict, endpoint: str, token: str = "") -> DicomWebRequest:
    """The ROI CT series and ROI SEG of an item on a DICOMweb store."""
    ct = _series_ref(item, "roi_ct")
    if ct is None:
        raise ReviewError(f"item {item.get('item_id', '?')}: item.json names no ROI CT series (roi_ct)")
    return DicomWebRequest(normalize_endpoint(endpoint), normalize_token(token), ct, _series_ref(item, "roi_seg"))


def plan_load(folder: Path, item: dict, endpoint: str = "", token: str = "") -> LoadPlan:
    """A DICOMweb URL given wins; else the exported NRRDs (checked against the ROI grid); else item.store."""
    if endpoint.strip():
        return LoadPlan("dicomweb", request=dicomweb_request(item, endpoint, token))
    ct, mask = folder / item["files"]["ct"], folder / item["files"]["mask"]
    missing = [path.name for path in (ct, mask) if not path.is_file()]
    if not missing:
        expected = roi_grid(item)
        for path in (ct, mask):
            mismatch = grid_mismatch(nrrd_grid(read_nrrd_header(path)), expected)
            if mismatch:
                raise ReviewError(f"{path}: {mismatch}; re-export the item")
        return LoadPlan("files", ct_path=ct, mask_path=mask)
    store = str(item.get("store") or "")
    if store.startswith(("http://", "https://")):
        return LoadPlan("dicomweb", request=dicomweb_request(item, store, token))
    raise ReviewError(f"{folder}: {', '.join(missing)} missing and no DICOMweb URL given; "
                      "enter the store's URL or re-export the item with its files")


def reference_grid(folder: Path, item: dict) -> Grid:
    """The grid Accept exports onto: ct_roi.nrrd's own (its axis order, as the reviewer loaded it) or the ROI's."""
    ct = folder / item["files"]["ct"]
    expected = roi_grid(item)
    if not ct.is_file():
        return expected
    grid = nrrd_grid(read_nrrd_header(ct))
    mismatch = grid_mismatch(grid, expected)
    if mismatch:
        raise ReviewError(f"{ct}: {mismatch}; re-export the item")
    return grid


def check_dicomweb(endpoint: str, token: str = "", timeout_s: float = 10.0) -> str:
    """Ask the store for one study (QIDO-RS), so that a wrong URL or token shows up before Load."""
    base = normalize_endpoint(endpoint)
    headers = {"Accept": "application/dicom+json", **auth_headers(normalize_token(token))}
    request = urllib.request.Request(f"{base}/studies?limit=1", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return f"{base} answers (HTTP {response.status})"
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise ReviewError(f"{base} refused access (HTTP {error.code}): check the access token") from None
        raise ReviewError(f"{base} answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ReviewError(f"cannot reach {base}: {getattr(error, 'reason', error)}") from None
