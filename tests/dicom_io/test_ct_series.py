"""read_ct_series: round trip, real data, transfer syntaxes and every refusal."""

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MediaStorageDirectoryStorage,
    RLELossless,
    generate_uid,
)

from dicom_io.ct_series import list_series, read_ct_series
from dicom_io.errors import (
    DicomInputError,
    DuplicateSliceError,
    GantryTiltError,
    InconsistentGeometryError,
    InvalidUIDError,
    MissingAttributeError,
    MissingFrameOfReferenceError,
    MissingSliceError,
    NonUniformSpacingError,
    NotCTError,
    SeriesSelectionError,
    TooFewSlicesError,
)

OTHER_SERIES_UID = "1.2.826.0.1.3680043.8.498.22"
REAL_CT_SERIES = "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1"
REAL_SEG_SERIES = "1.2.276.0.7230010.3.1.3.0.42154.1458337731.665795"
_DELETE = object()


def edit(path: Path, **attributes) -> None:
    """Rewrite one file with attributes changed (``_DELETE`` removes one)."""
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        if value is _DELETE:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def position(path: Path) -> np.ndarray:
    return np.array(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient, dtype=float)


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def fingerprint(folder: Path) -> dict[Path, tuple[str, int]]:
    return {
        p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- what a good series gives ------------------------------------------------


def test_round_trip_geometry_array_and_order(ct_dir, ct_volume):
    series = read_ct_series(ct_dir)
    assert np.allclose(series.volume.affine, ct_volume.affine, atol=1e-4)
    assert np.array_equal(series.volume.array, ct_volume.array)
    assert series.volume.array.dtype == np.float32
    assert series.series_instance_uid == pydicom.dcmread(ct_dir / "CT_0000.dcm").SeriesInstanceUID
    assert series.geometry.spatial_shape == ct_volume.spatial_shape
    for index, ds in enumerate(series.datasets):
        expected = series.volume.affine @ np.array([index, 0, 0, 1])
        assert np.allclose(ds.ImagePositionPatient, expected[:3], atol=1e-4)
        assert "PixelData" not in ds


def test_input_order_does_not_matter(ct_dir):
    files = sorted(ct_dir.iterdir())
    shuffled = [files[i] for i in np.random.default_rng(1).permutation(len(files))]
    assert np.array_equal(read_ct_series(shuffled).volume.array, read_ct_series(ct_dir).volume.array)


def test_modality_lut_is_applied(ct_copy, ct_volume):
    for path in ct_copy:
        edit(path, RescaleSlope=2, RescaleIntercept=-1000)
    series = read_ct_series(ct_copy[0].parent)
    assert np.array_equal(series.volume.array, ct_volume.array.astype(np.float32) * 2 - 1000)


def test_monochrome1_is_not_inverted(ct_copy, ct_volume):
    for path in ct_copy:
        edit(path, PhotometricInterpretation="MONOCHROME1")
    assert np.array_equal(read_ct_series(ct_copy[0].parent).volume.array, ct_volume.array)


def test_folder_walk_skips_non_dicom_and_dicomdir_and_reads_files_without_extension(ct_copy, ct_volume):
    folder = ct_copy[0].parent
    nested = folder / "a" / "b"
    nested.mkdir(parents=True)
    for path in ct_copy[:6]:
        path.rename(nested / path.stem)  # no .dcm extension
    (folder / "notes.txt").write_text("not DICOM")
    (folder / "empty").write_bytes(b"")
    dicomdir = pydicom.dcmread(ct_copy[-1], stop_before_pixels=True)
    dicomdir.file_meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    dicomdir.save_as(folder / "DICOMDIR")
    assert np.array_equal(read_ct_series(folder).volume.array, ct_volume.array)


def test_explicit_file_list_must_be_dicom(ct_dir, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")
    with pytest.raises(DicomInputError, match=r"notes\.txt is not a DICOM file"):
        read_ct_series([*ct_dir.iterdir(), text])


def test_reading_never_changes_files(ct_copy, tmp_path, test_data):
    folder = ct_copy[0].parent
    compressed = tmp_path / "rle"
    transcode(ct_copy, compressed, RLELossless)
    for path in ct_copy:
        path.chmod(0o444)
    before = [fingerprint(folder), fingerprint(compressed), fingerprint(test_data / "dcmqi_ct3slice")]
    read_ct_series(folder)
    read_ct_series(compressed)
    read_ct_series(test_data / "dcmqi_ct3slice")
    list_series(folder)
    assert [fingerprint(folder), fingerprint(compressed), fingerprint(test_data / "dcmqi_ct3slice")] == before


# --- real data -----------------------------------------------------------------


def test_real_ct_next_to_seg_files(test_data):
    folder = test_data / "dcmqi_ct3slice"
    series = read_ct_series(folder)
    assert series.series_instance_uid == REAL_CT_SERIES
    assert series.volume.spatial_shape == (3, 512, 512)
    assert np.allclose(series.volume.spacing, (1.0, 0.810547, 0.810547))
    assert series.volume.array.min() == -3024 and series.volume.array.max() == 1381
    assert [Path(ds.filename).name for ds in series.datasets] == ["01.dcm", "02.dcm", "03.dcm"]
    assert {(s.series_uid, s.modality, s.n_images) for s in list_series(folder)} == {
        (REAL_CT_SERIES, "CT", 3),
        (REAL_SEG_SERIES, "SEG", 1),
    }


def test_requesting_the_seg_series_is_not_ct(test_data):
    with pytest.raises(NotCTError, match=r"liver\.dcm: modality 'SEG' is not CT"):
        read_ct_series(test_data / "dcmqi_ct3slice", REAL_SEG_SERIES)


def test_folder_without_ct_names_what_it_found(test_data, tmp_path):
    shutil.copy(test_data / "dcmqi_ct3slice" / "liver.dcm", tmp_path)
    with pytest.raises(NotCTError, match=rf"no CT series.*{REAL_SEG_SERIES} \(SEG, 1 images\)"):
        read_ct_series(tmp_path)


def test_single_slice_is_refused():
    path = get_testdata_file("CT_small.dcm")
    with pytest.raises(TooFewSlicesError, match=r"has 1 image slice.*at least 2"):
        read_ct_series([path])


def test_empty_folder(tmp_path):
    with pytest.raises(SeriesSelectionError, match=f"no DICOM files found in {re.escape(str(tmp_path))}"):
        read_ct_series(tmp_path)


# --- transfer syntaxes --------------------------------------------------------


def transcode(paths: list[Path], out_dir: Path, transfer_syntax: str) -> None:
    out_dir.mkdir()
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.compress(transfer_syntax, generate_instance_uid=False)
        ds.save_as(out_dir / path.name)


@pytest.mark.parametrize("transfer_syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=str)
def test_compressed_transfer_syntaxes_decode_exactly(ct_dir, ct_volume, tmp_path, transfer_syntax):
    transcode(sorted(ct_dir.iterdir()), tmp_path / "out", transfer_syntax)
    assert pydicom.dcmread(tmp_path / "out" / "CT_0000.dcm").file_meta.TransferSyntaxUID == transfer_syntax
    assert np.array_equal(read_ct_series(tmp_path / "out").volume.array, ct_volume.array)


def test_jpeg_lossless_sv1_from_dcmtk_decodes_exactly(ct_dir, ct_volume, tmp_path):
    dcmcjpeg = shutil.which("dcmcjpeg")
    if dcmcjpeg is None:
        pytest.skip("dcmcjpeg (DCMTK) is not installed")
    out = tmp_path / "jpeg"
    out.mkdir()
    for path in sorted(ct_dir.iterdir()):
        subprocess.run([dcmcjpeg, "+e1", str(path), str(out / path.name)], check=True)
    assert pydicom.dcmread(out / "CT_0000.dcm").file_meta.TransferSyntaxUID == JPEGLosslessSV1
    assert np.array_equal(read_ct_series(out).volume.array, ct_volume.array)


# --- choosing a series ----------------------------------------------------------


@pytest.fixture
def two_series(ct_dir, ct_volume, write_series, tmp_path) -> Path:
    folder = tmp_path / "study"
    shutil.copytree(ct_dir, folder / "one")
    write_series(ct_volume[:7], folder / "two", series_uid=OTHER_SERIES_UID)
    return folder


def test_several_series_need_a_choice(two_series, ct_dir):
    first = pydicom.dcmread(ct_dir / "CT_0000.dcm").SeriesInstanceUID
    with pytest.raises(SeriesSelectionError, match="2 CT series") as error:
        read_ct_series(two_series)
    assert f"{first} (CT, 12 images)" in str(error.value)
    assert f"{OTHER_SERIES_UID} (CT, 7 images)" in str(error.value)
    assert read_ct_series(two_series, OTHER_SERIES_UID).volume.spatial_shape[0] == 7
    assert read_ct_series(two_series, first).volume.spatial_shape[0] == 12
    assert [(s.series_uid, s.n_images) for s in list_series(two_series)] == sorted(
        [(first, 12), (OTHER_SERIES_UID, 7)]
    )


def test_requested_series_not_found_lists_candidates(two_series):
    with pytest.raises(SeriesSelectionError, match=rf"series 1\.2\.3 not found.*{OTHER_SERIES_UID} \(CT, 7"):
        read_ct_series(two_series, "1.2.3")


def test_requested_series_uid_must_be_valid(two_series):
    with pytest.raises(InvalidUIDError, match=r"requested series_uid: '1\.02' is not a valid"):
        read_ct_series(two_series, "1.02")


# --- localizers -------------------------------------------------------------------


def add_scout(template: Path, target: Path, image_type: list[str], rows: int = 20, columns: int = 24) -> None:
    """A sagittal image in the same series, like a scanner's localizer."""
    ds = pydicom.dcmread(template)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImageType = image_type
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.Rows, ds.Columns = rows, columns
    ds.PixelData = np.zeros((rows, columns), np.int16).tobytes()
    ds.save_as(target)


def test_localizer_by_image_type_is_skipped(ct_copy, ct_volume):
    add_scout(ct_copy[0], ct_copy[0].parent / "scout", ["ORIGINAL", "PRIMARY", "LOCALIZER"])
    assert np.array_equal(read_ct_series(ct_copy[0].parent).volume.array, ct_volume.array)


def test_unflagged_image_with_other_orientation_and_matrix_is_skipped(ct_copy, ct_volume):
    add_scout(ct_copy[0], ct_copy[0].parent / "scout", ["ORIGINAL", "PRIMARY", "AXIAL"])
    assert np.array_equal(read_ct_series(ct_copy[0].parent).volume.array, ct_volume.array)


def test_other_orientation_with_same_matrix_is_an_error(ct_copy):
    edit(ct_copy[3], ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    with pytest.raises(InconsistentGeometryError, match=r"CT_0003\.dcm: ImageOrientationPatient .* differs"):
        read_ct_series(ct_copy[0].parent)


def test_no_majority_orientation_is_an_error(ct_copy):
    for path in ct_copy[:6]:
        edit(path, ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    with pytest.raises(InconsistentGeometryError, match=r"no orientation has a majority: \[6, 6\]"):
        read_ct_series(ct_copy[0].parent)


def test_series_of_localizers_only_has_no_slices(ct_dir, tmp_path):
    template = ct_dir / "CT_0000.dcm"
    for name in ("a", "b"):
        add_scout(template, tmp_path / name, ["ORIGINAL", "PRIMARY", "LOCALIZER"])
    with pytest.raises(TooFewSlicesError, match="has 0 image slice"):
        read_ct_series(tmp_path)


# --- refusals: content ------------------------------------------------------------


def test_non_ct_modality(ct_copy):
    for path in ct_copy:
        edit(path, Modality="MR")
    with pytest.raises(NotCTError, match=r"no CT series .*\(MR, 12 images\)"):
        read_ct_series(ct_copy[0].parent)
    uid = pydicom.dcmread(ct_copy[0]).SeriesInstanceUID
    with pytest.raises(NotCTError, match=r"CT_0000\.dcm: modality 'MR' is not CT"):
        read_ct_series(ct_copy[0].parent, uid)


def test_one_non_ct_file_in_a_ct_series(ct_copy):
    edit(ct_copy[4], Modality="PT")
    with pytest.raises(NotCTError, match=r"CT_0004\.dcm: modality 'PT' is not CT"):
        read_ct_series(ct_copy[0].parent)


def test_multi_frame_is_refused(ct_copy):
    edit(ct_copy[0], NumberOfFrames=2)
    with pytest.raises(DicomInputError, match=r"CT_0000\.dcm: multi-frame image \(2 frames\)"):
        read_ct_series(ct_copy[0].parent)


def test_missing_slice(ct_copy):
    ct_copy[5].unlink()
    expected = r"missing slices .* 1 slice\(s\) missing after sorted slice 4 \(.*CT_0004\.dcm"
    with pytest.raises(MissingSliceError, match=expected):
        read_ct_series(ct_copy[0].parent)


def test_duplicate_position(ct_copy):
    dup = ct_copy[0].parent / "dup.dcm"
    shutil.copy(ct_copy[5], dup)
    edit(dup, SOPInstanceUID=generate_uid())
    expected = r"duplicate slice position .*(CT_0005\.dcm and .*dup\.dcm|dup\.dcm and .*CT_0005\.dcm)"
    with pytest.raises(DuplicateSliceError, match=expected):
        read_ct_series(ct_copy[0].parent)


def test_same_sop_instance_twice(ct_copy):
    shutil.copy(ct_copy[5], ct_copy[0].parent / "copy.dcm")
    uid = pydicom.dcmread(ct_copy[5]).SOPInstanceUID
    with pytest.raises(DuplicateSliceError, match=rf"duplicate SOPInstanceUID {uid}"):
        read_ct_series(ct_copy[0].parent)


def test_non_uniform_spacing(ct_copy, ct_volume):
    normal = unit(ct_volume.affine[:3, 0])
    edit(ct_copy[5], ImagePositionPatient=list(position(ct_copy[5]) + 0.5 * normal))
    with pytest.raises(NonUniformSpacingError, match=r"non-uniform slice spacing .*CT_000[45]\.dcm"):
        read_ct_series(ct_copy[0].parent)


def test_spacing_jitter_within_tolerance_is_accepted(ct_copy, ct_volume):
    normal = unit(ct_volume.affine[:3, 0])
    edit(ct_copy[5], ImagePositionPatient=list(position(ct_copy[5]) + 0.005 * normal))
    assert np.array_equal(read_ct_series(ct_copy[0].parent).volume.array, ct_volume.array)
    with pytest.raises(NonUniformSpacingError):
        read_ct_series(ct_copy[0].parent, spacing_tolerance_mm=0.001, spacing_tolerance_rel=0)


def test_gantry_tilt_attribute(ct_copy):
    edit(ct_copy[2], GantryDetectorTilt=15)
    with pytest.raises(GantryTiltError, match=r"CT_0002\.dcm: gantry tilt of 15"):
        read_ct_series(ct_copy[0].parent)


def test_gantry_tilt_from_positions(ct_copy, ct_volume):
    shift = unit(ct_volume.affine[:3, 1])
    for index, path in enumerate(ct_copy):
        edit(path, ImagePositionPatient=list(position(path) + index * 0.3 * shift))
    with pytest.raises(GantryTiltError, match=r"gantry tilt .*not stacked along their normal.*CT_0011\.dcm"):
        read_ct_series(ct_copy[0].parent)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("Rows", 41), ("Columns", 47), ("PixelSpacing", [0.8, 0.71])],
)
def test_inconsistent_matrix(ct_copy, attribute, value):
    edit(ct_copy[6], **{attribute: value})
    with pytest.raises(InconsistentGeometryError, match=rf"{attribute} differs .*CT_0006\.dcm"):
        read_ct_series(ct_copy[0].parent)


def test_missing_geometry_attribute(ct_copy):
    edit(ct_copy[6], PixelSpacing=_DELETE)
    with pytest.raises(MissingAttributeError, match=r"CT_0006\.dcm: required attribute PixelSpacing is missing"):
        read_ct_series(ct_copy[0].parent)


def test_inconsistent_frame_of_reference(ct_copy):
    edit(ct_copy[6], FrameOfReferenceUID="1.2.3.4")
    with pytest.raises(InconsistentGeometryError, match=r"FrameOfReferenceUID differs .*1\.2\.3\.4 in .*CT_0006\.dcm"):
        read_ct_series(ct_copy[0].parent)


def test_missing_frame_of_reference(ct_copy):
    edit(ct_copy[6], FrameOfReferenceUID=_DELETE)
    with pytest.raises(MissingFrameOfReferenceError, match=r"CT_0006\.dcm: FrameOfReferenceUID is missing"):
        read_ct_series(ct_copy[0].parent)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the bad values too
@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"])
@pytest.mark.parametrize("value", ["", "1.02.3"])
def test_invalid_uids(ct_copy, keyword, value):
    for path in ct_copy:
        edit(path, **{keyword: value})
    with pytest.raises(InvalidUIDError, match=rf"invalid {keyword} in .*CT_0000\.dcm: '{value}'"):
        read_ct_series(ct_copy[0].parent)


def test_errors_are_value_errors():
    assert issubclass(DicomInputError, ValueError)
    for error in (NotCTError, MissingSliceError, GantryTiltError, InvalidUIDError, SeriesSelectionError):
        assert issubclass(error, DicomInputError)
    assert issubclass(MissingFrameOfReferenceError, MissingAttributeError)


def test_source_must_be_a_folder_or_files(tmp_path):
    with pytest.raises(DicomInputError, match="not a folder"):
        read_ct_series(tmp_path / "missing")
