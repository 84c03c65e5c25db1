"""Read one CT series from DICOM files into a highdicom Volume in HU.

Headers are read first (no pixels) to group files by SeriesInstanceUID and to
check the chosen series; pixels are decoded once, only for that series. Every
refusal is one of the explicit errors in ``dicom_io.errors`` and names the
problem and the file or UID, because highdicom alone answers most bad inputs
with a generic ``ValueError('Series is not a regularly-spaced volume.')``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from highdicom.spatial import VOLUME_INDEX_CONVENTION, get_normal_vector
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import MediaStorageDirectoryStorage

from dicom_io.errors import (
    DicomInputError,
    DuplicateSliceError,
    GantryTiltError,
    InconsistentGeometryError,
    MissingAttributeError,
    MissingFrameOfReferenceError,
    MissingSliceError,
    NonUniformSpacingError,
    NotCTError,
    SeriesSelectionError,
    TooFewSlicesError,
)
from dicom_io.uids import validate_uid

logger = logging.getLogger(__name__)

Source = str | os.PathLike | Sequence[str | os.PathLike]

# Two orientations are the same when each direction cosine vector of one has a
# cosine similarity of at least 1 - this with the other's (about 0.08 degrees);
# highdicom's ``orientation_tol`` uses the same measure.
ORIENTATION_TOLERANCE = 1e-6
_GEOMETRY_KEYWORDS = ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns")
_MAX_LISTED = 5


@dataclass(frozen=True)
class SeriesSummary:
    """One series found in a source: enough to choose it, no patient data."""

    series_uid: str
    modality: str
    n_images: int
    description: str
    study_uid: str = ""  # empty when the files disagree or lack it


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
    return [_summary(uid, headers) for uid, headers in sorted(_group_by_series(_read_headers(source)).items())]


def read_ct_series(
    source: Source,
    series_uid: str | None = None,
    *,
    spacing_tolerance_mm: float = 0.01,
    spacing_tolerance_rel: float = 0.01,
) -> CTSeries:
    """Read, check and decode one CT series from a folder or a list of files.

    A folder is walked recursively; files of any name are read, and files that
    are not DICOM (no DICM preamble) or are a DICOMDIR are skipped silently.
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

    The volume array is float32 with the modality LUT (rescale) applied, axis 0
    ordered along the right-handed slice normal (highdicom's convention).
    """
    headers = _read_headers(source)
    where = _describe(source)
    uid, members = _select_series(_group_by_series(headers), series_uid, where)
    _check_members(members, uid)
    slices = _drop_localizers(members, uid)
    if len(slices) < 2:
        raise TooFewSlicesError(
            f"series {uid} has {len(slices)} image slice(s) in {where}; a volume needs at least 2"
        )
    study_uid, frame_uid = _check_identity(slices, uid)
    _check_plane_attributes(slices, uid)
    ordered, tolerances = _check_stacking(slices, uid, spacing_tolerance_mm, spacing_tolerance_rel)

    datasets = [pydicom.dcmread(ds.filename) for ds in ordered]
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


def _describe(source: Source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"{len(source)} given files"


def _read_headers(source: Source) -> list[Dataset]:
    """Headers of all DICOM files in ``source``; pixel data is not read."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise DicomInputError(f"{folder} is not a folder; pass a folder or a list of files")
        paths = sorted(Path(root) / name for root, _, names in os.walk(folder) for name in names)
        explicit = False
    else:
        paths = [Path(p) for p in source]
        explicit = True
    headers = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError as exc:
            if explicit:
                raise DicomInputError(f"{path} is not a DICOM file") from exc
            continue
        except Exception as exc:  # pydicom raises many types for corrupt files
            raise DicomInputError(f"cannot read DICOM file {path}: {exc}") from exc
        if ds.file_meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
            continue
        headers.append(ds)
    return headers


def _group_by_series(headers: list[Dataset]) -> dict[str, list[Dataset]]:
    groups: dict[str, list[Dataset]] = {}
    for ds in headers:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    return groups


def _summary(uid: str, headers: list[Dataset]) -> SeriesSummary:
    modalities = sorted({str(ds.get("Modality", "")) for ds in headers})
    studies = {str(ds.get("StudyInstanceUID", "")) for ds in headers}
    return SeriesSummary(
        series_uid=uid,
        modality="/".join(modalities),
        n_images=len(headers),
        description=str(headers[0].get("SeriesDescription", "")),
        study_uid=studies.pop() if len(studies) == 1 else "",
    )


def _listing(groups: dict[str, list[Dataset]]) -> str:
    return "; ".join(
        f"{s.series_uid or '<no SeriesInstanceUID>'} ({s.modality or '?'}, {s.n_images} images)"
        for s in (_summary(uid, h) for uid, h in sorted(groups.items()))
    )


def _select_series(
    groups: dict[str, list[Dataset]], series_uid: str | None, where: str
) -> tuple[str, list[Dataset]]:
    if not groups:
        raise SeriesSelectionError(f"no DICOM files found in {where}")
    if series_uid is not None:
        validate_uid(series_uid, "requested series_uid")
        if series_uid not in groups:
            raise SeriesSelectionError(
                f"series {series_uid} not found in {where}; series present: {_listing(groups)}"
            )
        return series_uid, groups[series_uid]
    ct = {uid: members for uid, members in groups.items() if any(ds.get("Modality") == "CT" for ds in members)}
    if not ct:
        raise NotCTError(f"no CT series in {where}; series present: {_listing(groups)}")
    if len(ct) > 1:
        raise SeriesSelectionError(
            f"{len(ct)} CT series in {where}, choose one with series_uid: {_listing(ct)}"
        )
    return next(iter(ct.items()))


def _check_members(members: list[Dataset], series_uid: str) -> None:
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


def _drop_localizers(members: list[Dataset], series_uid: str) -> list[Dataset]:
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


def _check_identity(slices: list[Dataset], series_uid: str) -> tuple[str, str]:
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


def _check_plane_attributes(slices: list[Dataset], series_uid: str) -> None:
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


def _check_stacking(
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
    except ValueError as exc:  # a case the checks above do not know yet
        raise DicomInputError(f"cannot build a volume from series {series_uid}: {exc}") from exc
