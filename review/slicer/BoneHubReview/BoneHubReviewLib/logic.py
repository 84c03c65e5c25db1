"""What the BoneHubReview Slicer module decides, kept free of Slicer so that pytest can check it.

Reads the folder ``bonehub review export`` writes (``worklist.json``, ``<series_uid>/<bone>/item.json``),
plans how an item's ROI CT and mask are loaded (the exported NRRD files, or the ROI DICOM series from
a DICOMweb store), and writes the reviewer's correction (``corrected.nrrd`` + ``correction.json``) that
``bonehub review import`` reads, but only after checking that the label map lies on the ROI grid and
holds one label. Standard library and numpy only: both exist in 3D Slicer's Python.
"""

from __future__ import annotations

import bz2
import gzip
import json
import math
import os
import re
import tempfile
import urllib.error
from itertools import permutations, product
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

WORKLIST_FORMAT = "bonehub-worklist/1"
ITEM_FORMAT = "bonehub-review-item/1"
CORRECTION_FORMAT = "bonehub-correction/1"
WORKLIST_FILE = "worklist.json"
ITEM_FILE = "item.json"
CORRECTED_FILE = "corrected.nrrd"
CORRECTION_FILE = "correction.json"
# Where the module saves the label map before it is checked; only a checked one becomes corrected.nrrd.
PARTIAL_FILE = ".corrected.partial.nrrd"

PENDING, EXPORTED, CORRECTED = "pending", "exported", "corrected"
TOOL_BY_METHOD = {"semiautomatic": "SlicerNNInteractive", "manual": "3D Slicer Segment Editor"}
GEOMETRY_TOLERANCE_MM = 1e-3
TABLE_COLUMNS = ("Priority", "Series", "Bone", "Score", "Flags", "Outlier", "State")

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


class ReviewError(Exception):
    """A problem the reviewer can act on; the module shows the message as it is."""


# --------------------------------------------------------------------------- worklist and items


@dataclass(frozen=True)
class WorklistEntry:
    """One bone of one series that QC sent to review, as ``worklist.json`` lists it."""

    item_id: str
    series_uid: str
    study_uid: str
    bone: str
    score: float | None
    flags: tuple[str, ...]
    outlier_source: str
    priority: int


@dataclass(frozen=True)
class ItemStatus:
    """A worklist entry, its folder and how far it got: pending (not exported), exported, corrected."""

    entry: WorklistEntry
    folder: Path
    state: str


def _read_json(path: Path, expected_format: str) -> dict:
    """A JSON object whose ``format`` is the one this module reads; other versions are refused by name."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReviewError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReviewError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(record, dict):
        raise ReviewError(f"{path}: expected a JSON object")
    found = record.get("format")
    if found == expected_format:
        return record
    family = expected_format.split("/")[0]
    if isinstance(found, str) and found.startswith(family + "/"):
        raise ReviewError(f"{path}: format {found!r} is not supported; this BoneHubReview module reads "
                          f"{expected_format!r}, update the module or re-export with a matching bonehub")
    raise ReviewError(f"{path}: not a {family} file (format {found!r}, expected {expected_format!r})")


def _text(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise ReviewError(f"{where}: {key!r} must be a non-empty string")
    return value


def _path_part(value: str, key: str, where: str) -> str:
    """A UID or bone name used as a folder name; a separator or '..' would escape the export folder."""
    if value in (".", "..") or "/" in value or "\\" in value:
        raise ReviewError(f"{where}: {key} {value!r} cannot be a folder name")
    return value


def _entry(raw: object, where: str) -> WorklistEntry:
    if not isinstance(raw, dict):
        raise ReviewError(f"{where}: an item must be a JSON object")
    series_uid = _path_part(_text(raw, "series_uid", where), "series_uid", where)
    bone = _path_part(_text(raw, "bone", where), "bone", where)
    item_id = _text(raw, "item_id", where)
    if item_id != f"{series_uid}/{bone}":
        raise ReviewError(f"{where}: item_id {item_id!r} is not '<series_uid>/<bone>'")
    priority, score, flags = raw.get("priority"), raw.get("score"), raw.get("flags", [])
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ReviewError(f"{where}: priority must be an integer")
    if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
        raise ReviewError(f"{where}: score must be a number or null")
    if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
        raise ReviewError(f"{where}: flags must be a list of strings")
    return WorklistEntry(item_id, series_uid, str(raw.get("study_uid") or ""), bone,
                         None if score is None else float(score), tuple(flags),
                         str(raw.get("outlier_source") or ""), priority)


def find_worklist(path: str | os.PathLike) -> Path:
    """``worklist.json`` given either the export folder or the file itself."""
    if not str(path).strip():
        raise ReviewError("choose the folder that 'bonehub review export' wrote")
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        candidate = candidate / WORKLIST_FILE
    if not candidate.is_file():
        raise ReviewError(f"{candidate}: not found; choose the folder that 'bonehub review export' wrote")
    return candidate


def read_worklist(path: str | os.PathLike) -> tuple[Path, list[WorklistEntry]]:
    """The export folder and its worklist entries in priority order (1 first)."""
    worklist = find_worklist(path)
    record = _read_json(worklist, WORKLIST_FORMAT)
    items = record.get("items")
    if not isinstance(items, list):
        raise ReviewError(f"{worklist}: 'items' must be a list")
    entries = [_entry(raw, f"{worklist} item {index}") for index, raw in enumerate(items)]
    seen: set[str] = set()
    for entry in entries:
        if entry.item_id in seen:
            raise ReviewError(f"{worklist}: item {entry.item_id} is listed twice")
        seen.add(entry.item_id)
    return worklist.parent, sorted(entries, key=lambda entry: entry.priority)


def item_folder(export_dir: Path, entry: WorklistEntry) -> Path:
    """``EXPORT/<series_uid>/<bone>``: where the export put the item and where its correction goes."""
    return Path(export_dir) / entry.series_uid / entry.bone


def item_state(folder: Path) -> str:
    """Corrected once both correction files exist (correction.json is written last), else exported or pending."""
    if (folder / CORRECTION_FILE).is_file() and (folder / CORRECTED_FILE).is_file():
        return CORRECTED
    return EXPORTED if (folder / ITEM_FILE).is_file() else PENDING


def list_items(path: str | os.PathLike) -> tuple[Path, list[ItemStatus]]:
    """The export folder and every worklist entry with its folder and state, in priority order."""
    export_dir, entries = read_worklist(path)
    statuses = []
    for entry in entries:
        folder = item_folder(export_dir, entry)
        statuses.append(ItemStatus(entry, folder, item_state(folder)))
    return export_dir, statuses


def next_item_id(statuses: list[ItemStatus], current_id: str | None, skipped: set[str]) -> str | None:
    """The next exported, uncorrected, unskipped item after ``current_id`` in priority order (wrapping)."""
    ids = [status.entry.item_id for status in statuses]
    start = ids.index(current_id) + 1 if current_id in ids else 0
    for status in statuses[start:] + statuses[:start]:
        item_id = status.entry.item_id
        if status.state == EXPORTED and item_id not in skipped and item_id != current_id:
            return item_id
    return None


def table_row(status: ItemStatus, skipped: bool) -> tuple[str, ...]:
    """The worklist table's cells, in ``TABLE_COLUMNS`` order."""
    entry = status.entry
    score = "-" if entry.score is None else f"{entry.score:.2f}"
    state = "skipped" if skipped and status.state == EXPORTED else status.state
    return (str(entry.priority), entry.series_uid, entry.bone, score, ", ".join(entry.flags),
            entry.outlier_source, state)


def _relative_file(value: object, key: str, where: str) -> str:
    if not isinstance(value, str) or not value or Path(value).is_absolute() or ".." in Path(value).parts:
        raise ReviewError(f"{where}: files.{key} must be a path inside the item folder, got {value!r}")
    return value


def read_item(folder: str | os.PathLike) -> dict:
    """``item.json`` of an exported item, checked for what the module uses; other keys are left as they are."""
    folder = Path(folder)
    path = folder / ITEM_FILE
    if not path.is_file():
        raise ReviewError(f"{folder}: not exported yet (no {ITEM_FILE}); run 'bonehub review export' for it")
    item = _read_json(path, ITEM_FORMAT)
    series_uid, bone = _text(item, "series_uid", str(path)), _text(item, "bone", str(path))
    _text(item, "study_uid", str(path))
    if _text(item, "item_id", str(path)) != f"{series_uid}/{bone}":
        raise ReviewError(f"{path}: item_id {item['item_id']!r} is not '<series_uid>/<bone>'")
    if (folder.parent.name, folder.name) != (series_uid, bone):
        raise ReviewError(f"{path}: describes {series_uid}/{bone} but lies in {folder.parent.name}/{folder.name}")
    files = item.get("files")
    if not isinstance(files, dict):
        raise ReviewError(f"{path}: 'files' must be an object")
    for key in ("ct", "mask"):
        _relative_file(files.get(key), key, str(path))
    roi_grid(item)  # refuses a malformed ROI now rather than at Accept
    return item


def bone_label(item: dict) -> str:
    """The name the reviewer sees for the bone: its meaning if the export gave one."""
    return str(item.get("bone_meaning") or item["bone"])


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``affine`` maps an index along (axis 0, 1, 2) to LPS mm.

    item.json's axes are (slice, row, column); a NRRD's are its own (``bonehub review export``
    writes the same order, highdicom's ``to_simpleitk``; SimpleITK's ``GetImageFromArray`` the reverse).
    """

    affine: np.ndarray
    shape: tuple[int, int, int]

    def box_corners(self) -> np.ndarray:
        """LPS corners of the voxels' outer box (index -0.5 and n - 0.5): the 8 points fix the affine."""
        index = np.array([[a, b, c, 1.0] for a in (-0.5, self.shape[0] - 0.5)
                          for b in (-0.5, self.shape[1] - 0.5) for c in (-0.5, self.shape[2] - 0.5)])
        return (index @ self.affine.T)[:, :3]

    def reindexed(self) -> Iterator[Grid]:
        """The same voxels indexed in every axis order and direction (48 ways)."""
        for order in permutations(range(3)):
            for flips in product((False, True), repeat=3):
                affine = np.eye(4)
                affine[:3, 3] = self.affine[:3, 3]
                for new, (old, flip) in enumerate(zip(order, flips)):
                    step = self.affine[:3, old]
                    if flip:
                        affine[:3, 3] += (self.shape[old] - 1) * step
                    affine[:3, new] = -step if flip else step
                yield Grid(affine, tuple(self.shape[old] for old in order))


def roi_grid(item: dict) -> Grid:
    """The ROI grid of an item (``roi.affine`` and ``roi.shape``), refused if malformed."""
    roi = item.get("roi")
    where = f"item {item.get('item_id', '?')}: roi"
    if not isinstance(roi, dict):
        raise ReviewError(f"{where} must be an object")
    shape = roi.get("shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise ReviewError(f"{where}.shape must be three positive integers, got {shape!r}")
    try:
        affine = np.array(roi.get("affine"), dtype=float)
    except (TypeError, ValueError):
        raise ReviewError(f"{where}.affine must be a 4x4 list of numbers") from None
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or not np.allclose(affine[3], [0, 0, 0, 1]):
        raise ReviewError(f"{where}.affine must be a 4x4 affine matrix (last row 0 0 0 1)")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ReviewError(f"{where}.affine is singular")
    return Grid(affine, (shape[0], shape[1], shape[2]))


def grid_mismatch(actual: Grid, expected: Grid, tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> str | None:
    """Why ``actual`` does not hold the voxels of ``expected`` (in any axis order), or None when it does.

    Axis order and direction are free, as for ``bonehub review import`` (highdicom's match_geometry):
    a label map exported against a CT that Slicer loaded from DICOM may run its slices the other way.
    """
    offsets = [float(np.max(np.linalg.norm(variant.box_corners() - expected.box_corners(), axis=1)))
               for variant in actual.reindexed() if variant.shape == tuple(expected.shape)]
    if not offsets:
        return (f"its size {'x'.join(map(str, actual.shape))} voxels does not match the ROI's "
                f"{'x'.join(map(str, expected.shape))} in any axis order")
    if min(offsets) > tolerance_mm:
        return f"its grid is up to {min(offsets):.4g} mm off the ROI grid (tolerance {tolerance_mm:g} mm)"
    return None


def ijk_to_ras(grid: Grid) -> np.ndarray:
    """Slicer's IJK-to-RAS matrix of a grid (I = axis 0), as Slicer sets it when it loads such a NRRD."""
    return _LPS_RAS @ grid.affine


# --------------------------------------------------------------------------- NRRD (attached header)

_NRRD_TYPES = {  # numpy dtype: the NRRD type names for it
    "int8": ("signed char", "int8", "int8_t"),
    "uint8": ("uchar", "unsigned char", "uint8", "uint8_t"),
    "int16": ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
    "uint16": ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    "int32": ("int", "signed int", "int32", "int32_t"),
    "uint32": ("uint", "unsigned int", "uint32", "uint32_t"),
    "int64": ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t"),
    "uint64": ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
    "float32": ("float",),
    "float64": ("double",),
}
_DTYPE_BY_NRRD_TYPE = {name: dtype for dtype, names in _NRRD_TYPES.items() for name in names}
_SPACE_SIGN = {  # to LPS
    "left-posterior-superior": (1.0, 1.0, 1.0), "lps": (1.0, 1.0, 1.0),
    "right-anterior-superior": (-1.0, -1.0, 1.0), "ras": (-1.0, -1.0, 1.0),
}
_VECTOR = re.compile(r"\(([^()]*)\)")


@dataclass(frozen=True)
class NrrdHeader:
    """An attached NRRD header: field names in lower case, and where the data starts."""

    path: Path
    fields: dict[str, str]
    data_offset: int


def read_nrrd_header(path: str | os.PathLike) -> NrrdHeader:
    """The header alone, so that geometry can be checked without reading the voxels."""
    path = Path(path)
    fields: dict[str, str] = {}
    try:
        with path.open("rb") as stream:
            if not stream.readline().startswith(b"NRRD000"):
                raise ReviewError(f"{path}: not a NRRD file")
            while True:
                raw = stream.readline()
                if not raw:
                    raise ReviewError(f"{path}: NRRD header without data")
                line = raw.decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                colon = line.find(":")
                if line.startswith("#") or line[colon + 1:colon + 2] == "=":  # comment or key:=value pair
                    continue
                if colon < 0:
                    raise ReviewError(f"{path}: malformed NRRD header line {line!r}")
                fields[line[:colon].strip().lower()] = line[colon + 1:].strip()
            offset = stream.tell()
    except OSError as error:
        raise ReviewError(f"{path}: cannot read ({error.strerror or error})") from None
    if "data file" in fields or "datafile" in fields:
        raise ReviewError(f"{path}: detached NRRD data is not supported; save a single .nrrd file")
    return NrrdHeader(path, fields, offset)


def _numbers(text: str, count: int, where: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ReviewError(f"{where}: expected {count} numbers, got ({text})")
    return values


def nrrd_grid(header: NrrdHeader) -> Grid:
    """The grid of a 3-D NRRD in the file's own axis order (axis 0 is NRRD's first, fastest axis)."""
    fields, where = header.fields, str(header.path)
    if fields.get("dimension") != "3":
        raise ReviewError(f"{where}: a {fields.get('dimension', '?')}-D NRRD; a label map here is 3-D")
    sign = _SPACE_SIGN.get(fields.get("space", "").lower())
    if sign is None:
        raise ReviewError(f"{where}: NRRD space {fields.get('space')!r} is not LPS or RAS")
    try:
        sizes = [int(n) for n in fields.get("sizes", "").split()]
    except ValueError:
        sizes = []
    directions = _VECTOR.findall(fields.get("space directions", ""))
    origin = _VECTOR.findall(fields.get("space origin", ""))
    if len(sizes) != 3 or len(directions) != 3 or len(origin) != 1:
        raise ReviewError(f"{where}: NRRD header lacks sizes, space directions or space origin for 3 axes")
    flip = np.array(sign)
    axes = [np.array(_numbers(text, 3, f"{where} space directions")) * flip for text in directions]
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = axes
    affine[:3, 3] = np.array(_numbers(origin[0], 3, f"{where} space origin")) * flip
    return Grid(affine, (sizes[0], sizes[1], sizes[2]))


def read_nrrd_array(header: NrrdHeader) -> np.ndarray:
    """The voxels indexed in ``nrrd_grid``'s axis order; raw, gzip and bzip2 encodings."""
    fields, where = header.fields, str(header.path)
    dtype_name = _DTYPE_BY_NRRD_TYPE.get(fields.get("type", "").lower())
    if dtype_name is None:
        raise ReviewError(f"{where}: unknown NRRD type {fields.get('type')!r}")
    if fields.get("byte skip", "0") != "0" or fields.get("line skip", "0") != "0":
        raise ReviewError(f"{where}: NRRD 'byte skip'/'line skip' is not supported")
    dtype = np.dtype(dtype_name).newbyteorder(">" if fields.get("endian") == "big" else "<")
    shape = nrrd_grid(header).shape
    encoding = fields.get("encoding", "").lower()
    data = header.path.read_bytes()[header.data_offset:]
    try:
        if encoding in ("gzip", "gz"):
            data = gzip.decompress(data)
        elif encoding in ("bzip2", "bz2"):
            data = bz2.decompress(data)
        elif encoding != "raw":
            raise ReviewError(f"{where}: NRRD encoding {encoding!r} is not supported (raw, gzip, bzip2)")
    except (OSError, EOFError, ValueError) as error:
        raise ReviewError(f"{where}: corrupt {encoding} data ({error})") from None
    count = int(np.prod(shape))
    if len(data) < count * dtype.itemsize:
        raise ReviewError(f"{where}: {len(data)} bytes of data, {count * dtype.itemsize} expected")
    return np.frombuffer(data, dtype=dtype, count=count).reshape(shape[::-1]).transpose(2, 1, 0)  # axis 0 fastest


# --------------------------------------------------------------------------- loading


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


# --------------------------------------------------------------------------- accepting a correction


def utc_now() -> str:
    """ISO 8601 UTC to the second, e.g. 2026-05-01T12:00:00Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and a rename: readers see the old file or the new one."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _reviewer(name: str) -> str:
    name = name.strip()
    if not name:
        raise ReviewError("enter the reviewer's name before Accept")
    if any(not ch.isprintable() for ch in name):
        raise ReviewError("the reviewer's name must be one line of printable text")
    return name


def _method(method: str) -> str:
    if method not in TOOL_BY_METHOD:
        raise ReviewError(f"method {method!r} is not one of {sorted(TOOL_BY_METHOD)}")
    return method


def validate_corrected_labelmap(path: str | os.PathLike, item: dict) -> tuple[int, int]:
    """(label, voxel count) of a saved correction; refused unless on the ROI grid with exactly one label."""
    path = Path(path)
    header = read_nrrd_header(path)
    mismatch = grid_mismatch(nrrd_grid(header), roi_grid(item))
    if mismatch:
        raise ReviewError(f"the saved label map is not on the ROI grid: {mismatch}; "
                          "export the segment with the ROI CT as reference geometry")
    data = read_nrrd_array(header)
    if not np.issubdtype(data.dtype, np.integer):
        raise ReviewError(f"{path.name}: voxel type {data.dtype} is not a label map (integers)")
    labels, counts = np.unique(data, return_counts=True)
    nonzero = labels != 0
    if not nonzero.any():
        raise ReviewError("the corrected segment is empty; nothing was saved")
    if nonzero.sum() > 1:
        raise ReviewError(f"the label map holds {int(nonzero.sum())} labels {labels[nonzero].tolist()}; "
                          "a correction holds exactly one (the bone)")
    return int(labels[nonzero][0]), int(counts[nonzero][0])


def write_correction(folder: Path, item: dict, reviewer: str, method: str, saved_at: str | None = None) -> Path:
    """``correction.json`` for ``bonehub review import``, written atomically."""
    record = {
        "format": CORRECTION_FORMAT,
        "item_id": item["item_id"],
        "reviewer": _reviewer(reviewer),
        "method": _method(method),
        "tool": TOOL_BY_METHOD[method],
        "mask": CORRECTED_FILE,
        "saved_at": saved_at or utc_now(),
    }
    path = Path(folder) / CORRECTION_FILE
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def finalize_correction(folder: Path, item: dict, saved_path: Path, reviewer: str, method: str) -> Path:
    """Check the saved label map, make it ``corrected.nrrd``, then write ``correction.json`` (last).

    The old correction.json goes first, so a correction.json on disk always names a complete,
    checked corrected.nrrd, even when a second Accept is interrupted halfway.
    """
    folder = Path(folder)
    _reviewer(reviewer)  # refuse a missing name or method before any file changes
    _method(method)
    validate_corrected_labelmap(saved_path, item)
    (folder / CORRECTION_FILE).unlink(missing_ok=True)
    os.replace(saved_path, folder / CORRECTED_FILE)
    return write_correction(folder, item, reviewer, method)
