"""Input augmentations: what the model sees, and the way back to the source CT grid.

An augmentation is a small frozen dataclass with a canonical text form (``str(aug)``)
such as ``rotate(5,0,-3)``, ``noise(20)``, ``intensity(scale=1.05,shift=10,gamma=0.9)`` or
``none``. That text is what travels between pipeline steps, what the SEG records
(SeriesDescription / ContentDescription, LO: at most 64 characters) and what goes
into the derived SEG UIDs and the manifest, so it is canonical: the same
augmentation always prints the same way, and ``parse_augmentation`` reads it back
(``parse_augmentation(str(aug)) == aug``). Pass texts through
``str(parse_augmentation(text))`` before using them as identity, because the parser
also accepts looser spellings (spaces, ``5.0`` for ``5``, keywords in any order).

Random parts are seeded from (series UID, augmentation text) with SHA-256, not
Python's ``hash`` (salted per process), so a rerun on any worker sees the same
input. The stream is NumPy's PCG64 ``standard_normal``; NumPy keeps that stream
stable within a version but not across versions, which the pinned NumPy covers.

Spatial augmentations (rotation) keep the input grid, and ``invert`` maps the label
map predicted on that grid back onto the source grid with nearest neighbour, so
every output of every augmentation lands on the source CT grid with integer labels.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import SimpleITK as sitk

AIR_HU = -1024.0
"""Value of CT voxels that a rotation brings in from outside the field of view."""

GAMMA_WINDOW_HU = (-1024.0, 3071.0)
"""HU range on which gamma acts: the 12-bit CT range, air to dense bone/metal.

Values inside are normalised to [0, 1], raised to ``gamma`` and mapped back, so the
window ends stay fixed; values outside (padding, metal) are left as they are.
"""

MAX_TEXT_LENGTH = 64  # DICOM LO, the SEG's SeriesDescription / ContentDescription

BOUNDS = {
    "rotation angle (degrees)": (-180.0, 180.0),
    "noise sigma (HU)": (0.0, 500.0),  # beyond this the noise hides bone (about 700 HU above soft tissue)
    "intensity scale": (0.25, 4.0),
    "intensity shift (HU)": (-1000.0, 1000.0),
    "intensity gamma": (0.1, 10.0),
}
"""Each parameter's range: test-time augmentations perturb a CT, they must leave a CT a model can read."""


def _number(value: float, what: str) -> float:
    value = float(value)
    low, high = BOUNDS[what]
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{what} must be a finite number in [{_format(low)}, {_format(high)}], got {value!r}")
    return value + 0.0  # -0.0 -> 0.0, so equal values print equally


def _format(value: float) -> str:
    """Shortest text that reads back to the same float; whole numbers without '.0'."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Text:
    """Shared checks: the canonical text must fit the SEG's LO fields."""

    def _check_length(self) -> None:
        text = str(self)
        if len(text) > MAX_TEXT_LENGTH:
            raise ValueError(
                f"augmentation text {text!r} has {len(text)} characters, more than the {MAX_TEXT_LENGTH} "
                "a DICOM LO field holds; use fewer digits"
            )


@dataclass(frozen=True)
class Identity(_Text):
    """No augmentation: the source CT as it is."""

    def __str__(self) -> str:
        return "none"


@dataclass(frozen=True)
class Rotation(_Text):
    """Rotation of the anatomy by ``degrees`` = (x, y, z) about the patient LPS axes.

    Axes are DICOM patient axes (x towards the patient's Left, y Posterior, z
    Superior), whatever the CT's own orientation. Positive angles are right-handed
    (counter-clockwise looking from the positive axis towards the origin). The
    rotations are about fixed axes applied x first, then y, then z, i.e. the matrix
    is ``Rz @ Ry @ Rx`` (scipy: ``Rotation.from_euler("xyz", degrees, degrees=True)``).
    The centre is the centre of the CT grid in patient coordinates
    (``hd.Volume.center_position``), so the field of view turns about its own middle
    and a centred body stays centred. A point ``p`` of the source appears in the
    augmented CT at ``R @ (p - c) + c``.
    """

    degrees: tuple[float, float, float]

    def __post_init__(self) -> None:
        degrees = tuple(self.degrees)
        if len(degrees) != 3:
            raise ValueError(f"a rotation needs 3 angles (x, y, z in degrees), got {self.degrees!r}")
        object.__setattr__(self, "degrees", tuple(_number(d, "rotation angle (degrees)") for d in degrees))
        self._check_length()

    def __str__(self) -> str:
        return "rotate(" + ",".join(_format(d) for d in self.degrees) + ")"

    def matrix(self) -> np.ndarray:
        """The 3x3 rotation matrix in LPS patient coordinates (``Rz @ Ry @ Rx``)."""
        x, y, z = (math.radians(d) for d in self.degrees)
        rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
        ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
        rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
        return rz @ ry @ rx


@dataclass(frozen=True)
class GaussianNoise(_Text):
    """Additive white Gaussian noise with standard deviation ``sigma_hu`` (HU), seeded per series."""

    sigma_hu: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma_hu", _number(self.sigma_hu, "noise sigma (HU)"))
        self._check_length()

    def __str__(self) -> str:
        return f"noise({_format(self.sigma_hu)})"


@dataclass(frozen=True)
class Intensity(_Text):
    """``out = scale * gamma_curve(hu) + shift_hu``.

    ``gamma_curve`` acts on ``GAMMA_WINDOW_HU`` only: ``lo + (hi - lo) * t ** gamma``
    with ``t = (hu - lo) / (hi - lo)``; ``gamma < 1`` brightens the mid-range (soft
    tissue towards bone), ``gamma > 1`` darkens it, and the window ends stay put.
    ``scale`` is about 0 HU (water keeps its value, air and bone move apart), then
    ``shift_hu`` is added to every voxel.
    """

    scale: float = 1.0
    shift_hu: float = 0.0
    gamma: float = 1.0

    def __post_init__(self) -> None:
        for name, what in (("scale", "intensity scale"), ("shift_hu", "intensity shift (HU)"), ("gamma", "intensity gamma")):
            object.__setattr__(self, name, _number(getattr(self, name), what))
        self._check_length()

    def __str__(self) -> str:
        return f"intensity(scale={_format(self.scale)},shift={_format(self.shift_hu)},gamma={_format(self.gamma)})"


Augmentation = Identity | Rotation | GaussianNoise | Intensity

_NUM = r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*"
_ROTATE = re.compile(rf"rotate\({_NUM},{_NUM},{_NUM}\)")
_NOISE = re.compile(rf"noise\({_NUM}\)")
_INTENSITY = re.compile(r"intensity\((.*)\)")
_KEYWORD = re.compile(rf"\s*(scale|shift|gamma)\s*={_NUM}")
_INTENSITY_FIELDS = {"scale": "scale", "shift": "shift_hu", "gamma": "gamma"}
_FORMS = "none, rotate(x,y,z), noise(sigma) or intensity(scale=..,shift=..,gamma=..)"


def parse_augmentation(text: str) -> Augmentation:
    """Read an augmentation from its text form; ``ValueError`` naming the text when it is not one.

    ``intensity(...)`` takes any of its keywords, each at most once, in any order;
    missing ones keep their defaults.
    """
    stripped = text.strip()
    try:
        if stripped == "none":
            return Identity()
        if match := _ROTATE.fullmatch(stripped):
            return Rotation(tuple(float(g) for g in match.groups()))
        if match := _NOISE.fullmatch(stripped):
            return GaussianNoise(float(match.group(1)))
        if match := _INTENSITY.fullmatch(stripped):
            values: dict[str, float] = {}
            for part in match.group(1).split(","):
                keyword = _KEYWORD.fullmatch(part)
                if keyword is None or _INTENSITY_FIELDS[keyword.group(1)] in values:
                    raise ValueError(f"bad or repeated intensity parameter {part.strip()!r}")
                values[_INTENSITY_FIELDS[keyword.group(1)]] = float(keyword.group(2))
            return Intensity(**values)
    except ValueError as error:
        raise ValueError(f"invalid augmentation {text!r}: {error}") from error
    raise ValueError(f"invalid augmentation {text!r}: expected {_FORMS}")


def noise_seed(series_uid: str, aug: Augmentation) -> int:
    """A 64-bit seed that is a pure function of (series UID, augmentation text), the same in every process."""
    digest = hashlib.sha256(f"{series_uid}\x1f{aug}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def apply(aug: Augmentation, ct_volume: hd.Volume, series_uid: str) -> hd.Volume:
    """The augmented CT the model sees: float32 HU on exactly the input grid.

    Rotation resamples with linear interpolation and fills what comes in from
    outside the field of view with air (``AIR_HU``). It keeps the input grid
    (size, spacing, direction, origin) rather than growing it to hold the rotated
    box: every augmentation then hands the model the same crop and the same array
    shape, and ``invert`` is a plain resample onto the same grid. The price is that
    the corners of the field of view rotate out and are not seen by the model; see
    ``field_of_view``. Identity returns ``ct_volume`` itself.
    """
    if isinstance(aug, Identity):
        return ct_volume
    hu = ct_volume.array.astype(np.float32, copy=False)  # read_ct_series gives float32 already: no copy
    if isinstance(aug, Rotation):
        # Resample maps each output point to the input point it reads: the inverse rotation.
        return ct_volume.with_array(_resample(hu, aug.matrix().T, ct_volume, sitk.sitkLinear, AIR_HU))
    if isinstance(aug, GaussianNoise):
        rng = np.random.Generator(np.random.PCG64(noise_seed(series_uid, aug)))
        noisy = rng.standard_normal(hu.shape, dtype=np.float32)
        noisy *= np.float32(aug.sigma_hu)  # in place: the same float32 sums as hu + sigma * noise, no temporaries
        noisy += hu
        return ct_volume.with_array(noisy)
    if isinstance(aug, Intensity):
        return ct_volume.with_array(_intensity(hu, aug))
    raise TypeError(f"not an augmentation: {aug!r}")


def invert(aug: Augmentation, labels_on_augmented_grid: np.ndarray, ct_volume: hd.Volume) -> np.ndarray:
    """A label map predicted on ``apply(aug, ct_volume, ...)`` brought back onto the source grid.

    Intensity augmentations do not move anything, so the labels come back as they
    are. Rotation resamples with the forward rotation (source point -> where it was
    in the augmented CT) and nearest neighbour, so the result has the input's dtype
    and only label values that were in the input; source voxels that were outside
    the augmented field of view get 0. Each label map is resampled itself: measured
    on the bench's CT (bench/README.md, stage1_overhead) that costs less than working
    out a shared index once per rotation and gathering each map through it, for
    three sources, and holds no index the size of the CT.
    """
    labels = np.asarray(labels_on_augmented_grid)
    if labels.shape != tuple(ct_volume.spatial_shape):
        raise ValueError(f"label map shape {labels.shape} differs from the CT grid {tuple(ct_volume.spatial_shape)}")
    if not isinstance(aug, Rotation):
        return labels
    if labels.dtype == bool:  # SimpleITK has no boolean images; nearest neighbour keeps 0/1 bytes exact
        return _resample(labels.view(np.uint8), aug.matrix(), ct_volume, sitk.sitkNearestNeighbor, 0.0).view(bool)
    return _resample(labels, aug.matrix(), ct_volume, sitk.sitkNearestNeighbor, 0.0)


def field_of_view(aug: Augmentation, ct_volume: hd.Volume) -> np.ndarray:
    """Source voxels that the model saw under ``aug`` (bool, source grid).

    Outside it an inverted label map holds 0 because the voxel rotated out of the
    grid, not because the model called it background; fusion can treat it as no vote.
    """
    ones = np.ones(ct_volume.spatial_shape, dtype=np.uint8)
    return invert(aug, ones, ct_volume).astype(bool)


def _intensity(hu: np.ndarray, aug: Intensity) -> np.ndarray:
    """In float32, in place on one copy, over the whole array: masked reads and writes took seconds on a CT.

    The gamma curve runs on every voxel and the few outside ``GAMMA_WINDOW_HU``
    (padding, metal) get their values back afterwards, so each voxel goes through
    exactly the float32 operations the formula says.
    """
    values = hu.astype(np.float32, copy=True)
    if aug.gamma != 1:
        lo, hi = GAMMA_WINDOW_HU
        outside = ~((values >= lo) & (values <= hi))
        kept = values[outside]
        values -= np.float32(lo)
        values /= np.float32(hi - lo)
        with np.errstate(invalid="ignore"):  # below the window t < 0: NaN, replaced below
            np.power(values, np.float32(aug.gamma), out=values)
        values *= np.float32(hi - lo)
        values += np.float32(lo)
        values[outside] = kept
    values *= np.float32(aug.scale)
    values += np.float32(aug.shift_hu)
    return values


def _resample(array: np.ndarray, matrix: np.ndarray, grid: hd.Volume, interpolator: int, fill: float) -> np.ndarray:
    """``array`` (on ``grid``) read at ``matrix @ (p - c) + c`` for every point ``p`` of ``grid`` (c: grid centre, LPS).

    SimpleITK works in physical (LPS) space, so the CT's direction and origin are
    handled by the images, not here. SimpleITK's first index axis is the array's
    last: rather than transposing the array (as ``hd.Volume.to_simpleitk`` does, which
    took seconds per CT), the image gets the grid's spacing and direction columns in
    reverse order, which describes the same voxels at the same points.
    """
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(np.asarray(matrix, dtype=float).ravel().tolist())
    transform.SetCenter(grid.center_position)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(grid.spacing)[::-1])
    image.SetDirection(np.asarray(grid.direction)[:, ::-1].ravel().tolist())
    image.SetOrigin(grid.position)
    moved = sitk.Resample(image, image, transform, interpolator, fill, image.GetPixelID())
    return sitk.GetArrayFromImage(moved)
