"""Physically invalid CT input is refused by name, never silently used: spacing, unknown HU, lost slices."""

from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest

from dicom_io.ct_series import list_series, read_ct_series
from dicom_io.errors import ImplausibleGeometryError, UnknownHUError, UnreadableSliceError
from tests.dicom_io.test_ct_series import _DELETE, edit


@pytest.mark.parametrize("spacing", [[1e6, 1e6], [0.0005, 0.7]])
def test_implausible_pixel_spacing_is_refused(ct_copy, spacing):
    for path in ct_copy:
        edit(path, PixelSpacing=spacing)
    with pytest.raises(ImplausibleGeometryError, match=r"CT_0000\.dcm: PixelSpacing \(row\) .* outside the plausible"):
        read_ct_series(ct_copy[0].parent)


def test_unsigned_values_without_rescale_are_refused(ct_copy):
    for path in ct_copy:
        ds = pydicom.dcmread(path)
        stored = (ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept) + 1024).clip(0)
        ds.PixelData = stored.astype(np.uint16).tobytes()
        ds.PixelRepresentation = 0
        del ds.RescaleIntercept, ds.RescaleSlope
        ds.save_as(path)
    with pytest.raises(UnknownHUError, match=r"no RescaleIntercept/RescaleSlope on unsigned pixel values"):
        read_ct_series(ct_copy[0].parent)


def test_signed_values_without_rescale_are_read_as_hu_with_a_warning(ct_copy, ct_volume, caplog):
    for path in ct_copy:
        ds = pydicom.dcmread(path)
        if int(ds.RescaleIntercept) != 0 or float(ds.RescaleSlope) != 1:
            pytest.skip("the writer stored these slices with a rescale; nothing to remove")
        edit(path, RescaleIntercept=_DELETE, RescaleSlope=_DELETE)
    with caplog.at_level(logging.WARNING):
        series = read_ct_series(ct_copy[0].parent)
    assert np.array_equal(series.volume.array, ct_volume.array)
    assert "without RescaleIntercept/RescaleSlope" in caplog.text


def test_a_corrupt_slice_is_not_dropped_silently(ct_copy):
    top = ct_copy[-1]
    data = bytearray(top.read_bytes())
    data[132:400] = b"\xff" * 268  # the magic number survives, the header after it does not
    top.write_bytes(bytes(data))
    listed = {s.series_uid: s.n_images for s in list_series(top.parent)}
    assert listed[pydicom.dcmread(ct_copy[0]).SeriesInstanceUID] == len(ct_copy) - 1  # discovery still lists it
    with pytest.raises(UnreadableSliceError, match=rf"1 file\(s\) beside its slices .* first .*{top.name}"):
        read_ct_series(top.parent)


def test_an_unreadable_file_in_another_folder_does_not_block_the_series(ct_copy, ct_volume):
    other = ct_copy[0].parent / "elsewhere"
    other.mkdir()
    (other / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    assert np.array_equal(read_ct_series(ct_copy[0].parent).volume.array, ct_volume.array)
