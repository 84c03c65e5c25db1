"""Write a highdicom Volume as a CT Image Storage series, one file per slice.

Used for the bundled sample, for ROI export and by tests to make synthetic
series. Output is deterministic: the same inputs give the same UIDs and the
same bytes (nothing time-based is written unless dates are given).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from pydicom.valuerep import format_number_as_ds

from dicom_io.provenance import derived_uid
from dicom_io.uids import validate_uid

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# Lossless only: a stored CT must read back exactly. pydicom can encode these.
_COMPRESSED = (RLELossless, JPEGLSLossless, JPEG2000Lossless)
_INT16 = np.iinfo(np.int16)
# pylibjpeg-openjpeg always encodes 6 resolution levels, which needs >= 32 pixels.
_J2K_MIN_SIZE = 32


def write_ct_series(
    volume: hd.Volume,
    out_dir: str | os.PathLike,
    *,
    study_instance_uid: str,
    series_instance_uid: str,
    frame_of_reference_uid: str,
    sop_instance_uid_for: Callable[[int], str] | None = None,
    patient_name: str = "Anonymous",
    patient_id: str = "ANON",
    series_description: str = "",
    series_number: int = 1,
    study_date: str = "",
    study_time: str = "",
    source_series: Sequence[Dataset] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    derived: bool = False,
    attributes: Mapping[str, object] | None = None,
) -> list[Path]:
    """Write ``volume`` (values in HU) as ``out_dir/CT_{index:04d}.dcm``.

    Slice ``index`` is ``volume.array[index]``; rows are array axis 1 and
    columns axis 2 (highdicom's convention), so position, orientation and
    spacing come straight from the affine, for any direction and origin.
    Readers stack slices along the right-handed normal, so a left-handed
    volume reads back as ``volume.ensure_handedness("RIGHT_HANDED", flip_axis=0)``.

    Values are rounded to integers and stored as int16, with RescaleIntercept 0
    when they fit, else with the intercept that shifts them into int16; a value
    range wider than 65535 HU would need a slope (lossy) and is refused.

    ``sop_instance_uid_for(index)`` defaults to a UID derived from the series
    UID and the index. With ``source_series`` the images are DERIVED\\SECONDARY
    and each slice references its nearest source slice (SourceImageSequence)
    and the source series (ReferencedSeriesSequence); the source must belong
    to ``study_instance_uid``. ``derived`` marks the images DERIVED\\SECONDARY without a source
    series (a CT made from a volume file). ``attributes`` (DICOM keyword -> value) are set on every slice
    last, over the defaults (patient, clinical trial, derivation attributes).
    """
    validate_uid(study_instance_uid, "study_instance_uid")
    validate_uid(series_instance_uid, "series_instance_uid")
    validate_uid(frame_of_reference_uid, "frame_of_reference_uid")
    if transfer_syntax not in _UNCOMPRESSED + _COMPRESSED:
        raise ValueError(
            f"transfer syntax {transfer_syntax!r} is not supported; use one of "
            f"{[str(ts) for ts in _UNCOMPRESSED + _COMPRESSED]} (lossless only)"
        )
    if transfer_syntax == JPEG2000Lossless and min(volume.spatial_shape[1:]) < _J2K_MIN_SIZE:
        raise ValueError(
            f"JPEG 2000 encoding needs at least {_J2K_MIN_SIZE} rows and columns, the volume has "
            f"{volume.spatial_shape[1:]}; use RLE or JPEG-LS lossless instead"
        )
    if volume.coordinate_system != hd.CoordinateSystemNames.PATIENT:
        raise ValueError("a CT volume must be in the PATIENT coordinate system")
    if volume.frame_of_reference_uid not in (None, frame_of_reference_uid):
        raise ValueError(
            f"volume frame of reference {volume.frame_of_reference_uid} differs "
            f"from frame_of_reference_uid {frame_of_reference_uid}"
        )
    if volume.array.ndim != 3:
        raise ValueError(f"expected a 3D volume without channels, got shape {volume.array.shape}")

    stored, intercept = _to_int16(volume.array)
    if sop_instance_uid_for is None:
        sop_instance_uid_for = _default_sop_uid_factory(series_instance_uid)
    identity = {
        "StudyInstanceUID": study_instance_uid,
        "SeriesInstanceUID": series_instance_uid,
        "FrameOfReferenceUID": frame_of_reference_uid,
        "PatientName": patient_name,
        "PatientID": patient_id,
        "SeriesNumber": series_number,
        "StudyDate": study_date,
        "StudyTime": study_time,
    }
    if study_date:  # Content Date/Time are 2C: only when the images have a time
        identity |= {"ContentDate": study_date, "ContentTime": study_time}
    if series_description:
        identity["SeriesDescription"] = series_description
    template = _series_template(volume, identity, intercept, derived=derived or bool(source_series))
    for keyword, value in (attributes or {}).items():
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"{keyword!r} is not a DICOM attribute keyword")
        setattr(template, keyword, value)
    nearest_source = None
    if source_series:
        template.ReferencedSeriesSequence = _referenced_series(source_series, study_instance_uid)
        nearest_source = _nearest_source_finder(source_series, volume)
    normal = np.cross(*np.reshape(volume.direction_cosines, (2, 3)))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(stored.shape[0]):
        ds = _slice_dataset(
            template,
            volume,
            index,
            stored[index],
            normal,
            validate_uid(sop_instance_uid_for(index), f"SOPInstanceUID for slice {index}"),
            transfer_syntax,
        )
        if nearest_source is not None:
            ds.SourceImageSequence = nearest_source(index)
        path = out / f"CT_{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _default_sop_uid_factory(series_instance_uid: str) -> Callable[[int], str]:
    def sop_uid(index: int) -> str:
        return derived_uid("ct slice", series_instance_uid, str(index))

    return sop_uid


def _to_int16(array: np.ndarray) -> tuple[np.ndarray, int]:
    """Round to integers and pick the intercept that makes them fit int16."""
    values = np.asarray(array)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ValueError("volume contains NaN or infinite values")
        values = np.rint(values)
    low, high = int(values.min()), int(values.max())
    if high - low > _INT16.max - _INT16.min:
        raise ValueError(f"value range {low}..{high} does not fit 16 bits without a rescale slope")
    if low >= _INT16.min and high <= _INT16.max:
        return values.astype(np.int16), 0
    intercept = low - _INT16.min
    return np.subtract(values, intercept, dtype=np.float64).astype(np.int16), intercept


def _ds(value: float) -> str:
    """Decimal string of at most 16 characters, as VR DS allows."""
    return format_number_as_ds(float(value))


def _series_template(volume: hd.Volume, identity: dict[str, str | int], intercept: int, derived: bool) -> Dataset:
    """Attributes shared by every slice (CT Image IOD, PS3.3 A.3); ``identity`` by keyword."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"] if derived else ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    for keyword, value in identity.items():
        setattr(ds, keyword, value)
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Laterality = ""  # type 2C; dciodvfy requires it when BodyPartExamined is unknown
    ds.Manufacturer = "BoneHub Segmentation"
    ds.ReferringPhysicianName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.SliceThickness = _ds(volume.spacing_between_slices)
    ds.KVP = ""
    ds.SpacingBetweenSlices = _ds(volume.spacing_between_slices)
    ds.PatientPosition = ""
    ds.StudyID = ""
    ds.AcquisitionNumber = ""
    ds.ImageOrientationPatient = [_ds(v) for v in volume.direction_cosines]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = volume.spatial_shape[1:]
    ds.PixelSpacing = [_ds(v) for v in volume.pixel_spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    return ds


def _slice_dataset(
    template: Dataset,
    volume: hd.Volume,
    index: int,
    frame: np.ndarray,
    normal: np.ndarray,
    sop_instance_uid: str,
    transfer_syntax: str,
) -> Dataset:
    ds = Dataset()
    ds.update(template)
    position = (volume.affine @ np.array([index, 0.0, 0.0, 1.0]))[:3]
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.SliceLocation = _ds(position @ normal)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    if transfer_syntax in _UNCOMPRESSED:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.PixelData = np.ascontiguousarray(frame).tobytes()
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        # pydicom would otherwise give the compressed copy a new random UID.
        ds.compress(transfer_syntax, np.ascontiguousarray(frame), generate_instance_uid=False)
    return ds


def _referenced_series(source: Sequence[Dataset], study_instance_uid: str) -> DicomSequence:
    """Common Instance Reference: the source series, same study required."""
    studies = {ds.StudyInstanceUID for ds in source}
    if studies != {study_instance_uid}:
        raise ValueError(
            f"source series belongs to study {sorted(studies)}, not to {study_instance_uid}; "
            "a derived CT is written into its source's study"
        )
    by_series: dict[str, list[Dataset]] = {}
    for src in source:
        by_series.setdefault(src.SeriesInstanceUID, []).append(src)
    items = []
    for series_uid, members in by_series.items():
        item = Dataset()
        item.SeriesInstanceUID = series_uid
        item.ReferencedInstanceSequence = DicomSequence([_sop_reference(m) for m in members])
        items.append(item)
    return DicomSequence(items)


def _nearest_source_finder(source: Sequence[Dataset], volume: hd.Volume) -> Callable[[int], DicomSequence]:
    """For slice ``index``: a reference to the source slice whose plane lies closest to its centre."""
    positions = np.array([ds.ImagePositionPatient for ds in source], dtype=float)
    orientations = np.array([ds.ImageOrientationPatient for ds in source], dtype=float)
    normals = np.cross(orientations[:, :3], orientations[:, 3:])
    rows, columns = volume.spatial_shape[1:]

    def nearest(index: int) -> DicomSequence:
        centre = (volume.affine @ np.array([index, (rows - 1) / 2, (columns - 1) / 2, 1.0]))[:3]
        distances = np.abs(np.einsum("ij,ij->i", centre - positions, normals))
        return DicomSequence([_sop_reference(source[int(np.argmin(distances))])])

    return nearest


def _sop_reference(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item
