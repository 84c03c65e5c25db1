"""Whether a NIfTI file holds all the voxel data its header promises.

SimpleITK (ITK 5.4) reads a truncated ``.nii`` or ``.nii.gz`` without complaint and
fills the missing voxels with zeros: a mask cut short by an interrupted copy
would silently lose its last slices. So the data is counted here: the header's
``vox_offset`` plus ``prod(dim) * bitpix / 8`` bytes must be present, and a
``.nii.gz`` stream must end properly. NIfTI-1 (348-byte header) and NIfTI-2
(540-byte header), either byte order.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

_CHUNK = 1 << 22


def nifti_data_problem(path: Path) -> str | None:
    """Why ``path`` lacks promised voxel data (``"truncated: ..."``), or None when it is complete."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(540)
            needed = _bytes_needed(header)
            if needed is None:
                return "not a NIfTI header"
            present = len(header)
            while present < needed and (chunk := stream.read(_CHUNK)):
                present += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        return f"truncated or corrupt compressed data ({error})"
    if present < needed:
        return f"truncated: {present} of {needed} bytes of header and voxel data"
    return None


def _bytes_needed(header: bytes) -> int | None:
    """Header + voxel bytes the header promises, or None when it is not a NIfTI-1/2 header."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(f"{order}i", header[:4])[0] == 348:
            dims = struct.unpack(f"{order}8h", header[40:56])
            bitpix = struct.unpack(f"{order}h", header[72:74])[0]
            offset = int(struct.unpack(f"{order}f", header[108:112])[0])
            return _total(dims, bitpix, max(offset, 352))
        if len(header) >= 540 and struct.unpack(f"{order}i", header[:4])[0] == 540:
            bitpix = struct.unpack(f"{order}h", header[14:16])[0]
            dims = struct.unpack(f"{order}8q", header[16:80])
            offset = struct.unpack(f"{order}q", header[168:176])[0]
            return _total(dims, bitpix, max(offset, 544))
    return None


def _total(dims: tuple[int, ...], bitpix: int, offset: int) -> int | None:
    rank = dims[0]
    if not 1 <= rank <= 7 or bitpix <= 0:
        return None
    count = 1
    for size in dims[1: rank + 1]:
        count *= max(size, 1)
    return offset + count * bitpix // 8
