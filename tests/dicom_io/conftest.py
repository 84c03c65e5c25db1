"""Synthetic CT series for dicom_io tests, written with our own writer."""

import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dicom_io.ct_writer import write_ct_series

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.2"
FRAME_UID = "1.2.826.0.1.3680043.8.498.3"


def _make_volume(shape=(12, 40, 48), direction=None, seed=0) -> hd.Volume:
    """HU-like int16 volume with an oblique direction and a non-zero origin."""
    if direction is None:
        direction = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    array = np.random.default_rng(seed).integers(-1024, 3000, size=shape).astype(np.int16)
    return hd.Volume.from_components(
        array,
        spacing=[2.5, 0.8, 0.7],
        direction=direction,
        position=[-100.5, 30.25, 17.0],
        coordinate_system="PATIENT",
        frame_of_reference_uid=FRAME_UID,
    )


def _write(volume: hd.Volume, out_dir: Path, series_uid: str = SERIES_UID, **kwargs) -> list[Path]:
    return write_ct_series(
        volume,
        out_dir,
        study_instance_uid=STUDY_UID,
        series_instance_uid=series_uid,
        frame_of_reference_uid=FRAME_UID,
        **kwargs,
    )


@pytest.fixture(scope="session")
def make_volume():
    """``make_volume(shape=..., direction=..., seed=...)`` -> hd.Volume."""
    return _make_volume


@pytest.fixture(scope="session")
def write_series():
    """``write_series(volume, out_dir, series_uid=..., **write_ct_series kwargs)``."""
    return _write


@pytest.fixture(scope="session")
def ct_volume() -> hd.Volume:
    return _make_volume()


@pytest.fixture(scope="session")
def ct_dir(ct_volume, tmp_path_factory) -> Path:
    """A written synthetic series shared by tests: never modify it."""
    out = tmp_path_factory.mktemp("ct") / "series"
    _write(ct_volume, out)
    return out


@pytest.fixture
def ct_copy(ct_dir, tmp_path) -> list[Path]:
    """A private copy of the synthetic series to damage; paths in slice order."""
    out = tmp_path / "series"
    shutil.copytree(ct_dir, out)
    return sorted(out.iterdir())
