"""A small synthetic CT series with one bright, bone-like box off-centre, and checks on where a label lands.

The grid is axial but oblique and anisotropic, and the box sits away from every mirror plane, so a flipped,
transposed or mis-spaced result lands somewhere else and fails ``object_labelled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from scipy.spatial.transform import Rotation

from dicom_io.ct_series import CTSeries, read_ct_series
from dicom_io.ct_writer import write_ct_series

STUDY_UID = "1.2.826.0.1.3680043.8.498.71"
SERIES_UID = "1.2.826.0.1.3680043.8.498.72"
FRAME_UID = "1.2.826.0.1.3680043.8.498.73"
BRIGHT_HU = 1000
SOFT_TISSUE_HU = 40
AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # slices feet-ward, rows posterior, columns left


@dataclass(frozen=True)
class BrightObjectCT:
    ct: CTSeries
    object_mask: np.ndarray  # bool, on the CT grid

    def centre_mm(self, mask: np.ndarray) -> np.ndarray:
        """Patient (LPS) position of a mask's centroid on this CT's grid."""
        return self.ct.volume.map_indices_to_reference(np.argwhere(mask).mean(axis=0)[None])[0]


def write_bright_object_ct(
    out_dir: Path,
    shape: tuple[int, int, int] = (40, 48, 56),
    spacing: tuple[float, float, float] = (2.5, 2.0, 1.5),
    box: tuple[slice, slice, slice] = (slice(6, 16), slice(28, 40), slice(8, 24)),
    seed: int = 0,
) -> BrightObjectCT:
    """Write the series to ``out_dir`` and read it back as the pipeline would."""
    rng = np.random.default_rng(seed)
    array = rng.normal(SOFT_TISSUE_HU, 10.0, shape)
    mask = np.zeros(shape, bool)
    mask[box] = True
    array[mask] = rng.normal(BRIGHT_HU, 30.0, int(mask.sum()))
    volume = hd.Volume.from_components(
        array.round().astype(np.int16),
        spacing=list(spacing),
        direction=Rotation.from_euler("xyz", [8, -5, 12], degrees=True).as_matrix() @ AXIAL,
        position=[-60.0, -40.5, 120.0],
        coordinate_system="PATIENT",
        frame_of_reference_uid=FRAME_UID,
    )
    write_ct_series(volume, out_dir, study_instance_uid=STUDY_UID, series_instance_uid=SERIES_UID, frame_of_reference_uid=FRAME_UID)
    ct = read_ct_series(out_dir)
    if not np.allclose(ct.volume.affine, volume.affine, atol=1e-3):
        raise AssertionError("the synthetic CT did not read back on the grid it was written with")
    return BrightObjectCT(ct, mask)


def object_labelled(bright: BrightObjectCT, schema_map: np.ndarray, schema_id: int, *, min_recall: float = 0.8, max_shift_mm: float = 3.0) -> None:
    """Assert that ``schema_id`` covers the bright object, centred on it, and is (nearly) all that was labelled."""
    labelled = schema_map == schema_id
    assert labelled.any(), f"schema id {schema_id} not found; ids present: {np.unique(schema_map).tolist()}"
    recall = (labelled & bright.object_mask).sum() / bright.object_mask.sum()
    assert recall >= min_recall, f"schema id {schema_id} covers only {recall:.0%} of the bright object"
    shift = np.linalg.norm(bright.centre_mm(labelled) - bright.centre_mm(bright.object_mask))
    assert shift <= max_shift_mm, f"schema id {schema_id} is centred {shift:.1f} mm away from the bright object"
    others = (schema_map > 0) & ~labelled
    assert others.sum() <= 0.05 * labelled.sum(), f"{others.sum()} voxels carry other ids: {np.unique(schema_map[others]).tolist()}"
