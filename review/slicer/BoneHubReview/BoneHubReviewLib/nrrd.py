"""A small reader for NRRD files with an attached header: the grid alone, or the voxels too.

Slicer saves segmentations as NRRD; the module checks a saved label map without Slicer's readers,
so the checks are the same in Slicer and in pytest. Raw, gzip and bzip2 encodings; standard library
and numpy only.
"""

from __future__ import annotations

import bz2
import gzip
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .formats import ReviewError
from .geometry import Grid

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
