"""Label map files onto the CT grid: exact match, resampling, and refusal of misplaced maps."""

import numpy as np
import pytest

import highdicom as hd
from dicom_io.errors import DicomInputError
from dicom_io.label_images import LabelGridError, onto_grid, write_label_image

DIRECTION = np.array([[0.0, 0.0, 1.0], [0.96, 0.28, 0.0], [-0.28, 0.96, 0.0]]).T  # oblique, right-handed


def _volume(array, spacing, position=(-120.0, 35.5, -410.0)):
    return hd.Volume.from_components(array, spacing=spacing, position=position, direction=DIRECTION, coordinate_system="PATIENT")


@pytest.fixture
def ct_geometry():
    return _volume(np.zeros((20, 32, 36), np.int16), (2.0, 1.0, 1.0)).get_geometry()


def _labels_on(geometry):
    labels = np.zeros(geometry.spatial_shape, np.uint8)
    labels[4:12, 5:20, 8:30] = 3
    labels[14:18, 20:30, 2:10] = 7
    return labels


def test_same_grid_in_another_axis_order_is_exact(ct_geometry):
    labels = _labels_on(ct_geometry)
    flipped = ct_geometry.with_array(labels).flip_spatial(axes=(0, 2)).permute_spatial_axes([2, 0, 1])
    np.testing.assert_array_equal(onto_grid(flipped, ct_geometry), labels)


def test_finer_grid_is_resampled_onto_the_ct_grid(ct_geometry):
    """A map at half the spacing, first voxel on the CT's first voxel: highdicom 0.28 returns it unchanged."""
    labels = _labels_on(ct_geometry)
    finer = np.repeat(np.repeat(np.repeat(labels, 2, 0), 2, 1), 2, 2)
    fine = _volume(finer, (1.0, 0.5, 0.5), position=ct_geometry.position)
    result = onto_grid(fine, ct_geometry)
    assert result.shape == ct_geometry.spatial_shape
    np.testing.assert_array_equal(result, labels)


def test_a_map_that_lies_outside_the_ct_is_refused(ct_geometry):
    labels = _labels_on(ct_geometry)
    shifted = _volume(labels, (2.0, 1.0, 1.0), position=np.array(ct_geometry.position) + [0.0, 0.0, 25.0])
    with pytest.raises(LabelGridError, match=r"% of its labelled voxels lie outside the CT grid"):
        onto_grid(shifted, ct_geometry, where="model x label map")


def test_label_image_suffix_is_checked(ct_geometry, tmp_path):
    with pytest.raises(DicomInputError, match="must end in one of"):
        write_label_image(ct_geometry.with_array(_labels_on(ct_geometry)), tmp_path / "labels.txt")
