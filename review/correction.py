"""A reviewer's corrected mask, as Slicer saves it (DICOM SEG, NRRD, NIfTI), checked and put on the ROI grid.

Only two grids are accepted: the item's ROI grid and the full CT grid (up to
axis order and flips, within 1 µm). Anything else is another series or a
resampled export, and guessing would paste a bone into the wrong place; so is a
SEG of another frame of reference or series. A mask must hold one structure:
a second label or segment is refused, not merged.
"""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np

from dicom_io.geometry import describe_grid, match_grid, same_region
from dicom_io.label_images import read_label_image
from qc.boxes import Box
from review.state import ReviewInputError


class CorrectionGridError(ReviewInputError):
    """The corrected mask is on neither the ROI grid nor the CT grid of the item."""


class CorrectionLabelError(ReviewInputError):
    """The corrected mask holds more than one structure."""


def grids(record: dict) -> tuple[hd.VolumeGeometry, hd.VolumeGeometry, Box]:
    """(ROI grid, full CT grid, ROI box on the CT grid) of an exported item."""
    roi, ct = record["roi"], record["ct_grid"]
    box = tuple(slice(a, b) for a, b in zip(roi["start"], roi["stop"]))
    frame = record["roi_ct"].get("frame_of_reference_uid")
    return (hd.VolumeGeometry(np.array(roi["affine"]), roi["shape"], "PATIENT", frame),
            hd.VolumeGeometry(np.array(ct["affine"]), ct["shape"], "PATIENT", frame), box)


def load_corrected_mask(path: str | os.PathLike, record: dict) -> np.ndarray:
    """The correction as a boolean mask on the item's ROI grid."""
    path = Path(path)
    roi_grid, ct_grid, box = grids(record)
    if path.suffix.lower() == ".dcm":
        volume, on_ct_series = _seg_volume(path, record)
        # a SEG stores only the frames that hold the segment: pad it onto the grid of the series it references
        on_roi = None if on_ct_series else _matched(volume, roi_grid)
        on_ct = _matched(volume, ct_grid) if on_ct_series else None
        if on_roi is None and on_ct is None:
            raise CorrectionGridError(f"{path}: its frames do not lie on the grid of the series it references")
    else:
        volume = read_label_image(path)
        values = np.unique(volume.array)
        if (labels := values[values != 0]).size > 1:
            raise CorrectionLabelError(f"{path}: holds labels {labels.tolist()}; a correction is one structure "
                                       "(export only the corrected segment)")
        on_roi = _on_grid(volume, roi_grid)
        on_ct = None if on_roi is not None else _on_grid(volume, ct_grid)
        if on_roi is None and on_ct is None:
            raise CorrectionGridError(
                f"{path}: its grid ({describe_grid(volume)}) is neither the ROI grid {tuple(roi_grid.spatial_shape)} "
                f"nor the CT grid {tuple(ct_grid.spatial_shape)} of {record['series_uid']}: another series, or resampled?")
    if on_roi is not None:
        return on_roi != 0
    outside = np.count_nonzero(on_ct) - np.count_nonzero(on_ct[box])
    if outside:
        raise CorrectionGridError(f"{path}: {outside} labelled voxels lie outside the ROI; a correction may only "
                                  "change the ROI it was exported with")
    return on_ct[box] != 0


def _on_grid(volume: hd.Volume, grid: hd.VolumeGeometry) -> np.ndarray | None:
    """The array on ``grid`` when ``volume`` lies on it (up to axis order and flips), else None.

    The grids must cover the same voxels: highdicom's ``match_geometry`` also
    crops or pads an aligned grid, which would let another item's ROI through.
    """
    return _matched(volume, grid) if same_region(volume, grid) else None


def _matched(volume: hd.Volume, grid: hd.VolumeGeometry) -> np.ndarray | None:
    """``volume`` reordered, flipped, cropped or padded onto ``grid`` when it is aligned with it, else None."""
    matched = match_grid(volume, grid)
    return None if matched is None else np.asarray(matched.array)


def _seg_volume(path: Path, record: dict) -> tuple[hd.Volume, bool]:
    """A corrected SEG: one segment, same frame of reference, referencing the ROI CT or the source CT (True)."""
    from dicom_io.seg_reader import load_segmentation

    seg = load_segmentation(path)
    where = f"{path} (SEG {seg.SOPInstanceUID})"
    frame = record["roi_ct"].get("frame_of_reference_uid")
    if frame and seg.get("FrameOfReferenceUID") != frame:
        raise CorrectionGridError(f"{where}: frame of reference {seg.get('FrameOfReferenceUID')} is not the CT's {frame}")
    referenced = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    allowed = {record["series_uid"], record["roi_ct"]["series_uid"]}
    if not referenced & allowed:
        raise CorrectionGridError(f"{where}: references series {sorted(referenced)}, not the ROI CT or CT series of "
                                  f"{record['series_uid']}/{record['bone']}")
    numbers = [int(item.SegmentNumber) for item in seg.SegmentSequence]
    if len(numbers) != 1:
        labels = [str(item.SegmentLabel) for item in seg.SegmentSequence]
        raise CorrectionLabelError(f"{where}: holds {len(numbers)} segments {labels}; a correction is one structure")
    volume = seg.get_volume(segment_numbers=numbers, combine_segments=True, relabel=True, dtype=np.uint8)
    return volume, record["roi_ct"]["series_uid"] not in referenced
