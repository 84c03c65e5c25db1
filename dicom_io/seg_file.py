"""A SEG (any DICOM dataset) as file bytes; a deflated one deflated with zlib-ng instead of Python's zlib.

pydicom deflates a Deflated Explicit VR Little Endian dataset with Python's zlib:
about 0.9 s for the 75 MB of a 300-slice LABELMAP on this project's machine.
zlib-ng (imagecodecs) at the same level deflates the Pixel Data in about 0.1 s and as
small (bench/README.md, seg_encoding); the elements before it (a few hundred kB) are
deflated with Python's zlib and sync-flushed, so the two parts are one valid deflate
stream (PS3.5 A.5) that any inflater reads. The per-frame functional groups of a
LABELMAP built from its series' kept layout are encoded once per series
(dicom_io/seg_template.py). A dataset without Pixel Data at its end, or in any other
transfer syntax, is written by pydicom as it is.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import imagecodecs
import pydicom
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicom_io.seg_template import encoded_per_frame

DEFLATE_LEVEL = 6  # measured against 1 and 9 (bench/README.md, seg_encoding): 9 is several times slower for 10 % less
ZLIB_HEADER, ZLIB_TRAILER = 2, 4  # a zlib stream is a 2-byte header, the raw deflate stream, an Adler-32
PER_FRAME, PIXEL_DATA = Tag("PerFrameFunctionalGroupsSequence"), Tag("PixelData")


def dicom_file_bytes(ds: Dataset, level: int = DEFLATE_LEVEL) -> bytes:
    """``ds`` as a DICOM file (preamble, file meta, dataset), as ``pydicom.dcmwrite(..., enforce_file_format=True)`` writes it.

    ``level``: the zlib compression level of a deflated dataset.
    """
    if ds.file_meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian or PIXEL_DATA not in ds or len(ds[PIXEL_DATA + 1:]):
        buffer = DicomBytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()
    head = _explicit_little_buffer()
    head.write((getattr(ds, "preamble", None) or b"\x00" * 128) + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)

    body = _explicit_little_buffer()
    per_frame = ds.get_item(PER_FRAME)
    per_frame_bytes = encoded_per_frame(per_frame) if per_frame is not None else None
    if per_frame_bytes is None:
        write_dataset(body, ds[:PIXEL_DATA])
    else:  # the elements before it, its bytes as encoded once for its series, the elements after it
        write_dataset(body, ds[:PER_FRAME])
        body.write(per_frame_bytes)
        write_dataset(body, ds[PER_FRAME + 1:PIXEL_DATA])
    pixels = correct_ambiguous_vr_element(ds[PIXEL_DATA], ds, True)  # OB or OW, from Bits Allocated
    data = pixels.value if len(pixels.value) % 2 == 0 else pixels.value + b"\x00"
    body.write(struct.pack("<HH2s2xI", PIXEL_DATA.group, PIXEL_DATA.element, pixels.VR.encode(), len(data)))

    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = (compressor.compress(body.getvalue()) + compressor.flush(zlib.Z_SYNC_FLUSH)
                + imagecodecs.zlibng_encode(data, level=level)[ZLIB_HEADER:-ZLIB_TRAILER])
    return head.getvalue() + deflated + b"\x00" * (len(deflated) % 2)


def save_dicom(ds: Dataset, path: str | os.PathLike) -> None:
    """Write ``ds`` to ``path`` as ``dicom_file_bytes`` gives it."""
    Path(path).write_bytes(dicom_file_bytes(ds))


def _explicit_little_buffer() -> DicomBytesIO:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    return buffer
