"""Label map files (NIfTI, NRRD) <-> volumes on the CT grid.

SimpleITK reads both formats into LPS physical space, so a NIfTI stored in RAS
and a DICOM CT meet in one coordinate system without hand-written flips. A
label image on the CT grid up to axis order/flips is matched exactly; any other
grid is resampled nearest-neighbour onto the CT grid.
"""

from __future__ import annotations

import logging
import os

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from dicom_io.errors import DicomInputError

log = logging.getLogger(__name__)


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
    sitk.WriteImage(volume.to_simpleitk(), str(path), useCompression=True)


def onto_grid(labels: hd.Volume, geometry: hd.VolumeGeometry) -> np.ndarray:
    """The label array on ``geometry``: exact when the grids coincide up to axis order, else nearest-neighbour."""
    try:
        return labels.match_geometry(geometry).array
    except (ValueError, RuntimeError):
        log.info("label grid differs from the CT grid: resampling nearest-neighbour")
    reference = geometry.with_array(np.zeros(geometry.spatial_shape, np.uint8)).to_simpleitk()
    moved = sitk.Resample(labels.to_simpleitk(), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return hd.Volume.from_simpleitk(moved).match_geometry(geometry).array
