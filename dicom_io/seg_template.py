"""One CT series' LABELMAP frame layout, built by highdicom once and reused by every deflated LABELMAP SEG of it.

Why: highdicom spends most of a SEG's encode time (about 0.9 s of a 300-slice series
on this project's machine) deriving the per-frame functional groups and source
references from the CT headers. A deflated LABELMAP keeps every frame, so that
layout is the same for every SEG of a series, whatever the source, augmentation or
reviewer. The first SEG of a series is built by highdicom in full and kept (without
its pixels); each later one is highdicom's own one-frame SEG (segments, UIDs,
provenance, pixel format) given the kept layout and its own pixels. The SEGs of a
series share the kept layout elements (never change them in place), so their largest
element, the per-frame functional groups, is also encoded to bytes once
(``encoded_per_frame``, used by dicom_io/seg_file.py).
tests/seg/test_seg_template.py checks the result is highdicom's full build.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataelem import DataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element

from dicom_io.ct_series import CTSeries

# What depends only on the CT series and the frame layout; everything else comes from the one-frame SEG.
LAYOUT = (
    "ReferencedSeriesSequence", "SourceImageSequence", "DimensionOrganizationSequence", "DimensionIndexSequence",
    "DimensionOrganizationType", "NumberOfFrames", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
)
KEPT_SERIES = 2  # a worker encodes one series at a time; the consensus of the previous one may still follow

BuildSeg = Callable[[list, hd.Volume | np.ndarray], hd.seg.Segmentation]


@dataclass
class _Layout:
    """A series' layout: highdicom's full SEG without its pixels, and its per-frame groups once encoded."""

    seg: hd.seg.Segmentation
    per_frame_bytes: bytes | None = None


_layouts: OrderedDict[tuple, _Layout] = OrderedDict()


def labelmap_seg(ct: CTSeries, pixels: hd.Volume, build: BuildSeg) -> hd.seg.Segmentation:
    """``build(source_images, pixel_array)`` for every frame of ``ct``, from the kept layout when there is one.

    ``build`` is highdicom's constructor with every argument but those two fixed, and
    keeps empty frames; ``pixels`` holds segment numbers on the CT grid.
    """
    key = (ct.series_instance_uid, tuple(ds.SOPInstanceUID for ds in ct.datasets), pixels.dtype.str)
    kept = _layouts.get(key)
    if kept is None:
        seg = build(list(ct.datasets), pixels)
        _keep(key, seg)
        return seg
    _layouts.move_to_end(key)
    seg = build([ct.datasets[0]], pixels.array[:1])  # a one-frame SEG: everything that is not the layout
    for keyword in LAYOUT:
        element = kept.seg[keyword]
        seg[element.tag] = element
    seg.PixelData = pixels.array.tobytes()
    # highdicom's frame table (an in-memory database) describes the layout, which the kept SEG's describes
    seg._db_con = kept.seg._db_con  # noqa: SLF001
    return seg


def encoded_per_frame(element: DataElement) -> bytes | None:
    """Explicit VR little endian bytes of a kept PerFrameFunctionalGroupsSequence (encoded once); None for any other element."""
    for kept in _layouts.values():
        if kept.seg.get_item("PerFrameFunctionalGroupsSequence") is element:
            if kept.per_frame_bytes is None:
                buffer = DicomBytesIO()
                buffer.is_little_endian, buffer.is_implicit_VR = True, False
                write_data_element(buffer, element)
                kept.per_frame_bytes = buffer.getvalue()
            return kept.per_frame_bytes
    return None


def forget_layouts() -> None:
    """Drop every kept layout (the next SEG of any series is built in full)."""
    _layouts.clear()


def _keep(key: tuple, seg: hd.seg.Segmentation) -> None:
    """Keep ``seg``'s layout elements and frame table (not its pixels), the most recent ``KEPT_SERIES`` series."""
    layout = hd.seg.Segmentation.__new__(hd.seg.Segmentation)
    layout.__dict__.update(seg.__dict__)
    layout._dict = {seg[keyword].tag: seg[keyword] for keyword in LAYOUT}  # noqa: SLF001
    _layouts[key] = _Layout(layout)
    while len(_layouts) > KEPT_SERIES:
        _layouts.popitem(last=False)
