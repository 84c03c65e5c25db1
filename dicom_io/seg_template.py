"""A CT series' LABELMAP frame layout, built by highdicom once and reused by the deflated LABELMAP SEGs of it.

Why: highdicom spends most of a SEG's encode time (about 0.9 s of a 300-slice series
on this project's machine) deriving the per-frame functional groups and source
references from the CT headers. That layout depends only on the series and on which
slices hold a structure (empty frames are omitted), so it is the same for every SEG of
the series with the same extent, whatever the source, augmentation or reviewer: for a
whole skeleton, usually all of them. The first such SEG is built by highdicom in full
and its layout kept (without its pixels); each later one is highdicom's own one-frame
SEG (segments, UIDs, provenance, pixel format) given the kept layout and its own
pixels. The layout is kept encoded (explicit VR little endian): each SEG gets its own
elements read from those bytes, unparsed until something looks at them, so a change
to one SEG never reaches another, and dicom_io/seg_file.py writes an element nobody
parsed as the bytes it came from.
tests/seg/test_seg_template.py checks the result is highdicom's full build.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element

from dicom_io.ct_series import CTSeries

# What depends only on the CT series and the frame layout; everything else comes from the one-frame SEG.
LAYOUT = (
    "ReferencedSeriesSequence", "SourceImageSequence", "DimensionOrganizationSequence", "DimensionIndexSequence",
    "DimensionOrganizationType", "NumberOfFrames", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
)
KEPT_LAYOUTS = 8  # a worker encodes one series at a time; its outputs may differ in extent by a slice or two

BuildSeg = Callable[[list, hd.Volume | np.ndarray], hd.seg.Segmentation]


@dataclass(frozen=True)
class _Layout:
    """A layout: its elements encoded, and highdicom's frame table (an in-memory database) of the full SEG."""

    encoded: bytes
    frame_table: sqlite3.Connection


_layouts: OrderedDict[tuple, _Layout] = OrderedDict()
_lock = threading.Lock()  # a Beam worker may encode in several threads


def labelmap_seg(ct: CTSeries, pixels: hd.Volume, build: BuildSeg) -> hd.seg.Segmentation:
    """``build(source_images, pixel_array)`` for the whole of ``ct``, from a kept layout when there is one.

    ``build`` is highdicom's constructor with every argument but those two fixed, and
    omits empty frames; ``pixels`` holds segment numbers on the CT grid.
    """
    stored = np.flatnonzero(pixels.array.reshape(pixels.array.shape[0], -1).any(axis=1))  # the slices with a structure
    # the same UIDs may come back with other geometry (a series re-exported under its UIDs): the grid is in the key
    key = (ct.series_instance_uid, tuple(ds.SOPInstanceUID for ds in ct.datasets), pixels.affine.tobytes(),
           str(ct.datasets[0].get("FrameOfReferenceUID", "")), pixels.dtype.str, stored.tobytes())
    with _lock:
        kept = _layouts.get(key)
        if kept is not None:
            _layouts.move_to_end(key)
    if kept is None:
        seg = shareable(build(list(ct.datasets), pixels))
        _use_encoded(seg, _keep(key, seg).encoded)  # written as the bytes just encoded, not encoded again
        return seg
    first = int(stored[0])
    seg = build([ct.datasets[first]], pixels.array[first:first + 1])  # a one-frame SEG: everything that is not the layout
    _use_encoded(seg, kept.encoded)
    contiguous = stored[-1] - stored[0] + 1 == stored.size  # the usual case: one run of slices, a view and one copy
    seg.PixelData = (pixels.array[stored[0]:stored[-1] + 1] if contiguous else pixels.array[stored]).tobytes()
    seg._db_con = kept.frame_table  # highdicom's frame table: it describes the layout, read only
    return seg


def _use_encoded(seg: hd.seg.Segmentation, encoded: bytes) -> None:
    """``seg``'s layout elements replaced by those read from ``encoded``, unparsed until something looks at them."""
    for keyword in LAYOUT:  # DimensionOrganizationType only where the frames are a regular 3D volume
        if keyword in seg:
            del seg[keyword]
    elements = read_dataset(DicomBytesIO(encoded), is_implicit_VR=False, is_little_endian=True)
    for tag in elements.keys():
        seg[tag] = elements.get_item(tag)


def shareable(seg: hd.seg.Segmentation) -> hd.seg.Segmentation:
    """``seg`` with its frame table usable from any thread, as a kept layout's is shared by later SEGs.

    highdicom keeps a SEG's frame table in an in-memory SQLite database bound to the thread that
    built it; a SEG encoded in a worker thread (``pipeline.overlap``) and then copied, pickled or
    read in another failed ("SQLite objects created in a thread can only be used in that same
    thread"). The table is small (a row per frame) and only read after the build.
    """
    table = sqlite3.connect(":memory:", check_same_thread=False)
    seg._db_con.backup(table)
    seg._db_con = table
    return seg


def forget_layouts() -> None:
    """Drop every kept layout (the next SEG of any series is built in full)."""
    with _lock:
        _layouts.clear()


def _keep(key: tuple, seg: hd.seg.Segmentation) -> _Layout:
    """Keep ``seg``'s layout elements (encoded) and frame table, the ``KEPT_LAYOUTS`` most recently used."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    for element in sorted((seg[keyword] for keyword in LAYOUT if keyword in seg), key=lambda e: e.tag):
        write_data_element(buffer, correct_ambiguous_vr_element(element, seg, True))
    layout = _Layout(buffer.getvalue(), seg._db_con)
    with _lock:
        _layouts[key] = layout
        while len(_layouts) > KEPT_LAYOUTS:
            _layouts.popitem(last=False)
    return layout
