"""CT volume files (NIfTI, NRRD, MHA/MHD) read and checked before they become a DICOM CT series.

Public CT collections (BoneHub-Dataset's ``Image/`` folders among them) ship CT as NIfTI or NRRD, not DICOM.
Such a file says less than a DICOM series and fails in other ways, so it is checked here, each refusal a
``VolumeInputError`` naming the file and the reason:

- readable (an empty or truncated file is refused with the reader's reason) and one 3-D scalar image
  (2-D, 4-D, vector/RGB images are refused), at least 2 voxels along each axis. SimpleITK (ITK 5.4) reads
  a truncated NIfTI without complaint, zero-filling what is missing, and turns NaN and infinite NIfTI
  voxels into 0, so a NIfTI's data is counted (``dicom_io.nifti_complete``) and stored floats are read
  once more with nibabel (a second decompression: the price of not segmenting a CT whose last slices
  are zeros);
- direction orthonormal within ``DIRECTION_TOLERANCE`` (1e-4; NIfTI keeps directions as float32
  quaternions or affines, some 1e-7 off), origin finite;
- spacing finite and within ``SPACING_RANGE_MM`` (0.01 mm, below any CT voxel, to 50 mm, above any CT slice
  thickness): outside it the header is wrong (metres, or a missing pixdim);
- values finite and within ``HU_RANGE`` (-32768..32767): scanners store HU as 16-bit integers (padding
  down to -32768, metal up to +30710 on extended scales), so anything outside is not HU. Non-integer values
  (a resampled or filtered CT) are rounded to whole HU and the largest change is reported, to be recorded
  with the series: CT noise is tens of HU, so half an HU changes nothing a segmentation sees, and an
  integer-valued CT (what public datasets ship) is stored exactly.

The volume comes back as a highdicom ``Volume`` (LPS, as SimpleITK reads every format) whose axes are
(slices, rows, columns) = SimpleITK's (z, y, x), right-handed, so ``dicom_io.ct_writer`` writes the
file's own slices and ``dicom_io.ct_series`` reads them back in the same order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import SimpleITK as sitk

from dicom_io.nifti_complete import nifti_data_problem
from labels.errors import BoneHubInputError

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DETACHED_SUFFIXES = (".nhdr", ".mhd")  # header files whose voxels live in another file
DIRECTION_TOLERANCE = 1e-4
SPACING_RANGE_MM = (0.01, 50.0)
HU_RANGE = (-32768, 32767)
_CHUNK = 1 << 20


class VolumeInputError(BoneHubInputError):
    """A CT volume file that cannot be used (unreadable, not 3-D, bad geometry or values)."""


@dataclass(frozen=True)
class CheckedVolume:
    """A checked CT volume: int16 HU on a (slices, rows, columns) grid in LPS, and how much rounding changed."""

    volume: hd.Volume
    rounded_by: float  # largest |value - whole HU| before rounding; 0.0 for integer-valued files


def is_volume_file(path: Path) -> bool:
    """Whether the name ends in a volume suffix (3D Slicer masks, ``.seg.nrrd``, are not CT)."""
    name = path.name.lower()
    return name.endswith(VOLUME_SUFFIXES) and not name.endswith(".seg.nrrd")


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def volume_digest(path: Path, checked: CheckedVolume) -> str:
    """The content digest of a volume file: its bytes, or for a detached header its bytes and the checked voxels."""
    if not path.name.lower().endswith(DETACHED_SUFFIXES):
        return file_digest(path)
    digest = hashlib.sha256(path.read_bytes())
    digest.update(np.ascontiguousarray(checked.volume.array).tobytes())
    digest.update(np.asarray(checked.volume.affine, dtype=np.float64).tobytes())
    return digest.hexdigest()


def read_volume(path: str | os.PathLike) -> CheckedVolume:
    """Read and check one CT volume file; ``VolumeInputError`` names the file and what is wrong."""
    path = Path(path)
    image = _read_image(path)
    _check_geometry(image, path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        _check_nifti_voxels(path)
    array, rounded_by = _hu_values(sitk.GetArrayFromImage(image), path)
    direction = np.reshape(image.GetDirection(), (3, 3))
    volume = hd.Volume.from_components(
        array, spacing=image.GetSpacing()[::-1], direction=direction[:, ::-1], position=image.GetOrigin(),
        coordinate_system="PATIENT")
    return CheckedVolume(volume.ensure_handedness("RIGHT_HANDED", flip_axis=0), rounded_by)


def _read_image(path: Path) -> sitk.Image:
    if not path.is_file():
        raise VolumeInputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VolumeInputError(f"{path}: empty file")
    if not is_volume_file(path):
        raise VolumeInputError(f"{path}: not a CT volume file; expected one of {', '.join(VOLUME_SUFFIXES)}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        raise VolumeInputError(f"{path}: cannot read the volume ({lines[-1] if lines else 'unknown reason'}; "
                               "truncated or not this format?)") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeInputError(f"{path}: a CT volume has one value per voxel, this one has "
                               f"{image.GetNumberOfComponentsPerPixel()} (vector or colour image)")
    if image.GetDimension() != 3:
        raise VolumeInputError(f"{path}: a CT volume is 3-D, this image is {image.GetDimension()}-D "
                               f"(size {list(image.GetSize())})")
    return image


def _check_nifti_voxels(path: Path) -> None:
    """Refuse a NIfTI whose voxel data is cut short or holds NaN/infinite values (SimpleITK hides both)."""
    if (problem := nifti_data_problem(path)) is not None:
        raise VolumeInputError(f"{path}: {problem}")
    stored = nib.load(path)
    if stored.get_data_dtype().kind == "f":  # only stored floats can be NaN: read them once more, unconverted
        voxels = np.asanyarray(stored.dataobj)
        if not np.isfinite(voxels).all():
            raise VolumeInputError(f"{path}: {int(voxels.size - np.count_nonzero(np.isfinite(voxels)))} voxels are "
                                   "NaN or infinite")


def _check_geometry(image: sitk.Image, path: Path) -> None:
    size = image.GetSize()
    if min(size) < 2:
        raise VolumeInputError(f"{path}: size {list(size)} is not a volume (at least 2 voxels along each axis)")
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    low, high = SPACING_RANGE_MM
    if not np.isfinite(spacing).all() or spacing.min() < low or spacing.max() > high:
        raise VolumeInputError(f"{path}: voxel spacing {spacing.round(6).tolist()} mm is outside {low}..{high} mm")
    direction = np.reshape(image.GetDirection(), (3, 3))
    if not np.isfinite(direction).all() or np.abs(direction.T @ direction - np.eye(3)).max() > DIRECTION_TOLERANCE:
        raise VolumeInputError(f"{path}: direction {direction.round(6).tolist()} is not orthonormal "
                               f"(within {DIRECTION_TOLERANCE}); sheared or scaled axes are not a CT grid")
    if not np.isfinite(image.GetOrigin()).all():
        raise VolumeInputError(f"{path}: origin {list(image.GetOrigin())} is not finite")


def _hu_values(array: np.ndarray, path: Path) -> tuple[np.ndarray, float]:
    """The voxels as int16 HU and the largest rounding change; refuses non-finite and out-of-range values."""
    if array.dtype.kind not in "iuf":
        raise VolumeInputError(f"{path}: voxel type {array.dtype} is not a CT's (integers or floats)")
    rounded_by = 0.0
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise VolumeInputError(f"{path}: {int(array.size - np.count_nonzero(finite))} voxels are NaN or infinite")
        whole = np.rint(array)
        rounded_by = float(np.abs(array - whole).max())
        array = whole
    low, high = float(array.min()), float(array.max())
    if low < HU_RANGE[0] or high > HU_RANGE[1]:
        raise VolumeInputError(f"{path}: values {low:g}..{high:g} are not CT Hounsfield units "
                               f"(expected within {HU_RANGE[0]}..{HU_RANGE[1]})")
    return array.astype(np.int16), rounded_by
