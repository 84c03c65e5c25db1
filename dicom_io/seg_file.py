"""A SEG (any DICOM dataset) as file bytes; a deflated one deflated with zlib-ng instead of Python's zlib.

pydicom deflates a Deflated Explicit VR Little Endian dataset with Python's zlib at
its default level 6: about 0.9 s for the 75 MB of a 300-slice LABELMAP on this
project's machine. zlib-ng (imagecodecs) writes the same format several times faster
(level 6 in about 0.1 s); at ``DEFLATE_LEVEL`` 8 the file is no larger than dcmqi's
deflated LABELMAP of the same segments (bench/README.md, seg_encoding). The Pixel Data
goes through zlib-ng; the elements before it (a few hundred kB) through Python's zlib,
sync-flushed, so the two parts are one valid deflate stream (PS3.5 A.5) that any
inflater reads. Elements still unparsed (a kept layout's, dicom_io/seg_template.py)
are written as the bytes they were read from. A dataset without Pixel Data at its
end, or in any other transfer syntax, is written by pydicom as it is.
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
from pydicom.charset import default_encoding
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

DEFLATE_LEVEL = 8  # measured against 1, 6 and 9 (bench/README.md, seg_encoding): the smallest level no larger than dcmqi's file, 9 slower still
ZLIB_HEADER, ZLIB_TRAILER = 2, 4  # a zlib stream is a 2-byte header, the raw deflate stream, an Adler-32
PIXEL_DATA = Tag("PixelData")


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
    encoding = ds.get("SpecificCharacterSet", default_encoding)
    for tag in sorted(ds.keys()):
        if tag == PIXEL_DATA or (tag.element == 0 and tag.group > 6):  # no retired group lengths (PS3.5 7.2)
            continue
        element = ds.get_item(tag)
        # unparsed (a kept layout's): as read; otherwise OB/OW, US/SS settled as pydicom does on writing
        write_data_element(body, element if element.is_raw else correct_ambiguous_vr_element(ds[tag], ds, True), encoding)
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
