"""A segmentation source that needs no weights: bone tissue by CT number, labelled as the whole skeleton.

Why it exists: a vote that costs seconds on a CPU and never fails for want of a
model, so QC always has an independent second opinion on where bone is. A
threshold cannot tell one bone from another, so it claims only the schema root
``skeleton`` (native label 1 of the packaged label set ``bonehub_baseline``).

CT numbers used (typical ranges, general radiological knowledge):
air -1000 HU, lung -900 to -500, fat -100 to -50, unenhanced soft tissue and
blood 0 to 80, cartilage about 80 to 130, trabecular bone about 100 to 300
(lower with osteoporosis), cortical bone about 500 to 1900. Partial volume
pulls thin bone (ribs, cortex) towards its surroundings, the more so the
thicker the slices.

Method (``segment_bone``):

1. Body: voxels above -500 HU (midway between air and soft tissue), holes filled
   in each slice (lungs, bowel gas), opened by a 5 mm ball on a grid of about
   3 mm (the opening cuts off the patient table, whose shell is a few mm thick,
   where it touches the skin), and the 3D parts holding at least 5 % of the
   largest one's volume (both legs, an arm beside the body; not table rails).
2. Bone, by hysteresis: voxels of at least ``grow_hu`` (120 HU: above
   unenhanced soft tissue, blood and most cartilage, below trabecular bone and
   partial-volume bone edges) connected to a voxel of at least ``seed_hu``
   (300 HU: reached by bone, not by soft tissue or cartilage). Components
   smaller than ``min_component_ml`` (a kidney stone, a calcified node) or
   lying mostly outside the body (the table, its rails) are dropped.
3. Cortex sealed by a 1.5 mm closing in the slice plane, then marrow filled:
   holes enclosed in a slice, of at most ``max_marrow_cm2`` (a lumbar vertebral
   body or femoral head holds well under 30 cm2; the pelvic inlet and the
   cranial cavity are far larger) and not air on average (paranasal sinuses,
   mastoid cells).

Known limits: contrast-filled vessels in an arterial phase, vascular
calcifications and metal reach the seed level and are labelled when large
enough; costal cartilage (which the schema counts under the thoracic cage) is
missed unless calcified; discs and the spinal canal are filled where a bony ring
encloses them in a slice; a table moulded to the body over a broad area with no
pad between them is not removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dicom_io.ct_series import CTSeries
from labels.label_sets import LabelSet, load_label_set
from models.base import Prediction

LABEL_SET = "bonehub_baseline"
BONE_VALUE = 1  # the only native label: bone tissue -> schema root "skeleton"

# Fixed parts of method v1 (changing one means a new method version).
BODY_HU = -500.0
BODY_GRID_MM = 3.0
BODY_OPENING_MM = 5.0
MIN_BODY_PART_FRACTION = 0.05
MIN_INSIDE_BODY_FRACTION = 0.5
CLOSING_MM = 1.5
AIR_HU = -200.0  # a hole whose mean is below this is air, not marrow
METHOD_VERSION = "v1"

_IN_PLANE_FACES = np.zeros((3, 3, 3), bool)
_IN_PLANE_FACES[1] = ndimage.generate_binary_structure(2, 1)
_ALL_NEIGHBOURS = ndimage.generate_binary_structure(3, 3)


@dataclass(frozen=True)
class BoneThresholdParameters:
    """The tunable numbers of the method; all of them appear in the version string."""

    seed_hu: float = 300.0
    grow_hu: float = 120.0
    max_marrow_cm2: float = 30.0
    min_component_ml: float = 0.2

    def __post_init__(self) -> None:
        if not self.grow_hu < self.seed_hu:
            raise ValueError(f"bone threshold baseline: grow_hu {self.grow_hu} must be below seed_hu {self.seed_hu}")
        if not self.grow_hu > BODY_HU:
            raise ValueError(f"bone threshold baseline: grow_hu {self.grow_hu} must be above the body threshold {BODY_HU} HU")
        if self.max_marrow_cm2 < 0 or self.min_component_ml < 0:
            raise ValueError(f"bone threshold baseline: max_marrow_cm2 {self.max_marrow_cm2} and "
                             f"min_component_ml {self.min_component_ml} must not be negative")

    @property
    def tag(self) -> str:
        """e.g. ``hysteresis-120-300HU-marrow30cm2-min0.2mL-v1``: a new number gives a new SEG identity."""
        return (f"hysteresis-{self.grow_hu:g}-{self.seed_hu:g}HU-marrow{self.max_marrow_cm2:g}cm2"
                f"-min{self.min_component_ml:g}mL-{METHOD_VERSION}")


class BoneThresholdBaseline:
    """Weight-free CPU source: every bone voxel of the CT as one structure, the schema root ``skeleton``."""

    name = "BoneHub bone threshold baseline"

    def __init__(self, parameters: BoneThresholdParameters | None = None):
        self.parameters = parameters or BoneThresholdParameters()
        self.version = self.parameters.tag
        self._label_set: LabelSet | None = None

    def __repr__(self) -> str:
        return f"BoneThresholdBaseline({self.version!r})"

    @property
    def vocabulary(self) -> frozenset[str]:
        """The schema structures this source can label (recorded in its SEGs; QC compares it there)."""
        return load_label_set(LABEL_SET).emitted()

    def load(self) -> None:
        if self._label_set is None:
            self._label_set = load_label_set(LABEL_SET)

    def predict(self, ct: CTSeries) -> Prediction:
        self.load()
        bone = segment_bone(ct.volume.array, ct.volume.spacing, self.parameters)
        return Prediction(ct.volume.with_array((bone * BONE_VALUE).astype(np.uint8)), self._label_set)


def segment_bone(hu: np.ndarray, spacing: tuple[float, float, float], parameters: BoneThresholdParameters) -> np.ndarray:
    """Bone-tissue mask of a CT in HU, axes (slice, row, column), ``spacing`` in mm along them."""
    if hu.ndim != 3 or len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"bone threshold baseline needs a 3D HU volume with positive spacing, got shape {hu.shape}, spacing {spacing}")
    body = body_mask(hu, spacing)
    bone = _bone_components(hu, spacing, body, parameters)
    bone = _close_in_plane(bone, spacing)
    return _fill_marrow(bone, hu, spacing, parameters.max_marrow_cm2)


def body_mask(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """The patient without the table, on the full grid (computed on a ~3 mm grid: the body is large)."""
    steps = tuple(max(1, int(BODY_GRID_MM // s)) for s in spacing)
    coarse = hu[::steps[0], ::steps[1], ::steps[2]] > BODY_HU
    coarse = ndimage.binary_fill_holes(coarse, _IN_PLANE_FACES)
    ball = _ellipsoid([BODY_OPENING_MM / (s * n) for s, n in zip(spacing, steps)])
    # Outside the image counts as body while eroding, so a patient cut by the field of view keeps its edge.
    coarse = ndimage.binary_dilation(ndimage.binary_erosion(coarse, ball, border_value=1), ball)
    parts, count = ndimage.label(coarse)
    if count == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    keep = sizes >= MIN_BODY_PART_FRACTION * sizes.max()
    keep[0] = False
    coarse = keep[parts]
    for axis, step in enumerate(steps):
        coarse = np.repeat(coarse, step, axis=axis)
    return coarse[: hu.shape[0], : hu.shape[1], : hu.shape[2]]


def _bone_components(hu: np.ndarray, spacing: tuple[float, float, float], body: np.ndarray, parameters: BoneThresholdParameters) -> np.ndarray:
    """Hysteresis threshold, keeping components that are large enough and mostly inside the body."""
    candidates = hu >= parameters.grow_hu
    components, count = ndimage.label(candidates, _ALL_NEIGHBOURS)
    if count == 0:
        return candidates
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    inside = np.bincount(components[candidates & body], minlength=count + 1)
    seeded = np.zeros(count + 1, bool)
    seeded[components[hu >= parameters.seed_hu]] = True
    voxel_ml = float(np.prod(spacing)) / 1000.0
    keep = seeded & (sizes * voxel_ml >= parameters.min_component_ml) & (inside >= MIN_INSIDE_BODY_FRACTION * sizes)
    keep[0] = False
    return keep[components]


def _close_in_plane(bone: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Seal small gaps in thin cortex so its ring encloses the marrow in each slice (only adds voxels)."""
    size = (1, *(2 * max(1, round(CLOSING_MM / s)) + 1 for s in spacing[1:]))
    closed = ndimage.minimum_filter(ndimage.maximum_filter(bone, size=size, mode="nearest"), size=size, mode="nearest")
    return closed | bone


def _fill_marrow(bone: np.ndarray, hu: np.ndarray, spacing: tuple[float, float, float], max_cm2: float) -> np.ndarray:
    """Add the holes that bone encloses in a slice, up to ``max_cm2`` each and not air on average.

    Works inside the bone's bounding box: background there that reaches the box's edge reaches the image edge.
    """
    if not bone.any():
        return bone
    box = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in (np.flatnonzero(bone.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1))))
    inner = bone[box]
    background, count = ndimage.label(~inner, _IN_PLANE_FACES)  # in-plane: each hole lies in one slice
    enclosed = np.ones(count + 1, bool)
    enclosed[0] = False
    for edge in (background[:, 0, :], background[:, -1, :], background[:, :, 0], background[:, :, -1]):
        enclosed[edge] = False
    in_hole = enclosed[background]
    ids = background[in_hole]
    pixels = np.bincount(ids, minlength=count + 1)
    mean_hu = np.bincount(ids, weights=hu[box][in_hole], minlength=count + 1) / np.maximum(pixels, 1)
    fill = enclosed & (pixels * (spacing[1] * spacing[2] / 100.0) <= max_cm2) & (mean_hu >= AIR_HU)
    filled = bone.copy()
    filled[box] |= fill[background]
    return filled


def _ellipsoid(radii_voxels: list[float]) -> np.ndarray:
    """Ball of the given radius per axis (at least one voxel each), for an anisotropic grid."""
    radii = [max(1, round(r)) for r in radii_voxels]
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    return sum((g / r) ** 2 for g, r in zip(grid, radii)) <= 1.0
