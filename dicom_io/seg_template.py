"""A CT series' LABELMAP frame layout, built by highdicom once per series and cut to measure for each deflated LABELMAP SEG.

Why: highdicom spends most of a SEG's encode time (about 1 s of a 300-slice series on
this project's machine) deriving the per-frame functional groups and source references
from the CT headers. That layout depends only on the series and on which slices hold a
structure (empty frames are omitted). So the first SEG of a series has highdicom build
the layout of a SEG with a frame on every slice, and keeps it encoded (explicit VR little
endian), one per-frame item apart from the next. Each SEG is then highdicom's own
one-frame SEG (segments, UIDs, provenance, pixel format) given the kept items of its
slices, renumbered (the Dimension Index Values count the frames stored), its frame count,
its dimension organization ("3D" where its slices are evenly spaced, as highdicom decides)
and highdicom's frame table cut to the same frames. Sources whose structures reach a
slice further than another's share the series' one build. The elements are read from the
bytes, unparsed until something looks at them, so a change to one SEG never reaches
another, and dicom_io/seg_file.py writes an element nobody parsed as the bytes it came from.
tests/seg/test_seg_template.py checks the result is highdicom's full build.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element, write_sequence_item

from dicom_io.ct_series import CTSeries

# What depends only on the CT series and the frame layout; everything else comes from the one-frame SEG.
LAYOUT = (
    "ReferencedSeriesSequence", "SourceImageSequence", "DimensionOrganizationSequence", "DimensionIndexSequence",
    "DimensionOrganizationType", "NumberOfFrames", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
)
PER_SLICE = ("DimensionOrganizationType", "NumberOfFrames", "PerFrameFunctionalGroupsSequence")  # set per SEG
KEPT_LAYOUTS = 8  # a worker encodes one series at a time, several in a few threads
_PER_FRAME_TAG = b"\x00\x52\x30\x92"  # (5200,9230), little endian
_DIMENSION_INDEX_VALUES = b"\x20\x00\x57\x91UL\x04\x00"  # (0020,9157) UL, one value: the frame's position index

BuildSeg = Callable[[list, hd.Volume | np.ndarray], hd.seg.Segmentation]


@dataclass(frozen=True)
class _Layout:
    """The layout of a SEG with a frame on every slice: shared elements encoded, each slice's per-frame item encoded
    with where its Dimension Index Values sit, whether the slices form a regular volume, highdicom's frame table."""

    shared: bytes
    frames: tuple[bytes, ...]
    index_at: tuple[int, ...]
    three_d: bool
    frame_table: sqlite3.Connection


_layouts: OrderedDict[tuple, _Layout] = OrderedDict()
_lock = threading.Lock()  # a Beam worker may encode in several threads
_building = threading.Lock()  # one layout built at a time: never the same one twice


def labelmap_seg(ct: CTSeries, pixels: hd.Volume, build: BuildSeg) -> hd.seg.Segmentation:
    """``build(source_images, pixel_array)`` for the whole of ``ct``, its layout cut from the series' kept one.

    ``build`` is highdicom's constructor with every argument but those two fixed, and
    omits empty frames; ``pixels`` holds segment numbers on the CT grid.
    """
    stored = np.flatnonzero(pixels.array.reshape(pixels.array.shape[0], -1).any(axis=1))  # the slices with a structure
    layout = _layout_of(ct, pixels, build)
    first = int(stored[0])
    seg = build([ct.datasets[first]], pixels.array[first:first + 1])  # a one-frame SEG: everything that is not the layout
    _use_encoded(seg, layout.shared + _per_frame_sequence(layout, stored))
    seg.NumberOfFrames = len(stored)
    steps = np.diff(stored)
    if layout.three_d and stored.size > 1 and (steps == steps[0]).all():  # highdicom's rule: evenly spaced planes
        seg.DimensionOrganizationType = "3D"
    contiguous = stored[-1] - stored[0] + 1 == stored.size  # the usual case: one run of slices, a view and one copy
    seg.PixelData = (pixels.array[stored[0]:stored[-1] + 1] if contiguous else pixels.array[stored]).tobytes()
    seg._db_con = _frame_table(layout.frame_table, stored)  # highdicom's frame table, for these frames
    return seg


def _layout_of(ct: CTSeries, pixels: hd.Volume, build: BuildSeg) -> _Layout:
    """The series' kept layout, built by highdicom (a SEG with segment 1 on every slice) when there is none yet."""
    # the same UIDs may come back with other geometry (a series re-exported under its UIDs): the grid is in the key
    key = (ct.series_instance_uid, tuple(ds.SOPInstanceUID for ds in ct.datasets), pixels.affine.tobytes(),
           str(ct.datasets[0].get("FrameOfReferenceUID", "")), pixels.dtype.str)
    if (kept := _kept(key)) is not None:
        return kept
    with _building:  # the SEGs of a series are encoded side by side: the first builds, the others wait for it
        if (kept := _kept(key)) is not None:
            return kept
        every_slice = shareable(build(list(ct.datasets), pixels.with_array(np.ones(pixels.array.shape, pixels.dtype))))
        layout = _encode_layout(every_slice)
        with _lock:
            _layouts[key] = layout
            while len(_layouts) > KEPT_LAYOUTS:
                _layouts.popitem(last=False)
    return layout


def _kept(key: tuple) -> _Layout | None:
    with _lock:
        kept = _layouts.get(key)
        if kept is not None:
            _layouts.move_to_end(key)
        return kept


def _encode_layout(seg: hd.seg.Segmentation) -> _Layout:
    """``seg``'s layout: the elements every SEG of the series shares, and each per-frame item, encoded."""
    shared = _encoded(seg, [seg[keyword] for keyword in LAYOUT if keyword in seg and keyword not in PER_SLICE])
    items = correct_ambiguous_vr_element(seg["PerFrameFunctionalGroupsSequence"], seg, True).value
    frames, index_at = [], []
    for item in items:
        buffer = _buffer()
        write_sequence_item(buffer, item, [])
        frames.append(buffer.getvalue())
        index_at.append(frames[-1].index(_DIMENSION_INDEX_VALUES) + len(_DIMENSION_INDEX_VALUES))
    return _Layout(shared, tuple(frames), tuple(index_at), seg.get("DimensionOrganizationType") == "3D", seg._db_con)


def _per_frame_sequence(layout: _Layout, stored: np.ndarray) -> bytes:
    """The Per-Frame Functional Groups Sequence of the ``stored`` slices, encoded: the kept items, renumbered."""
    parts = []
    for number, index in enumerate(stored.tolist(), start=1):
        item, at = layout.frames[index], layout.index_at[index]
        parts += (item[:at], struct.pack("<I", number), item[at + 4:])
    items = b"".join(parts)
    return _PER_FRAME_TAG + b"SQ\x00\x00" + struct.pack("<I", len(items)) + items  # a defined length, as pydicom writes it


def _frame_table(every_slice: sqlite3.Connection, stored: np.ndarray) -> sqlite3.Connection:
    """highdicom's frame table of the full layout cut to the ``stored`` slices, frames and dimension indices renumbered."""
    table = sqlite3.connect(":memory:", check_same_thread=False)
    every_slice.backup(table)
    table.execute("CREATE TEMP TABLE Kept(Old INTEGER PRIMARY KEY, New INTEGER NOT NULL)")
    table.executemany("INSERT INTO Kept VALUES (?, ?)", [(int(index) + 1, number) for number, index in enumerate(stored, 1)])
    indices = [row[1] for row in table.execute("PRAGMA table_info(FrameLUT)") if row[1].endswith("_DimensionIndexValues")]
    for name in ("FrameLUT", "FrameReferenceLUT"):
        table.execute(f"DELETE FROM {name} WHERE FrameNumber NOT IN (SELECT Old FROM Kept)")
        # through negative numbers: a frame number is a primary key, and no two frames may hold one at any time
        table.execute(f"UPDATE {name} SET FrameNumber = -(SELECT New FROM Kept WHERE Old = FrameNumber)")
        table.execute(f"UPDATE {name} SET FrameNumber = -FrameNumber")
    for column in indices:  # one position per frame, in volume order: the index is the frame number
        table.execute(f"UPDATE FrameLUT SET {column} = FrameNumber")
    table.execute("DROP TABLE Kept")
    table.commit()
    return table


def _use_encoded(seg: hd.seg.Segmentation, encoded: bytes) -> None:
    """``seg``'s layout elements replaced by those read from ``encoded``, unparsed until something looks at them."""
    for keyword in LAYOUT:
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
    """Drop every kept layout (the next SEG of any series builds its series' layout again)."""
    with _lock:
        _layouts.clear()


def _encoded(seg: hd.seg.Segmentation, elements: list) -> bytes:
    buffer = _buffer()
    for element in sorted(elements, key=lambda e: e.tag):
        write_data_element(buffer, correct_ambiguous_vr_element(element, seg, True))
    return buffer.getvalue()


def _buffer() -> DicomBytesIO:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    return buffer
