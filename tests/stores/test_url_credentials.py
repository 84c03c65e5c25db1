"""Credentials in a store URL travel in request headers and never show in a URL, a message or a table."""

from __future__ import annotations

import pickle

import pytest

from dicom_io.stores import open_store
from dicom_io.stores.base import StoreUnavailableError
from dicom_io.stores.redact import redact_url, redact_urls, split_credentials

SECRET, TOKEN = "s3cr3t-pw", "tok-0123456789abcdef"


@pytest.mark.parametrize("url, shown", [
    (f"https://alice:{SECRET}@pacs.example.org/dicom-web", "https://***@pacs.example.org/dicom-web"),
    (f"https://pacs.example.org/dicom-web?access_token={TOKEN}&x=1", "https://pacs.example.org/dicom-web?access_token=***&x=1"),
    (f"https://h/p?X-Goog-Signature={TOKEN}&Expires=1", "https://h/p?X-Goog-Signature=***&Expires=1"),
    ("gs://bucket/prefix", "gs://bucket/prefix"),
    ("/a/local/path", "/a/local/path"),
    ("https://h/p?token_env=PACS_TOKEN", "https://h/p?token_env=PACS_TOKEN"),  # names a variable, holds no secret
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_urls_in_free_text():
    text = f"cannot reach https://bob:{SECRET}@h:8042/dicom-web?token={TOKEN} to store: timed out"
    assert redact_urls(text) == "cannot reach https://***@h:8042/dicom-web?token=*** to store: timed out"


def test_split_credentials():
    bare, basic, token = split_credentials(f"https://al%40ice:{SECRET}@h/p?access_token={TOKEN}&q=1")
    assert (bare, basic, token) == ("https://h/p?q=1", ("al@ice", SECRET), TOKEN)


def test_dicomweb_store_sends_credentials_as_headers(empty_orthanc, sample_seg):
    base = empty_orthanc.dicomweb_url.replace("://", f"://alice:{SECRET}@", 1)
    store = open_store(f"{base}?access_token={TOKEN}")
    assert SECRET not in store.url and TOKEN not in store.url  # the URL requests go to
    assert SECRET not in repr(store) and TOKEN not in repr(store) and SECRET not in store.shown
    store.put(sample_seg)  # a token in the query string used to end up inside every request path
    assert store.exists(sample_seg.StudyInstanceUID, sample_seg.SeriesInstanceUID, sample_seg.SOPInstanceUID)
    session = store._get_client()._session
    assert session.headers["Authorization"] == f"Bearer {TOKEN}" and session.auth == ("alice", SECRET)
    assert SECRET not in store.location(sample_seg.StudyInstanceUID, sample_seg.SeriesInstanceUID, sample_seg.SOPInstanceUID)
    reopened = pickle.loads(pickle.dumps(store))  # a worker's copy still authenticates
    assert reopened._basic_auth == ("alice", SECRET) and reopened._url_token == TOKEN


def test_unreachable_store_message_holds_no_secret():
    store = open_store(f"http://alice:{SECRET}@127.0.0.1:9/dicom-web?access_token={TOKEN}", timeout=2)
    with pytest.raises(StoreUnavailableError) as error:
        store.list_instances()
    assert SECRET not in str(error.value) and TOKEN not in str(error.value) and "127.0.0.1:9" in str(error.value)


def test_a_run_into_a_store_with_credentials_writes_and_logs_none(empty_orthanc, tmp_path, capsys):
    import logging

    import pandas as pd

    from pipeline.cli import main
    from tests.support.bright_object_ct import write_bright_object_ct

    write_bright_object_ct(tmp_path / "ct")
    out = empty_orthanc.dicomweb_url.replace("://", f"://alice:{SECRET}@", 1) + f"?access_token={TOKEN}"
    log_file = tmp_path / "run.log"
    handler = logging.FileHandler(log_file)
    logging.getLogger().addHandler(handler)
    try:
        rc = main(["-v", "segment", "--dicom-folder", str(tmp_path / "ct"), "--source", "baseline", "--out", out,
                   "--manifest", str(tmp_path / "manifest.parquet"), "--cache-dir", str(tmp_path / "cache")])
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert list(manifest.status) == ["written"]
    for text in (printed.out, printed.err, log_file.read_text(), manifest.to_csv()):
        assert SECRET not in text and TOKEN not in text
