"""Augmentations: text form, seeding, intensity maths and the inverse mapping of rotations.

The synthetic CT has anisotropic spacing, an oblique direction and a non-zero
origin, so a mix-up of axis order, direction or centre shows up as a moved shape.
"""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation as ScipyRotation

from models.augment import (
    GAMMA_WINDOW_HU,
    GaussianNoise,
    Identity,
    Intensity,
    Rotation,
    apply,
    field_of_view,
    invert,
    parse_augmentation,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SERIES_UID = "1.2.826.0.1.3680043.8.498.77"
OTHER_SERIES_UID = "1.2.826.0.1.3680043.8.498.78"
FRAME_UID = "1.2.826.0.1.3680043.8.498.79"
SHAPE = (40, 100, 100)
SPACING = (2.5, 0.8, 0.8)
ORIGIN = (-37.5, 112.0, -480.25)
# Axial, feet-to-head slice order, tilted by a few degrees about each axis: an oblique right-handed grid.
DIRECTION = ScipyRotation.from_euler("xyz", [12, -8, 20], degrees=True).as_matrix() @ np.array(
    [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]
)
HU = {0: 0.0, 1: 700.0, 2: 1500.0}  # background, "bone" 1 (ellipsoid), "bone" 2 (box)


def _volume(array: np.ndarray) -> hd.Volume:
    return hd.Volume.from_components(
        array,
        spacing=SPACING,
        coordinate_system="PATIENT",
        position=ORIGIN,
        direction=DIRECTION,
        frame_of_reference_uid=FRAME_UID,
    )


def _world(volume: hd.Volume, indices: np.ndarray) -> np.ndarray:
    return volume.map_indices_to_reference(np.atleast_2d(indices))


@pytest.fixture(scope="module")
def phantom() -> tuple[hd.Volume, np.ndarray]:
    """(CT, labels): an ellipsoid (1) and a box (2), off-centre, defined in mm along the grid axes."""
    grid = _volume(np.zeros(SHAPE, np.float32))
    index = np.indices(SHAPE).reshape(3, -1).T
    offsets = (index - np.array(grid.center_indices)) * np.array(SPACING)  # mm along each grid axis
    ellipsoid = (((offsets - [15, -12, 10]) / [14, 10, 8]) ** 2).sum(axis=1) <= 1
    box = np.all(np.abs(offsets - [-22, 14, -12]) <= [12, 8, 7], axis=1)
    labels = np.zeros(len(index), np.uint8)
    labels[ellipsoid] = 1
    labels[box] = 2
    labels = labels.reshape(SHAPE)
    ct = np.vectorize(HU.get, otypes=[np.float32])(labels)
    return _volume(ct), labels


def _threshold_segmenter(hu: np.ndarray) -> np.ndarray:
    """The trivial "model": each bright component is labelled by its peak intensity.

    Thresholds sit at half of each shape's contrast; the component rule keeps the
    box's partial-volume rim (values in the ellipsoid's range) out of label 1.
    """
    labels = np.zeros(hu.shape, np.uint8)
    components, _ = ndimage.label(hu > HU[1] / 2)
    peaks = ndimage.maximum(hu, components, index=np.arange(1, components.max() + 1))
    ellipsoid_components = np.flatnonzero(peaks <= (HU[1] + HU[2]) / 2) + 1
    labels[np.isin(components, ellipsoid_components)] = 1
    labels[hu > HU[2] / 2] = 2
    return labels


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


@pytest.mark.parametrize("degrees", [(10, 0, 0), (0, 7, -5), (-6, 4, 8)])
def test_rotation_labels_land_back_on_the_source_grid(phantom, degrees):
    ct, labels = phantom
    rotation = Rotation(degrees)
    augmented = apply(rotation, ct, SERIES_UID)
    predicted = _threshold_segmenter(augmented.array)
    assert not np.array_equal(predicted, labels)  # the model really saw something moved

    back = invert(rotation, predicted, ct)

    assert back.shape == labels.shape and back.dtype == predicted.dtype
    assert set(np.unique(back)) == {0, 1, 2}
    for label in (1, 2):
        assert _dice(back == label, labels == label) >= 0.9, label
        error = np.abs(_centroid(back == label) - _centroid(labels == label))
        assert np.all(error < 1.0), (label, error)  # in voxels, per axis


@pytest.mark.parametrize("degrees", [(0, 7, -5), (0, 0, 20)])
def test_rotation_keeps_the_grid_and_moves_the_shape_as_the_matrix_says(phantom, degrees):
    ct, labels = phantom
    augmented = apply(Rotation(degrees), ct, SERIES_UID)

    assert augmented.geometry_equal(ct) and augmented.spatial_shape == ct.spatial_shape
    assert augmented.frame_of_reference_uid == FRAME_UID and augmented.dtype == np.float32
    assert augmented.array.min() >= -1024 and augmented.array.max() <= HU[2] + 1e-3  # linear: no overshoot

    # Reference independent of the module: fixed-axis x, y, z rotation about the grid centre in LPS.
    matrix = ScipyRotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    assert np.allclose(Rotation(degrees).matrix(), matrix)
    centre = np.array(ct.center_position)
    for label in (1, 2):
        before = _world(ct, _centroid(labels == label))[0]
        after = _world(augmented, _centroid(_threshold_segmenter(augmented.array) == label))[0]
        expected = matrix @ (before - centre) + centre
        assert np.linalg.norm(expected - before) > 2.0  # the shape really moves (mm)
        assert np.linalg.norm(after - expected) < 0.5, (label, after, expected)  # below the 0.8 mm voxel


def test_positive_angle_is_right_handed_about_the_lps_axis():
    """+90 degrees about z (Superior) turns patient Left (+x) into Posterior (+y)."""
    assert np.allclose(Rotation((0, 0, 90)).matrix() @ [1, 0, 0], [0, 1, 0])
    assert np.allclose(Rotation((90, 0, 0)).matrix() @ [0, 1, 0], [0, 0, 1])
    assert np.allclose(Rotation((0, 90, 0)).matrix() @ [0, 0, 1], [1, 0, 0])


def test_rotation_fills_with_air_and_field_of_view_marks_what_the_model_saw(phantom):
    ct, _ = phantom
    rotation = Rotation((0, 0, 20))
    augmented = apply(rotation, ct, SERIES_UID)
    assert augmented.array.min() == pytest.approx(-1024.0)  # corners came from outside the field of view
    seen = field_of_view(rotation, ct)
    assert seen.dtype == bool and seen.shape == ct.spatial_shape
    centre = tuple(int(round(i)) for i in ct.center_indices)
    assert seen[centre] and not seen.all()
    assert field_of_view(Identity(), ct).all() and field_of_view(GaussianNoise(5), ct).all()

    labels = np.ones(ct.spatial_shape, dtype=bool)
    back = invert(rotation, labels, ct)
    assert back.dtype == bool and np.array_equal(back, seen)
    wide = invert(rotation, np.full(ct.spatial_shape, 70000, np.int64), ct)
    assert wide.dtype == np.int64 and set(np.unique(wide)) == {0, 70000}


def test_non_spatial_augmentations_leave_labels_alone(phantom):
    ct, labels = phantom
    for aug in (Identity(), GaussianNoise(20), Intensity(1.1, 5, 0.8)):
        assert np.array_equal(invert(aug, labels, ct), labels)
        assert apply(aug, ct, SERIES_UID).geometry_equal(ct)
    assert apply(Identity(), ct, SERIES_UID) is ct
    with pytest.raises(ValueError, match="shape"):
        invert(Rotation((1, 0, 0)), labels[:-1], ct)



def _resampled_labels(rotation: Rotation, labels: np.ndarray, ct: hd.Volume) -> np.ndarray:
    """Reference: the label map itself resampled with SimpleITK's nearest neighbour (forward rotation, fill 0)."""
    import SimpleITK as sitk

    transform = sitk.AffineTransform(3)
    transform.SetMatrix(rotation.matrix().ravel().tolist())
    transform.SetCenter(ct.center_position)
    image = ct.with_array(labels).to_simpleitk()
    moved = sitk.Resample(image, image, transform, sitk.sitkNearestNeighbor, 0, image.GetPixelID())
    return sitk.GetArrayFromImage(moved).transpose(2, 1, 0)


@pytest.mark.parametrize("degrees", [(0, 0, 5), (-6, 4, 8), (0, 0, 45)])
def test_invert_gives_the_voxels_of_resampling_the_transposed_labels(phantom, degrees):
    """``invert`` hands SimpleITK the array untransposed (spacing and direction reversed): the same voxels as
    the transposed image ``hd.Volume.to_simpleitk`` builds, for every label dtype."""
    ct, labels = phantom
    rotation = Rotation(degrees)
    predicted = _threshold_segmenter(apply(rotation, ct, SERIES_UID).array)
    for dtype in (np.uint8, np.uint16, np.int32):
        wide = predicted.astype(dtype) * dtype(300 if np.iinfo(dtype).max > 300 else 1)
        back = invert(rotation, wide, ct)
        assert back.dtype == dtype and back.flags["C_CONTIGUOUS"]
        assert np.array_equal(back, _resampled_labels(rotation, wide, ct)), dtype
    assert invert(Identity(), labels, ct) is labels


def test_in_place_augmentations_give_the_values_of_their_formulas(phantom):
    """Noise is the seeded float32 PCG64 stream times sigma, added to the HU; intensity runs each voxel through its formula."""
    from models.augment import noise_seed

    ct, _ = phantom
    hu = ct.array.astype(np.float32)
    hu[0, 0, :4] = [-3024, -1024, 3071, 4000]  # below, at, at and above the gamma window
    ct = ct.with_array(hu)
    rng = np.random.Generator(np.random.PCG64(noise_seed(SERIES_UID, GaussianNoise(20))))
    expected = hu + np.float32(20) * rng.standard_normal(hu.shape, dtype=np.float32)
    assert np.array_equal(apply(GaussianNoise(20), ct, SERIES_UID).array, expected)

    aug = Intensity(scale=1.05, shift_hu=10, gamma=0.9)
    lo, hi = (np.float32(v) for v in GAMMA_WINDOW_HU)
    inside = (hu >= lo) & (hu <= hi)
    curved = hu.copy()
    curved[inside] = lo + (hi - lo) * np.power((hu[inside] - lo) / (hi - lo), np.float32(0.9))
    expected = curved * np.float32(1.05) + np.float32(10)
    assert np.array_equal(apply(aug, ct, SERIES_UID).array, expected)
    assert np.array_equal(ct.array, hu)  # the source CT is left as it was

# --- noise and seeding ---------------------------------------------------------------------------

_SUBPROCESS = """
import hashlib, sys
import highdicom as hd, numpy as np
from models.augment import GaussianNoise, apply, noise_seed
volume = hd.Volume.from_components(np.zeros((8, 16, 16), np.float32), spacing=(2.5, 0.8, 0.8),
                                   coordinate_system="PATIENT", position=(1.0, 2.0, 3.0), direction=np.eye(3))
out = apply(GaussianNoise(20), volume, sys.argv[1]).array
print(noise_seed(sys.argv[1], GaussianNoise(20)), hashlib.sha256(out.tobytes()).hexdigest())
"""


def _small_zero_volume() -> hd.Volume:
    return hd.Volume.from_components(
        np.zeros((8, 16, 16), np.float32), spacing=(2.5, 0.8, 0.8), coordinate_system="PATIENT", position=(1.0, 2.0, 3.0),
        direction=np.eye(3),
    )


def test_noise_is_seeded_per_series_and_augmentation():
    from models.augment import noise_seed

    volume = _small_zero_volume()
    first = apply(GaussianNoise(20), volume, SERIES_UID).array
    assert np.array_equal(first, apply(GaussianNoise(20), volume, SERIES_UID).array)
    assert not np.array_equal(first, apply(GaussianNoise(20), volume, OTHER_SERIES_UID).array)
    assert noise_seed(SERIES_UID, GaussianNoise(20)) != noise_seed(SERIES_UID, GaussianNoise(30))
    assert noise_seed(SERIES_UID, GaussianNoise(20)) == noise_seed(SERIES_UID, parse_augmentation("noise( 20.0 )"))

    # Another interpreter, with a different string-hash salt, draws the same noise.
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, SERIES_UID], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    seed, digest = result.stdout.split()
    assert int(seed) == noise_seed(SERIES_UID, GaussianNoise(20))
    assert digest == hashlib.sha256(first.tobytes()).hexdigest()


def test_noise_has_the_requested_standard_deviation(phantom):
    ct, _ = phantom
    noisy = apply(GaussianNoise(20), ct, SERIES_UID)
    difference = noisy.array.astype(np.float64) - ct.array
    assert noisy.dtype == np.float32 and noisy.geometry_equal(ct)
    assert difference.std() == pytest.approx(20, rel=0.05)
    assert abs(difference.mean()) < 0.5


# --- intensity -------------------------------------------------------------------------------------


def test_intensity_scale_shift_gamma_as_documented():
    lo, hi = GAMMA_WINDOW_HU
    values = np.array([-3024, lo, -500, 0, 100, 1000, hi, 4000], np.float32)
    volume = hd.Volume.from_components(
        values.reshape(2, 2, 2), spacing=SPACING, coordinate_system="PATIENT", position=ORIGIN, direction=DIRECTION
    )

    def run(aug):
        out = apply(aug, volume, SERIES_UID)
        assert out.dtype == np.float32 and out.geometry_equal(volume)
        return out.array.ravel().astype(np.float64)

    assert np.allclose(run(Intensity(scale=1.05, shift_hu=10)), 1.05 * values + 10, atol=1e-3)
    assert np.array_equal(run(Intensity()), values)

    gamma = run(Intensity(gamma=0.9))
    inside = (values >= lo) & (values <= hi)
    expected = lo + (hi - lo) * np.clip((values - lo) / (hi - lo), 0, 1) ** 0.9
    assert np.allclose(gamma[inside], expected[inside], atol=1e-2)
    assert np.array_equal(gamma[~inside], values[~inside])  # outside the window: untouched
    assert gamma[values == lo] == lo and gamma[values == hi] == hi  # window ends fixed
    assert np.all(gamma[inside & (values > lo) & (values < hi)] > values[inside & (values > lo) & (values < hi)])

    both = run(Intensity(scale=1.05, shift_hu=10, gamma=0.9))
    assert np.allclose(both, 1.05 * gamma + 10, atol=1e-2)  # gamma first, then scale about 0 HU, then shift


# --- text form -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aug", "text"),
    [
        (Identity(), "none"),
        (Rotation((5, 0, -3)), "rotate(5,0,-3)"),
        (Rotation((2.5, -0.0, 1e-3)), "rotate(2.5,0,0.001)"),
        (GaussianNoise(20), "noise(20)"),
        (GaussianNoise(12.5), "noise(12.5)"),
        (Intensity(scale=1.05, shift_hu=10, gamma=0.9), "intensity(scale=1.05,shift=10,gamma=0.9)"),
        (Intensity(shift_hu=-20), "intensity(scale=1,shift=-20,gamma=1)"),
    ],
)
def test_text_form_round_trips(aug, text):
    assert str(aug) == text and len(text) <= 64
    assert parse_augmentation(text) == aug
    assert parse_augmentation(str(aug)) == aug


def test_parser_accepts_loose_spellings_and_canonicalises():
    assert str(parse_augmentation(" rotate( 5.0, 0 ,-3e0 ) ")) == "rotate(5,0,-3)"
    assert parse_augmentation("intensity(gamma=0.9, scale=1.05)") == Intensity(scale=1.05, gamma=0.9)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "None",
        "rotate(1,2)",
        "rotate(a,b,c)",
        "rotate(1,2,3,4)",
        "noise(-5)",
        "noise(nan)",
        "noise(inf)",
        "intensity()",
        "intensity(scale=0)",
        "intensity(gamma=-1)",
        "intensity(foo=1)",
        "intensity(gamma=1,gamma=2)",
        "flip(0)",
        "rotate(5,0,-3)+noise(20)",
        "noise(1e308)",
        "rotate(720,0,0)",
        "intensity(scale=100)",
        "intensity(shift=1e6)",
        "intensity(gamma=50)",
    ],
)
def test_bad_text_raises_value_error_naming_it(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_augmentation(text)


def test_invalid_parameters_and_overlong_text_are_refused():
    with pytest.raises(ValueError, match="3 angles"):
        Rotation((1, 2))
    with pytest.raises(ValueError, match="64"):
        Intensity(scale=1.0499999999999998, shift_hu=-10.123456789012345, gamma=0.8999999999999999)
    with pytest.raises(ValueError, match="finite"):
        GaussianNoise(float("nan"))


@pytest.mark.parametrize("make, what", [
    (lambda: GaussianNoise(1e308), r"noise sigma \(HU\) must be a finite number in \[0, 500\]"),
    (lambda: Rotation((0, 181, 0)), r"rotation angle \(degrees\) must be a finite number in \[-180, 180\]"),
    (lambda: Intensity(scale=0.1), r"intensity scale must be a finite number in \[0.25, 4\]"),
])
def test_parameters_outside_their_range_are_refused_with_the_range(make, what):
    with pytest.raises(ValueError, match=what):
        make()
