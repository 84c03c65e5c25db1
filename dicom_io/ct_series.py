"""Read one CT series from DICOM files into a highdicom Volume in HU.

Headers are read first (no pixels) to group files by SeriesInstanceUID and to
check the chosen series (``ct_discovery``, ``ct_checks``); pixels are decoded
once, only for that series. Every refusal is one of the explicit errors in
``dicom_io.errors`` and names the problem and the file or UID, because
highdicom alone answers most bad inputs with a generic
``ValueError('Series is not a regularly-spaced volume.')``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from dicom_io.ct_checks import (
    ORIENTATION_TOLERANCE,
    check_identity,
    check_members,
    check_physical,
    check_plane_attributes,
    check_stacking,
    drop_localizers,
)
from dicom_io.ct_discovery import SeriesSummary, Source, describe_source, group_by_series, read_headers, select_series, summarize
from dicom_io.errors import DicomInputError, TooFewSlicesError, UnreadableSliceError


@dataclass(frozen=True)
class CTSeries:
    """A checked CT series: the volume in HU and its headers in volume order.

    ``datasets[i]`` is the slice at ``volume.array[i]``. The datasets hold the
    headers only: Pixel Data is dropped after decoding, the pixels live in
    ``volume`` once.
    """

    volume: hd.Volume
    datasets: tuple[Dataset, ...]
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str

    @property
    def geometry(self) -> hd.VolumeGeometry:
        return self.volume.get_geometry()


def list_series(source: Source) -> list[SeriesSummary]:
    """Summarise every series in ``source`` (a folder, walked recursively, or files)."""
    return [summarize(uid, headers) for uid, headers in sorted(group_by_series(read_headers(source).headers).items())]


def read_ct_series(
    source: Source,
    series_uid: str | None = None,
    *,
    spacing_tolerance_mm: float = 0.01,
    spacing_tolerance_rel: float = 0.01,
) -> CTSeries:
    """Read, check and decode one CT series from a folder or a list of files.

    A folder is walked recursively; files of any name are read, and files that
    are not DICOM (no DICM preamble) or are a DICOMDIR are skipped silently. A
    file that looks like DICOM (magic number or ``.dcm`` name) but does not read
    fails every series with a slice in its folder: it may be a lost slice.
    An explicit list of files must hold DICOM files only. Without
    ``series_uid`` the source must hold exactly one CT series (series of other
    modalities, e.g. SEG or SR, are not candidates).

    Localizers are skipped: images whose ImageType contains LOCALIZER, and
    images whose ImageOrientationPatient differs from that of the strict
    majority of the series *and* whose matrix (Rows, Columns, PixelSpacing)
    differs too. A differing orientation with the majority's matrix is an
    InconsistentGeometryError, not a localizer.

    Slices must share orientation, matrix, pixel spacing, study and frame of
    reference, and be stacked along their normal (no gantry tilt). Spacing is
    uniform when every gap between neighbours is within
    ``spacing_tolerance_mm + spacing_tolerance_rel * spacing`` of the mean
    spacing (defaults: 0.01 mm + 1 %, so 0.02 mm at 1 mm slices, 0.06 mm at
    5 mm); a gap close to a whole multiple of the spacing is reported as
    missing slices, and slices closer than ``spacing_tolerance_mm`` along the
    normal as duplicates. In-plane drift of slice positions (gantry tilt) may
    be at most ``spacing_tolerance_mm + spacing_tolerance_rel * pixel spacing``.
    These checks are stricter than highdicom's own (which accepts up to about
    2.5 degrees of tilt and ignores GantryDetectorTilt).

    Pixel and slice spacing must lie in ``ct_checks.PLAUSIBLE_SPACING_MM``; unsigned
    values without Rescale Intercept/Slope are refused (their HU cannot be known),
    signed ones are taken as HU with a warning.

    The volume array is float32 with the modality LUT (rescale) applied, axis 0
    ordered along the right-handed slice normal (highdicom's convention).
    """
    scan = read_headers(source)
    where = describe_source(source)
    uid, members = select_series(group_by_series(scan.headers), series_uid, where)
    if beside := scan.unreadable_beside(members):
        raise UnreadableSliceError(
            f"series {uid}: {len(beside)} file(s) beside its slices look like DICOM but cannot be read, so a slice "
            f"may be missing; first {beside[0][0]}: {beside[0][1]}"
        )
    check_members(members, uid)
    slices = drop_localizers(members, uid)
    if len(slices) < 2:
        raise TooFewSlicesError(
            f"series {uid} has {len(slices)} image slice(s) in {where}; a volume needs at least 2"
        )
    study_uid, frame_uid = check_identity(slices, uid)
    check_plane_attributes(slices, uid)
    ordered, tolerances = check_stacking(slices, uid, spacing_tolerance_mm, spacing_tolerance_rel)
    check_physical(ordered, uid)

    datasets = [pydicom.dcmread(ds.filename) for ds in ordered]
    if all(_rescale_only(ds) for ds in datasets):
        datasets, volume = _decode_rescaled(datasets, uid, **tolerances)
    else:
        volume = _decode(datasets, uid, **tolerances)
    for ds in datasets:
        del ds.PixelData
    return CTSeries(
        volume=volume,
        datasets=tuple(datasets),
        series_instance_uid=uid,
        study_instance_uid=study_uid,
        frame_of_reference_uid=frame_uid,
    )


def _rescale_only(ds: Dataset) -> bool:
    """A single-frame grayscale image whose modality transform is Rescale Slope/Intercept (or none): the usual CT slice."""
    return (int(ds.get("NumberOfFrames", 1) or 1) == 1 and int(ds.get("SamplesPerPixel", 1)) == 1
            and ds.get("PhotometricInterpretation") in ("MONOCHROME1", "MONOCHROME2")
            and "ModalityLUTSequence" not in ds and "PixelData" in ds)


def _decode_rescaled(datasets: list[Dataset], series_uid: str, atol: float,
                     perpendicular_tol: float) -> tuple[list[Dataset], hd.Volume]:
    """The datasets in volume order and their volume: the one ``_decode`` builds, voxel for voxel, in less time.

    highdicom's geometry (slice order and spacing, the most common orientation, ``Volume.from_attributes``);
    the pixels decoded by pydicom into one float32 array, each slice rescaled with highdicom's arithmetic,
    without building a highdicom image and a pixel transform per slice (most of a read's time).
    """
    try:
        spacing, positions = hd.spatial.get_series_volume_positions(
            datasets, atol=atol, perpendicular_tol=perpendicular_tol, orientation_tol=ORIENTATION_TOLERANCE)
    except ValueError as exc:  # a case ct_checks does not know yet
        raise DicomInputError(f"cannot build a volume from series {series_uid}: {exc}") from exc
    if spacing is None or positions is None:
        raise DicomInputError(f"cannot build a volume from series {series_uid}: Series is not a regularly-spaced volume.")
    ordered = [datasets[positions.index(i)] for i in range(len(datasets))]
    first = ordered[0]
    array = np.empty((len(ordered), int(first.Rows), int(first.Columns)), np.float32)
    for plane, ds in zip(array, ordered):
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # truncated or undecodable pixel data: this slice, named
            raise DicomInputError(f"cannot decode the pixels of {ds.filename} in series {series_uid}: {exc}") from exc
        # highdicom's arithmetic exactly: slope and intercept as float32 scalars, applied only when not neutral
        slope = np.float64(ds.get("RescaleSlope", 1.0) or 1.0).astype(np.float32)
        intercept = np.float64(ds.get("RescaleIntercept", 0.0) or 0.0).astype(np.float32)
        if slope != 1.0:
            pixels = pixels * slope
        if intercept != 0.0:
            pixels = pixels + intercept
        plane[...] = pixels
    orientation = Counter(tuple(ds.ImageOrientationPatient) for ds in ordered).most_common(1)[0][0]
    volume = hd.Volume.from_attributes(
        array=array, frame_of_reference_uid=first.FrameOfReferenceUID, image_position=first.ImagePositionPatient,
        image_orientation=list(orientation), pixel_spacing=first.PixelSpacing, spacing_between_slices=spacing,
        coordinate_system="PATIENT",
    )
    return ordered, volume


def _decode(datasets: list[Dataset], series_uid: str, atol: float, perpendicular_tol: float) -> hd.Volume:
    """Let highdicom build the volume: geometry plus modality LUT, no VOI/presentation LUT."""
    try:
        return hd.get_volume_from_series(
            datasets,
            dtype=np.float32,
            apply_real_world_transform=False,
            apply_modality_transform=None,
            apply_voi_transform=False,
            apply_presentation_lut=False,
            atol=atol,
            perpendicular_tol=perpendicular_tol,
            orientation_tol=ORIENTATION_TOLERANCE,
        )
    except ValueError as exc:  # a case ct_checks does not know yet
        raise DicomInputError(f"cannot build a volume from series {series_uid}: {exc}") from exc
