"""``bonehub run`` on IDC series: resolved offline with the bundled index, downloaded with s5cmd from a real S3 server."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pandas as pd
import pytest

from dicom_io.ct_writer import write_ct_series
from dicom_io.idc import read_uid_csv, resolve
from pipeline.cli import main

from .conftest import MotoS3


@pytest.fixture(scope="module")
def nlst_two(test_data):
    """The two smallest of the 18 NLST review series (109 slices each), as the index describes them."""
    rows = resolve(series_uids=read_uid_csv(test_data / "idc" / "nlst_review_series.csv"))
    return sorted(rows, key=lambda row: (row.instance_count, row.series_uid))[:2]


def _seed_synthetic(moto_s3: MotoS3, series, tmp_path) -> None:
    """A small synthetic CT under the real series' UIDs and bucket folder: bone-bright block in soft tissue."""
    array = np.full((series.instance_count, 24, 24), 40, np.int16)
    array[:, 8:16, 8:16] = 1200
    volume = hd.Volume.from_components(array, spacing=[2.5, 1.5, 1.5], direction=np.eye(3), position=[-18.0, -18.0, 0.0],
                                       coordinate_system="PATIENT", frame_of_reference_uid="1.2.826.0.1.3680043.8.498.9001")
    files = write_ct_series(volume, tmp_path / series.series_uid, study_instance_uid=series.study_uid,
                            series_instance_uid=series.series_uid, frame_of_reference_uid="1.2.826.0.1.3680043.8.498.9001")
    folder = series.series_aws_url.removeprefix("s3://idc-open-data/").removesuffix("/*")
    moto_s3.seed_series(files, folder=folder)


def test_idc_series_are_downloaded_segmented_and_a_missing_one_is_named(moto_s3, nlst_two, tmp_path, capsys):
    present, absent = nlst_two  # only the first is in the bucket
    _seed_synthetic(moto_s3, present, tmp_path)
    out = tmp_path / "seg"
    args = ["run", "--idc-series", present.series_uid, "--idc-series", absent.series_uid,
            "--idc-endpoint", moto_s3.endpoint_url, "--source", "baseline",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 3  # finished; the missing series failed
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("series_instance_uid")
    assert manifest.loc[present.series_uid, "status"] == "written"
    assert manifest.loc[present.series_uid, "study_instance_uid"] == present.study_uid
    failure = manifest.loc[absent.series_uid]
    assert failure.status == "failed"
    assert failure.error.startswith(f"fetch: IdcDownloadError: series {absent.series_uid}: expected {absent.instance_count} instances")
    assert len(list((tmp_path / "cache" / present.series_uid).glob("*.dcm"))) == present.instance_count

    assert main(args) == 3  # rerun: the written output exists, only the missing series is tried again
    rerun = pd.read_parquet(out / "manifest.parquet").set_index("series_instance_uid")
    assert rerun.loc[present.series_uid, "status"] == "exists"
    assert rerun.loc[absent.series_uid, "status"] == "failed"
    assert "1 written" in capsys.readouterr().out
