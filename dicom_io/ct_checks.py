"""Check the headers of a CT series before any pixel is decoded: what it holds, its UIDs and its geometry.

Every refusal is one of the explicit errors in ``dicom_io.errors`` and names the problem and the file
or UID, because highdicom alone answers most bad inputs with a generic
``ValueError('Series is not a regularly-spaced volume.')``. The rules are those of ``read_ct_series``'s
docstring; ``check_stacking`` returns the tolerances that let highdicom accept exactly what passed here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from highdicom.spatial import VOLUME_INDEX_CONVENTION, get_normal_vector
from pydicom.dataset import Dataset

from dicom_io.errors import (
    DicomInputError,
    DuplicateSliceError,
    GantryTiltError,
    ImplausibleGeometryError,
    InconsistentGeometryError,
    MissingAttributeError,
    MissingFrameOfReferenceError,
    MissingSliceError,
    NonUniformSpacingError,
    NotCTError,
    UnknownHUError,
)
from dicom_io.uids import validate_uid

logger = logging.getLogger(__name__)

# Two orientations are the same when each direction cosine vector of one has a
# cosine similarity of at least 1 - this with the other's (about 0.08 degrees);
# highdicom's ``orientation_tol`` uses the same measure.
ORIENTATION_TOLERANCE = 1e-6
_GEOMETRY_KEYWORDS = ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns")
_MAX_LISTED = 5
PLAUSIBLE_SPACING_MM = (0.01, 50.0)
"""Pixel and slice spacing a CT can have, from micro-CT to the thickest reconstructions; outside is a broken header."""


def check_members(members: list[Dataset], series_uid: str) -> None:
    """Every file of the series is a single-frame CT image."""
    for ds in members:
        if ds.get("Modality") != "CT":
            raise NotCTError(f"{ds.filename}: modality {ds.get('Modality')!r} is not CT (series {series_uid})")
        if int(ds.get("NumberOfFrames") or 1) != 1:
            raise DicomInputError(
                f"{ds.filename}: multi-frame image ({ds.NumberOfFrames} frames) in series "
                f"{series_uid}; only single-frame CT slices are supported"
            )


def _image_type(ds: Dataset) -> list[str]:
    value = ds.get("ImageType", [])
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _require(ds: Dataset, keywords: Sequence[str]) -> None:
    for keyword in keywords:
        if keyword not in ds or ds[keyword].value in (None, ""):
            raise MissingAttributeError(f"{ds.filename}: required attribute {keyword} is missing or empty")


def _same_orientation(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[:3] @ b[:3] >= 1 - ORIENTATION_TOLERANCE and a[3:] @ b[3:] >= 1 - ORIENTATION_TOLERANCE)


def _matrix(ds: Dataset) -> tuple[int, int, tuple[float, ...]]:
    return int(ds.Rows), int(ds.Columns), tuple(float(v) for v in ds.PixelSpacing)


def drop_localizers(members: list[Dataset], series_uid: str) -> list[Dataset]:
    """Remove localizers by the rule in ``read_ct_series``'s docstring."""
    images = [ds for ds in members if "LOCALIZER" not in _image_type(ds)]
    skipped = [ds for ds in members if "LOCALIZER" in _image_type(ds)]
    for ds in images:
        _require(ds, _GEOMETRY_KEYWORDS)
    # Cluster orientations, most common exact value first (highdicom's reference).
    clusters: list[tuple[np.ndarray, list[Dataset]]] = []
    counts = Counter(tuple(float(v) for v in ds.ImageOrientationPatient) for ds in images)
    for orientation, _ in counts.most_common():
        reference = np.array(orientation)
        if not any(_same_orientation(reference, rep) for rep, _ in clusters):
            clusters.append((reference, []))
    for ds in images:
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        next(group for rep, group in clusters if _same_orientation(iop, rep)).append(ds)
    if len(clusters) > 1:
        clusters.sort(key=lambda c: len(c[1]), reverse=True)
        majority = clusters[0][1]
        if 2 * len(majority) <= len(images):
            raise InconsistentGeometryError(
                f"ImageOrientationPatient differs between slices of series {series_uid} and no "
                f"orientation has a majority: {[len(group) for _, group in clusters]} slices per orientation"
            )
        reference_matrix = _matrix(majority[0])
        for _, group in clusters[1:]:
            for ds in group:
                if _matrix(ds) == reference_matrix:
                    raise InconsistentGeometryError(
                        f"{ds.filename}: ImageOrientationPatient {list(ds.ImageOrientationPatient)} differs "
                        f"from the series' {list(majority[0].ImageOrientationPatient)} (series {series_uid}); "
                        "same matrix as the other slices, so it is not taken for a localizer"
                    )
                skipped.append(ds)
        images = majority
    if skipped:
        logger.info(
            "series %s: skipped %d localizer image(s): %s",
            series_uid,
            len(skipped),
            ", ".join(str(ds.get("SOPInstanceUID", "?")) for ds in skipped),
        )
    return images


def _uid(ds: Dataset, keyword: str) -> str:
    if keyword not in ds:
        error = MissingFrameOfReferenceError if keyword == "FrameOfReferenceUID" else MissingAttributeError
        raise error(f"{ds.filename}: {keyword} is missing")
    return validate_uid(str(ds[keyword].value or ""), f"{keyword} in {ds.filename}")


def check_identity(slices: list[Dataset], series_uid: str) -> tuple[str, str]:
    """Valid, consistent UIDs; returns the study and frame of reference UIDs."""
    seen: dict[str, Dataset] = {}
    for ds in slices:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
            _uid(ds, keyword)
        sop_uid = _uid(ds, "SOPInstanceUID")
        if sop_uid in seen:
            raise DuplicateSliceError(
                f"duplicate SOPInstanceUID {sop_uid} in series {series_uid}: "
                f"{seen[sop_uid].filename} and {ds.filename} (the same image stored twice?)"
            )
        seen[sop_uid] = ds
    first = slices[0]
    for ds in slices[1:]:
        if ds.StudyInstanceUID != first.StudyInstanceUID:
            raise DicomInputError(
                f"series {series_uid} spans two studies: {first.StudyInstanceUID} in {first.filename}, "
                f"{ds.StudyInstanceUID} in {ds.filename}"
            )
        if ds.FrameOfReferenceUID != first.FrameOfReferenceUID:
            raise InconsistentGeometryError(
                f"FrameOfReferenceUID differs within series {series_uid}: {first.FrameOfReferenceUID} "
                f"in {first.filename}, {ds.FrameOfReferenceUID} in {ds.filename}"
            )
    return str(first.StudyInstanceUID), str(first.FrameOfReferenceUID)


def check_plane_attributes(slices: list[Dataset], series_uid: str) -> None:
    """No gantry tilt; same Rows, Columns and (exactly, as highdicom requires) PixelSpacing."""
    first = slices[0]
    for ds in slices:
        tilt = float(ds.get("GantryDetectorTilt") or 0.0)
        if tilt != 0.0:
            raise GantryTiltError(
                f"{ds.filename}: gantry tilt of {tilt} degrees (GantryDetectorTilt) in series "
                f"{series_uid}; tilted series must be resampled before use"
            )
        for name, a, b in (
            ("Rows", first.Rows, ds.Rows),
            ("Columns", first.Columns, ds.Columns),
            ("PixelSpacing", list(first.PixelSpacing), list(ds.PixelSpacing)),
        ):
            if a != b:
                raise InconsistentGeometryError(
                    f"{name} differs within series {series_uid}: {a} in {first.filename}, {b} in {ds.filename}"
                )


def check_stacking(
    slices: list[Dataset], series_uid: str, atol: float, rtol: float
) -> tuple[list[Dataset], dict[str, float]]:
    """Sort along the normal and check duplicates, tilt, gaps and uniformity.

    Returns the sorted slices and the tolerances that let highdicom accept
    exactly what was accepted here.
    """
    orientation = [float(v) for v in slices[0].ImageOrientationPatient]
    normal = get_normal_vector(orientation, index_convention=VOLUME_INDEX_CONVENTION)
    order = hd.spatial.get_plane_sort_index([ds.ImagePositionPatient for ds in slices], orientation)
    ordered = [slices[i] for i in order]
    positions = np.array([ds.ImagePositionPatient for ds in ordered], dtype=float)
    along = positions @ normal
    gaps = np.diff(along)
    names = [str(ds.filename) for ds in ordered]

    duplicates = np.flatnonzero(gaps <= atol)
    if duplicates.size:
        i = duplicates[0]
        raise DuplicateSliceError(
            f"duplicate slice position in series {series_uid}: {names[i]} and {names[i + 1]} both lie "
            f"at {along[i]:.3f} mm along the slice normal"
        )

    offsets = (positions - positions[0]) - np.outer(along - along[0], normal)
    drift = np.linalg.norm(offsets, axis=1)
    min_pixel = min(float(v) for v in ordered[0].PixelSpacing)
    worst = int(np.argmax(drift))
    if drift[worst] > atol + rtol * min_pixel:
        angle = np.degrees(np.arctan2(drift[worst], abs(along[worst] - along[0])))
        raise GantryTiltError(
            f"gantry tilt in series {series_uid}: slices are not stacked along their normal; "
            f"{names[worst]} is shifted {drift[worst]:.3f} mm in-plane from {names[0]} "
            f"(about {angle:.2f} degrees); tilted series must be resampled before use"
        )
    spans = np.hypot(along[1:] - along[0], drift[1:])
    perpendicular_deviation = float(np.max(1 - np.abs(along[1:] - along[0]) / spans))

    typical = float(np.median(gaps))
    tolerance = atol + rtol * typical
    multiples = np.rint(gaps / typical)
    missing = np.flatnonzero((multiples >= 2) & (np.abs(gaps - multiples * typical) <= tolerance * multiples))
    if missing.size:
        details = "; ".join(
            f"{int(multiples[i]) - 1} slice(s) missing after sorted slice {i} ({names[i]}, "
            f"{along[i]:.3f} mm) before {names[i + 1]} ({along[i + 1]:.3f} mm)"
            for i in missing[:_MAX_LISTED]
        )
        raise MissingSliceError(
            f"missing slices in series {series_uid} (spacing {typical:.3f} mm): {details}"
        )

    mean = (along[-1] - along[0]) / (len(along) - 1)
    tolerance = atol + rtol * mean
    deviation = np.abs(gaps - mean)
    worst = int(np.argmax(deviation))
    if deviation[worst] > tolerance:
        raise NonUniformSpacingError(
            f"non-uniform slice spacing in series {series_uid}: {gaps[worst]:.4f} mm between "
            f"{names[worst]} and {names[worst + 1]}, mean spacing {mean:.4f} mm, tolerance "
            f"{tolerance:.4f} mm"
        )
    return ordered, {
        "atol": tolerance * (1 + 1e-9),
        "perpendicular_tol": max(1e-3, perpendicular_deviation * (1 + 1e-9)),
    }


def check_physical(ordered: list[Dataset], series_uid: str) -> None:
    """Plausible pixel and slice spacing, and stored values whose HU can be known.

    CT stores HU through Rescale Intercept/Slope (Type 1 in the CT Image module). Without them, signed values
    are taken as HU (with a warning); unsigned values are refused, because they are almost always HU + 1024
    and read as HU they turn soft tissue into bone.
    """
    low, high = PLAUSIBLE_SPACING_MM
    first, last = ordered[0], ordered[-1]
    slice_mm = float(np.linalg.norm(np.subtract(last.ImagePositionPatient, first.ImagePositionPatient, dtype=float)))
    slice_mm /= max(len(ordered) - 1, 1)
    for what, value in (("PixelSpacing (row)", float(first.PixelSpacing[0])),
                        ("PixelSpacing (column)", float(first.PixelSpacing[1])), ("slice spacing", slice_mm)):
        if not low <= value <= high:
            raise ImplausibleGeometryError(
                f"{first.filename}: {what} {value:g} mm in series {series_uid} is outside the plausible "
                f"{low:g}-{high:g} mm for CT"
            )
    lacking = [ds for ds in ordered if "RescaleIntercept" not in ds or "RescaleSlope" not in ds]
    if not lacking:
        return
    if any(int(ds.get("PixelRepresentation", 0)) == 0 for ds in lacking):
        raise UnknownHUError(
            f"{lacking[0].filename}: no RescaleIntercept/RescaleSlope on unsigned pixel values in series "
            f"{series_uid}, so their HU cannot be known (usually stored HU + 1024); add the Rescale attributes"
        )
    logger.warning("series %s: %d slice(s) without RescaleIntercept/RescaleSlope; their signed values are taken "
                   "as HU", series_uid, len(lacking))
