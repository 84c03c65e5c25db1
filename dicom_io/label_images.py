"""Label map files (NIfTI, NRRD) <-> volumes on the CT grid.

SimpleITK reads both formats into LPS physical space, so a NIfTI stored in RAS
and a DICOM CT meet in one coordinate system without hand-written flips. A
label image on the CT grid up to axis order/flips is matched exactly; any other
grid is resampled nearest-neighbour onto the CT grid. A label map that does not
lie inside the CT (wrong file, wrong orientation, wrong frame) is refused rather
than silently cropped.
"""

from __future__ import annotations

import logging
import os

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from dicom_io.errors import DicomInputError
from dicom_io.geometry import GRID_TOLERANCE_MM, match_grid, same_grid

log = logging.getLogger(__name__)

MAX_OUTSIDE_FRACTION = 0.01  # share of labelled voxels allowed to fall outside the CT grid
LABEL_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


class LabelGridError(DicomInputError):
    """A label map that does not fit the CT it is meant for."""


def read_label_image(path: str | os.PathLike) -> hd.Volume:
    """A NIfTI/NRRD label map as an integer volume in LPS."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DicomInputError(f"{path}: cannot read label image ({str(error).strip().splitlines()[-1]})") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DicomInputError(f"{path}: a label map must be one 3D scalar image, got {image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} components")
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        array = sitk.GetArrayViewFromImage(image)
        if not np.array_equal(array, np.round(array)):
            raise DicomInputError(f"{path}: label map holds non-integer values")
        image = sitk.Cast(image, sitk.sitkInt32)
    return hd.Volume.from_simpleitk(image)


def write_label_image(volume: hd.Volume, path: str | os.PathLike) -> None:
    """Write a label volume as NIfTI or NRRD (by file extension), compressed."""
    if not str(path).lower().endswith(LABEL_IMAGE_SUFFIXES):
        raise DicomInputError(f"{path}: label image must end in one of {', '.join(LABEL_IMAGE_SUFFIXES)}")
    sitk.WriteImage(volume.to_simpleitk(), str(path), useCompression=True)


def onto_grid(labels: hd.Volume, geometry: hd.VolumeGeometry, *, where: str = "label map") -> np.ndarray:
    """The label array on ``geometry``: exact when the grids coincide up to axis order, else nearest-neighbour."""
    if same_grid(labels, geometry):  # every voxel is inside: nothing to check or move
        return np.ascontiguousarray(labels.array)
    _check_inside(labels, geometry, where)
    if (matched := match_grid(labels, geometry)) is not None:
        return np.ascontiguousarray(matched.array)
    log.info("%s: grid differs from the CT grid, resampling nearest-neighbour", where)
    reference = geometry.with_array(np.zeros(geometry.spatial_shape, np.uint8)).to_simpleitk()
    moved = sitk.Resample(labels.to_simpleitk(), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return np.ascontiguousarray(hd.Volume.from_simpleitk(moved).match_geometry(geometry, tol=GRID_TOLERANCE_MM).array)


def _check_inside(labels: hd.Volume, geometry: hd.VolumeGeometry, where: str) -> None:
    """Refuse a label map whose labelled voxels mostly fall outside the CT grid."""
    step = 2  # every 8th voxel is plenty for a fraction and keeps whole-body maps fast
    indices = np.argwhere(labels.array[::step, ::step, ::step]) * step
    if len(indices) == 0:
        return
    world = labels.map_indices_to_reference(indices)
    on_ct = geometry.map_reference_to_indices(world, round_output=False)
    inside = np.all((on_ct > -0.5) & (on_ct < np.array(geometry.spatial_shape) - 0.5), axis=1)
    outside = 1.0 - inside.mean()
    if outside > MAX_OUTSIDE_FRACTION:
        raise LabelGridError(
            f"{where}: {outside:.0%} of its labelled voxels lie outside the CT grid "
            "(another series, a wrong orientation or a wrong frame of reference?)"
        )
