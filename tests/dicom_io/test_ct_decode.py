"""``read_ct_series`` decodes the usual CT slice itself: the volume is highdicom's own, voxel for voxel, and its geometry."""

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicom_io import ct_series
from dicom_io.ct_checks import ORIENTATION_TOLERANCE
from dicom_io.ct_series import read_ct_series

SAMPLE_CT = Path(__file__).resolve().parents[2] / "sample" / "ts_abdomen_3mm" / "ct"


def _highdicoms_volume(folder: Path) -> hd.Volume:
    datasets = [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
    return hd.get_volume_from_series(datasets, dtype=np.float32, apply_real_world_transform=False,
                                     apply_modality_transform=None, apply_voi_transform=False,
                                     apply_presentation_lut=False, orientation_tol=ORIENTATION_TOLERANCE)


def _assert_highdicoms(series: ct_series.CTSeries, folder: Path) -> None:
    theirs = _highdicoms_volume(folder)
    assert series.volume.array.dtype == np.float32
    assert np.array_equal(series.volume.array, theirs.array)
    assert np.array_equal(series.volume.affine, theirs.affine)
    assert series.volume.frame_of_reference_uid == theirs.frame_of_reference_uid
    positions = [np.asarray(ds.ImagePositionPatient, float) for ds in series.datasets]
    assert np.allclose(positions, [series.volume.affine[:3] @ [i, 0, 0, 1] for i in range(len(positions))], atol=1e-3)


def _edit_all(paths: list[Path], **attributes) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        ds.save_as(path)


def test_the_bundled_sample_ct_is_highdicoms_volume():
    _assert_highdicoms(read_ct_series(SAMPLE_CT), SAMPLE_CT)


def test_a_fractional_rescale_is_applied_with_highdicoms_float32_arithmetic(ct_copy, monkeypatch):
    _edit_all(ct_copy, RescaleSlope="0.37", RescaleIntercept="-1023.6")
    calls = []
    monkeypatch.setattr(ct_series, "_decode", lambda *a, **k: calls.append(a))  # must not be needed
    series = read_ct_series(ct_copy[0].parent)
    assert not calls
    _assert_highdicoms(series, ct_copy[0].parent)


def test_slices_in_reverse_file_order_come_out_in_volume_order(ct_copy):
    files = list(reversed(ct_copy))
    series = read_ct_series(files)
    _assert_highdicoms(series, ct_copy[0].parent)


def test_anything_but_a_rescaled_single_frame_slice_goes_through_highdicom(ct_copy, monkeypatch):
    """A Modality LUT Sequence (or colour, or several frames): the whole decode is highdicom's."""
    lut = Dataset()
    lut.LUTDescriptor, lut.ModalityLUTType, lut.LUTData = [16, 0, 16], "HU", list(range(16))
    with_lut = pydicom.dcmread(ct_copy[0])
    with_lut.ModalityLUTSequence = Sequence([lut])
    with_lut.ModalityLUTSequence[0]["LUTData"].VR = "US"
    colour = pydicom.dcmread(ct_copy[0])
    colour.SamplesPerPixel, colour.PhotometricInterpretation = 3, "RGB"
    assert ct_series._rescale_only(pydicom.dcmread(ct_copy[0]))
    assert not ct_series._rescale_only(with_lut) and not ct_series._rescale_only(colour)

    with_lut.save_as(ct_copy[0])
    calls, real = [], ct_series._decode
    monkeypatch.setattr(ct_series, "_decode", lambda *a, **k: calls.append(a) or real(*a, **k))
    try:
        read_ct_series(ct_copy[0].parent)
    except ValueError:
        pass  # whatever highdicom makes of it: the point is who decoded
    assert len(calls) == 1


def test_a_slice_whose_pixels_cannot_be_decoded_is_named(ct_copy):
    from dicom_io.errors import DicomInputError

    ds = pydicom.dcmread(ct_copy[4])
    ds.PixelData = ds.PixelData[:100]  # truncated
    ds.save_as(ct_copy[4])
    with pytest.raises(DicomInputError, match=f"cannot decode the pixels of .*{ct_copy[4].name}"):
        read_ct_series(ct_copy[0].parent)
