"""CT volume files → DICOM CT series: exact round trip, valid DICOM, deterministic, made once; bad volumes refused."""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from dicom_io.bonehub_layout import BoneHubSubject
from dicom_io.ct_series import read_ct_series
from dicom_io.geometry import match_grid, same_grid
from dicom_io.volume_ct import DERIVED_CT, MARKER, VolumeInput, derive_ct
from dicom_io.volume_files import VolumeInputError, read_volume
from tests.support.dciodvfy import errors_reported

HU = np.random.default_rng(7).integers(-1024, 3000, size=(6, 7, 9)).astype(np.int16)  # (z, y, x)
OBLIQUE = Rotation.from_euler("xyz", [12, -25, 33], degrees=True).as_matrix()
GEOMETRIES = {
    "axial": dict(spacing=(0.8, 0.9, 2.5), origin=(0.0, 0.0, 0.0), direction=np.eye(3)),
    "oblique": dict(spacing=(0.7, 0.75, 1.25), origin=(-180.25, 95.5, 1210.0), direction=OBLIQUE),
    "left-handed": dict(spacing=(1.0, 1.0, 3.0), origin=(10.0, -20.0, 30.0), direction=np.diag([-1.0, -1.0, -1.0])),
}
SUBJECT_INFO = {"dataset_id": 1, "subject_id": 1, "age": 65, "gender": "F", "weight": 70.5, "height": 172, "image": True}


def write_volume(path: Path, array: np.ndarray = HU, *, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                 direction=np.eye(3)) -> Path:
    """``array`` (z, y, x) as a volume file; spacing, origin and direction in SimpleITK's (x, y, z) / LPS."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(np.asarray(direction, dtype=float).flatten().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def subject(image: Path, info: dict | None = None) -> BoneHubSubject:
    return BoneHubSubject("001", "001_000001", image, (), SUBJECT_INFO if info is None else info,
                          {"dataset_id": 1, "name": "Phantom collection"})


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("volumes")
    return {(geometry, suffix): write_volume(root / f"{geometry}{suffix}", **GEOMETRIES[geometry])
            for geometry in GEOMETRIES for suffix in (".nii.gz", ".nrrd", ".mha")}


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_round_trip_is_voxel_and_geometry_exact(volumes, tmp_path, geometry, suffix):
    path = volumes[(geometry, suffix)]
    made = derive_ct(VolumeInput(path, path.name), tmp_path)
    ct = read_ct_series(made.folder)
    assert (ct.series_instance_uid, ct.study_instance_uid, len(ct.datasets)) == (made.series_uid, made.study_uid, made.instances)
    source = hd.Volume.from_simpleitk(sitk.ReadImage(str(path)))  # highdicom's own reading, independent of ours
    on_ct = match_grid(source, ct.volume.get_geometry())
    assert on_ct is not None and same_grid(on_ct, ct.volume)
    assert np.array_equal(on_ct.array, ct.volume.array)
    assert np.abs(on_ct.affine - ct.volume.affine).max() < 1e-6
    assert ct.volume.array.shape == HU.shape  # the file's own slices: axial stays axial


def test_derived_series_is_valid_dicom_with_its_identity(volumes, tmp_path):
    path = volumes[("oblique", ".nii.gz")]
    made = derive_ct(VolumeInput(path, "Dataset_001/Image/001_000001.nii.gz", subject(path)), tmp_path)
    files = sorted(made.folder.glob("*.dcm"))
    assert errors_reported(files[0]) == [] and errors_reported(files[-1]) == []
    ds = pydicom.dcmread(files[0])
    assert ds.PatientID == "001_000001" and ds.PatientName == ""
    assert (ds.ClinicalTrialSponsorName, ds.ClinicalTrialProtocolID, ds.ClinicalTrialSubjectID) == ("BoneHub", "001", "001_000001")
    assert ds.ClinicalTrialProtocolName == "Phantom collection"
    assert (ds.PatientAge, ds.PatientSex, float(ds.PatientWeight), float(ds.PatientSize)) == ("065Y", "F", 70.5, 1.72)
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert "Dataset_001/Image/001_000001.nii.gz" in ds.DerivationDescription
    assert made.folder.name.split("-")[0] in ds.DerivationDescription  # the digest
    assert "rounded" not in ds.DerivationDescription


def test_plain_file_gets_a_digest_id_and_no_trial_attributes(volumes, tmp_path):
    path = volumes[("axial", ".mha")]
    first = sorted(derive_ct(VolumeInput(path, "axial.mha"), tmp_path).folder.glob("*.dcm"))[0]
    assert errors_reported(first) == []
    ds = pydicom.dcmread(first)
    assert ds.PatientID.startswith("volume-") and len(ds.PatientID) == len("volume-") + 16
    assert "ClinicalTrialSubjectID" not in ds and "PatientAge" not in ds


def test_deterministic_and_made_once(volumes, tmp_path):
    path = volumes[("oblique", ".nrrd")]
    item = VolumeInput(path, "oblique.nrrd", subject(path))
    first, second = derive_ct(item, tmp_path / "a"), derive_ct(item, tmp_path / "b")
    assert (first.series_uid, first.study_uid) == (second.series_uid, second.study_uid)
    assert first.folder.name == second.folder.name
    files = sorted(p.name for p in first.folder.iterdir())
    assert files == sorted(p.name for p in second.folder.iterdir())
    assert all((first.folder / name).read_bytes() == (second.folder / name).read_bytes() for name in files)

    stamps = {p: p.stat().st_mtime_ns for p in first.folder.iterdir()}
    assert derive_ct(item, tmp_path / "a") == first
    assert {p: p.stat().st_mtime_ns for p in first.folder.iterdir()} == stamps  # reused, not rewritten

    (first.folder / MARKER).unlink()  # a run killed before its marker: rebuilt whole
    next(first.folder.glob("*.dcm")).unlink()
    assert derive_ct(item, tmp_path / "a") == first
    assert len(list(first.folder.glob("*.dcm"))) == first.instances and (first.folder / MARKER).is_file()
    assert [p.name for p in (tmp_path / "a" / DERIVED_CT).iterdir()] == [first.folder.name]


@pytest.mark.parametrize("suffix, data_suffix", [(".mhd", ".raw"), (".nhdr", ".raw")])
def test_detached_header_digest_covers_its_voxels(tmp_path, suffix, data_suffix):
    path = write_volume(tmp_path / f"ct{suffix}", spacing=(0.5, 0.5, 2.0))
    first = derive_ct(VolumeInput(path, path.name), tmp_path / "cache")
    assert np.array_equal(read_ct_series(first.folder).volume.array, HU[::-1])
    again = derive_ct(VolumeInput(path, path.name), tmp_path / "other")
    assert (again.series_uid, again.folder.name) == (first.series_uid, first.folder.name)
    write_volume(tmp_path / f"ct{suffix}", HU + 1, spacing=(0.5, 0.5, 2.0))  # same header bytes, other voxels
    assert (tmp_path / f"ct{data_suffix}").is_file()
    assert derive_ct(VolumeInput(path, path.name), tmp_path / "cache").series_uid != first.series_uid


def test_same_file_other_subject_is_another_series_and_new_metadata_another_folder(volumes, tmp_path):
    path = volumes[("axial", ".nii.gz")]
    plain = derive_ct(VolumeInput(path, "axial.nii.gz"), tmp_path)
    bonehub = derive_ct(VolumeInput(path, "axial.nii.gz", subject(path)), tmp_path)
    older = derive_ct(VolumeInput(path, "axial.nii.gz", subject(path, {**SUBJECT_INFO, "age": 66})), tmp_path)
    assert plain.series_uid != bonehub.series_uid
    assert older.series_uid == bonehub.series_uid and older.folder != bonehub.folder  # same CT, headers updated


def test_non_integer_values_are_rounded_and_recorded(tmp_path):
    path = write_volume(tmp_path / "float.nrrd", HU.astype(np.float32) + 0.25)
    ds = pydicom.dcmread(next(derive_ct(VolumeInput(path, "float.nrrd"), tmp_path).folder.glob("*.dcm")))
    assert "rounded to whole HU (largest change 0.25 HU)" in ds.DerivationDescription
    # (z, y, x) with identity direction is left-handed; like a DICOM reader it comes back stacked head first
    assert np.array_equal(read_volume(path).volume.array, HU[::-1])


def test_implausible_subject_metadata_is_left_out_without_logging_it(volumes, tmp_path, caplog):
    path = volumes[("axial", ".nrrd")]
    info = {**SUBJECT_INFO, "age": 412, "gender": "unknown-ish", "weight": -3.0, "height": 1.8}
    with caplog.at_level(logging.WARNING, logger="bonehub.volumes"):
        ds = pydicom.dcmread(next(derive_ct(VolumeInput(path, "x.nrrd", subject(path, info)), tmp_path).folder.glob("*.dcm")))
    assert not any(ds.get(keyword) for keyword in ("PatientAge", "PatientSex", "PatientWeight", "PatientSize"))
    assert {"age", "gender", "weight", "height"} <= {r.getMessage().split()[3] for r in caplog.records}
    assert not any(value in caplog.text for value in ("412", "unknown-ish", "-3", "1.8"))


def _nan(path: Path) -> Path:
    values = HU.astype(np.float32)
    values[2, 3, 4] = np.nan
    nib.save(nib.Nifti1Image(values.T, np.eye(4)), str(path))  # SimpleITK itself would turn the NaN into 0
    return path


def _truncated(path: Path) -> Path:
    data = write_volume(path, np.tile(HU, (4, 4, 4))).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _sheared(path: Path) -> Path:
    header = ("NRRD0004\ntype: int16\ndimension: 3\nspace: left-posterior-superior\nsizes: 9 7 6\n"
              "space directions: (1,0,0) (0.5,1,0) (0,0,1)\nkinds: domain domain domain\nendian: little\n"
              "encoding: raw\nspace origin: (0,0,0)\n\n")
    path.write_bytes(header.encode() + HU.astype("<i2").tobytes())
    return path


def _image(path: Path, image: sitk.Image) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_VOLUMES = {
    "4d.nii.gz": (lambda p: _image(p, sitk.JoinSeries([sitk.GetImageFromArray(HU)] * 2)), "is 4-D"),
    "2d.nii.gz": (lambda p: _image(p, sitk.GetImageFromArray(HU[0])), "is 2-D"),
    "vector.mha": (lambda p: _image(p, sitk.Compose([sitk.GetImageFromArray(HU)] * 3)), "has 3 (vector"),
    "sheared.nrrd": (_sheared, "not orthonormal"),
    "nan.nii.gz": (_nan, "1 voxels are NaN or infinite"),
    "inf.nrrd": (lambda p: write_volume(p, np.where(HU > 2000, np.inf, HU).astype(np.float32)), "NaN or infinite"),
    "truncated.nii.gz": (_truncated, "truncated or corrupt"),
    "truncated.nrrd": (_truncated, "cannot read the volume"),
    "empty.nii.gz": (lambda p: _bytes(p, b""), "empty file"),
    "fine.nrrd": (lambda p: write_volume(p, spacing=(0.001, 1.0, 1.0)), "spacing [0.001, 1.0, 1.0] mm is outside"),
    "metres.nii.gz": (lambda p: write_volume(p, spacing=(1.0, 1.0, 80.0)), "outside 0.01..50.0 mm"),
    "absurd.mha": (lambda p: write_volume(p, HU.astype(np.int32) * 100), "not CT Hounsfield units"),
    "one_slice.nii.gz": (lambda p: write_volume(p, HU[:1]), "at least 2 voxels"),
    "garbage.nii.gz": (lambda p: _bytes(p, b"not a volume at all" * 50), "truncated or not this format"),
    "missing.nii.gz": (lambda p: p, "no such file"),
    "notes.txt": (lambda p: _bytes(p, b"hello"), "not a CT volume file"),
}


@pytest.mark.parametrize("name", list(BAD_VOLUMES))
def test_bad_volume_fails_alone_naming_it_and_leaves_nothing(tmp_path, name):
    make, reason = BAD_VOLUMES[name]
    (tmp_path / "in").mkdir()
    path = make(tmp_path / "in" / name)
    with pytest.raises(VolumeInputError, match=reason.replace("[", r"\[").replace("(", r"\(")) as error:
        derive_ct(VolumeInput(path, name), tmp_path / "cache")
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
    leftovers = list((tmp_path / "cache").rglob("*")) if (tmp_path / "cache").exists() else []
    assert [p for p in leftovers if p.is_file()] == []
