"""write_ct_series: geometry round trip, valid IOD, determinism, value storage."""


import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from dicom_io.ct_series import read_ct_series
from dicom_io.ct_writer import write_ct_series
from dicom_io.errors import InvalidUIDError
from tests.support.dciodvfy import errors_reported

DERIVED_SERIES_UID = "1.2.826.0.1.3680043.8.498.44"


@pytest.mark.parametrize(
    "direction",
    [
        np.eye(3),
        np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),  # sagittal-like
        None,  # oblique (conftest default)
    ],
    ids=["identity", "permuted", "oblique"],
)
def test_round_trip_any_direction(make_volume, write_series, tmp_path, direction):
    volume = make_volume(direction=direction)
    write_series(volume, tmp_path)
    series = read_ct_series(tmp_path)
    assert np.allclose(series.volume.affine, volume.affine, atol=1e-4)
    assert np.array_equal(series.volume.array, volume.array)


def test_left_handed_volume_reads_back_flipped_along_slices(make_volume, write_series, tmp_path):
    volume = make_volume(direction=np.diag([1.0, 1.0, -1.0]))
    assert volume.handedness == hd.AxisHandedness.LEFT_HANDED
    write_series(volume, tmp_path)
    expected = volume.ensure_handedness("RIGHT_HANDED", flip_axis=0)
    series = read_ct_series(tmp_path)
    assert np.allclose(series.volume.affine, expected.affine, atol=1e-4)
    assert np.array_equal(series.volume.array, expected.array)


def test_file_per_slice_and_attributes(ct_dir, ct_volume):
    paths = sorted(ct_dir.iterdir())
    assert [p.name for p in paths] == [f"CT_{i:04d}.dcm" for i in range(ct_volume.spatial_shape[0])]
    ds = pydicom.dcmread(paths[3])
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert (ds.PatientName, ds.PatientID) == ("Anonymous", "ANON")
    assert (ds.Rows, ds.Columns) == ct_volume.spatial_shape[1:]
    assert ds.InstanceNumber == 4
    assert (ds.PixelRepresentation, ds.RescaleIntercept, ds.RescaleSlope) == (1, 0, 1)
    assert np.array_equal(ds.pixel_array, ct_volume.array[3])
    assert not any(keyword in ds for keyword in ("InstanceCreationDate", "ContentDate", "AcquisitionDateTime"))
    assert ds.StudyDate == ""


def test_deterministic_bytes_and_uids(ct_volume, write_series, tmp_path):
    first = write_series(ct_volume, tmp_path / "a")
    second = write_series(ct_volume, tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in first]
    assert len(set(uids)) == len(uids)
    assert all(pydicom.uid.UID(uid).is_valid for uid in uids)
    other = write_series(ct_volume[:2], tmp_path / "c", series_uid=DERIVED_SERIES_UID)
    assert pydicom.dcmread(other[0]).SOPInstanceUID not in uids


def test_custom_uids_and_dates(ct_volume, write_series, tmp_path):
    paths = write_series(
        ct_volume[:2],
        tmp_path,
        sop_instance_uid_for=lambda index: f"1.2.826.0.1.3680043.8.498.9.{index + 1}",
        study_date="20240131",
        study_time="101500",
        series_description="sample",
    )
    ds = pydicom.dcmread(paths[1])
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == "1.2.826.0.1.3680043.8.498.9.2"
    assert (ds.StudyDate, ds.ContentDate, ds.StudyTime) == ("20240131", "20240131", "101500")
    assert ds.SeriesDescription == "sample"


def test_values_outside_int16_get_an_intercept(make_volume, write_series, tmp_path):
    volume = make_volume(shape=(3, 8, 8))
    volume = volume.with_array(volume.array.astype(np.int32) + 40000)
    write_series(volume, tmp_path)
    assert pydicom.dcmread(tmp_path / "CT_0000.dcm").RescaleIntercept != 0
    assert np.array_equal(read_ct_series(tmp_path).volume.array, volume.array)


def test_float_values_are_rounded(make_volume, write_series, tmp_path):
    volume = make_volume(shape=(3, 8, 8))
    write_series(volume.with_array(volume.array + 0.3), tmp_path)
    assert np.array_equal(read_ct_series(tmp_path).volume.array, volume.array)


@pytest.mark.parametrize(
    ("values", "message"),
    [(np.array([0, 70000]), "does not fit 16 bits"), (np.array([0, np.nan]), "NaN")],
)
def test_unstorable_values(make_volume, write_series, tmp_path, values, message):
    volume = make_volume(shape=(2, 8, 8))
    array = volume.array.astype(np.float64)
    array[0, 0, :2] = values
    with pytest.raises(ValueError, match=message):
        write_series(volume.with_array(array), tmp_path)


def test_compressed_output(ct_volume, write_series, tmp_path):
    write_series(ct_volume, tmp_path, transfer_syntax=RLELossless)
    assert pydicom.dcmread(tmp_path / "CT_0000.dcm").file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(read_ct_series(tmp_path).volume.array, ct_volume.array)


def test_refused_arguments(make_volume, write_series, tmp_path):
    volume = make_volume(shape=(2, 8, 8))
    with pytest.raises(ValueError, match="lossless only"):
        write_series(volume, tmp_path, transfer_syntax=JPEGBaseline8Bit)
    with pytest.raises(ValueError, match="at least 32 rows and columns"):
        write_series(volume, tmp_path, transfer_syntax=JPEG2000Lossless)
    with pytest.raises(InvalidUIDError, match=r"series_instance_uid: '1\.02'"):
        write_series(volume, tmp_path, series_uid="1.02")
    with pytest.raises(InvalidUIDError, match=r"SOPInstanceUID for slice 0: 'x'"):
        write_series(volume, tmp_path, sop_instance_uid_for=lambda index: "x")
    with pytest.raises(ValueError, match="frame of reference"):
        write_ct_series(
            volume,
            tmp_path,
            study_instance_uid="1.2.3",
            series_instance_uid="1.2.4",
            frame_of_reference_uid="1.2.5",
        )


def test_derived_series_references_its_source(ct_dir, write_series, tmp_path):
    source = read_ct_series(ct_dir)
    roi = source.volume[2:6, 5:30, 10:40]
    paths = write_series(roi, tmp_path, series_uid=DERIVED_SERIES_UID, source_series=source.datasets)
    ds = pydicom.dcmread(paths[1])
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.datasets[3].SOPInstanceUID
    (referenced,) = ds.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == source.series_instance_uid
    assert len(referenced.ReferencedInstanceSequence) == len(source.datasets)
    assert np.array_equal(read_ct_series(tmp_path).volume.array, roi.array)
    with pytest.raises(ValueError, match="a derived CT is written into its source's study"):
        write_ct_series(
            roi,
            tmp_path / "other",
            study_instance_uid="1.2.3",
            series_instance_uid=DERIVED_SERIES_UID,
            frame_of_reference_uid=source.frame_of_reference_uid,
            source_series=source.datasets,
        )


def test_dciodvfy_finds_no_errors(ct_dir, write_series, tmp_path):
    assert errors_reported(ct_dir / "CT_0000.dcm") == []
    source = read_ct_series(ct_dir)
    paths = write_series(source.volume[2:6], tmp_path, series_uid=DERIVED_SERIES_UID, source_series=source.datasets)
    assert errors_reported(paths[0]) == []
