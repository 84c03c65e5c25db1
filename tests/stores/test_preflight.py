"""An output store that cannot be written fails before any work, with one line naming it and why."""

from __future__ import annotations

import pytest

from dicom_io.stores import open_store
from dicom_io.stores.preflight import OutputNotWritableError, check_local_folder, check_output_store


def test_writable_stores_pass(tmp_path, store):
    check_output_store(store)  # local folder, GCS emulator bucket, Orthanc
    if str(store.uri).startswith("file:"):
        assert list(store.root.iterdir()) == []  # the probe is gone


def test_a_file_is_not_an_output_folder(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(OutputNotWritableError, match=r"out is a file, not a folder"):
        check_output_store(open_store(tmp_path / "out"))


def test_a_folder_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "file").write_text("x")  # fails for root too, unlike a read-only folder
    with pytest.raises(OutputNotWritableError, match=r"QC folder .*file/qc cannot be written"):
        check_local_folder(tmp_path / "file" / "qc", "QC folder")


def test_a_missing_bucket_is_named(gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    with pytest.raises(OutputNotWritableError, match="bucket 'no-such-bucket-here' does not exist"):
        check_output_store(open_store("gs://no-such-bucket-here/out"))


def test_an_unreachable_dicomweb_server_is_named():
    with pytest.raises(OutputNotWritableError, match=r"output store http://\*\*\*@127\.0\.0\.1:9/dicom-web"):
        check_output_store(open_store("http://u:pw@127.0.0.1:9/dicom-web", timeout=2))


def test_temporary_files_of_killed_runs_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from dicom_io.stores.preflight import remove_dead_temp_files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    series = tmp_path / "store" / "1.2.3" / "1.2.3.4"
    series.mkdir(parents=True)
    killed = series / f".1.2.3.4.5.dcm.{dead_pid}.{'a' * 32}.tmp"
    live = series / f".1.2.3.4.6.dcm.{os.getpid()}.{'b' * 32}.tmp"
    table = tmp_path / f".manifest.parquet.{dead_pid}.partial"
    for path in (killed, live, table):
        path.write_bytes(b"half")
    check_output_store(open_store(tmp_path / "store"))
    assert not killed.exists() and live.exists()
    assert remove_dead_temp_files(tmp_path) == 1 and not table.exists() and live.exists()


def test_gcs_without_credentials_is_named_before_any_work(tmp_path, monkeypatch):
    from bench.network_guard import no_network

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    with no_network() as attempts, pytest.raises(OutputNotWritableError, match="no Google credentials"):
        check_output_store(open_store("gs://bonehub-test-bucket/out"))
    assert attempts == []
