"""s5cmd downloads from a real S3 server on loopback, with IDC's bucket layout, checked on arrival."""

from __future__ import annotations

import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

from dicom_io.ct_series import read_ct_series
from dicom_io.ct_writer import write_ct_series
from dicom_io.idc import IdcDownloadError, IdcSeries, download_series

from .conftest import MotoS3, free_port

STUDY_UID = "1.2.826.0.1.3680043.8.498.101"
SERIES_UID = "1.2.826.0.1.3680043.8.498.102"
FRAME_UID = "1.2.826.0.1.3680043.8.498.103"
N_SLICES = 5


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory) -> tuple[hd.Volume, list[Path]]:
    """A tiny synthetic CT series (5 slices of 12x10) written by our writer."""
    array = np.random.default_rng(7).integers(-1024, 2000, size=(N_SLICES, 12, 10)).astype(np.int16)
    volume = hd.Volume.from_components(
        array,
        spacing=[2.0, 0.75, 0.5],
        direction=np.eye(3),
        position=[-10.0, 20.0, 30.0],
        coordinate_system="PATIENT",
        frame_of_reference_uid=FRAME_UID,
    )
    files = write_ct_series(
        volume,
        tmp_path_factory.mktemp("ct"),
        study_instance_uid=STUDY_UID,
        series_instance_uid=SERIES_UID,
        frame_of_reference_uid=FRAME_UID,
    )
    return volume, files


def _series(url: str, instance_count: int = N_SLICES) -> IdcSeries:
    return IdcSeries(
        series_uid=SERIES_UID,
        study_uid=STUDY_UID,
        collection_id="synthetic",
        modality="CT",
        instance_count=instance_count,
        series_aws_url=url,
        series_size_mb=0.01,
    )


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.startswith("."))


def test_download_reads_back_equal_and_resumes(moto_s3: MotoS3, ct_files, tmp_path) -> None:
    volume, files = ct_files
    series = _series(moto_s3.seed_series(files))

    folder = download_series(series, tmp_path, endpoint_url=moto_s3.endpoint_url, retries=1)

    assert folder == tmp_path / SERIES_UID
    assert len(list(folder.glob("*.dcm"))) == N_SLICES
    assert _leftovers(tmp_path) == []
    ct = read_ct_series(folder)
    assert ct.series_instance_uid == SERIES_UID
    np.testing.assert_array_equal(ct.volume.array, volume.array)
    np.testing.assert_allclose(ct.volume.affine, volume.affine)

    # Complete already: no download happens, so even a dead endpoint is fine.
    dead = f"http://127.0.0.1:{free_port()}"
    assert download_series(series, tmp_path, endpoint_url=dead, retries=0) == folder

    # An incomplete folder is fetched again and replaced.
    next(folder.glob("*.dcm")).unlink()
    assert download_series(series, tmp_path, endpoint_url=moto_s3.endpoint_url, retries=1) == folder
    assert len(list(folder.glob("*.dcm"))) == N_SLICES
    assert _leftovers(tmp_path) == []


def test_missing_objects_raise_with_counts(moto_s3: MotoS3, ct_files, tmp_path) -> None:
    _, files = ct_files
    series = _series(moto_s3.seed_series(files[:3]))  # the index promises 5

    with pytest.raises(IdcDownloadError, match=f"series {SERIES_UID}: expected {N_SLICES} .* received 3"):
        download_series(series, tmp_path, endpoint_url=moto_s3.endpoint_url, retries=1)
    assert not (tmp_path / SERIES_UID).exists()  # nothing that looks like a series
    assert _leftovers(tmp_path) == []


def test_empty_series_folder_names_s5cmd_error(moto_s3: MotoS3, tmp_path) -> None:
    series = _series("s3://idc-open-data/00000000-0000-0000-0000-000000000000/*")
    with pytest.raises(IdcDownloadError, match="received 0; s5cmd: .*no object found"):
        download_series(series, tmp_path, endpoint_url=moto_s3.endpoint_url, retries=1)


def test_unreachable_endpoint_fails_fast(tmp_path) -> None:
    series = _series("s3://idc-open-data/8686e4b9-2d30-4b50-b2f0-7feea689cd3f/*")
    endpoint = f"http://127.0.0.1:{free_port()}"  # closed port
    start = time.perf_counter()
    with pytest.raises(IdcDownloadError, match="received 0; s5cmd: .*connection refused") as caught:
        download_series(series, tmp_path, endpoint_url=endpoint, retries=1, timeout_s=30)
    assert time.perf_counter() - start < 15
    assert SERIES_UID in str(caught.value) and endpoint in str(caught.value)
    assert not (tmp_path / SERIES_UID).exists()
    assert _leftovers(tmp_path) == []
