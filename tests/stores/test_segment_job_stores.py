"""``bonehub run`` with DICOMweb (a real Orthanc) and GCS (the emulator) as input and output stores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom

from dicom_io.seg_reader import read_seg
from dicom_io.sr_reader import read_qc_sr
from dicom_io.sr_writer import qc_sr_uids
from dicom_io.stores import gcs_client, open_store
from dicom_io.vocabulary import decode_vocabulary
from labels.label_sets import load_label_set
from pipeline import staging
from pipeline.cli import main
from pipeline.staging import Staging
from results.blobs import read_bytes
from results.manifest import read_manifest
from results.qc_shards import read_qc_table

PRECOMPUTED = "precomputed:{table}?label_set=totalsegmentator_total&name=TotalSegmentator total&version=2"


def test_dicomweb_in_and_out(empty_orthanc, sample_dir, sample_ct, tmp_path):
    """The CT is searched (QIDO) and retrieved (WADO) from Orthanc; every SEG goes back by STOW and reads back."""
    url = empty_orthanc.dicomweb_url
    orthanc = open_store(url, timeout=30)
    for path in sorted((sample_dir / "ct").iterdir()):
        orthanc.put(pydicom.dcmread(path))
    args = ["run", "--dicomweb", url, "--source", PRECOMPUTED.format(table=sample_dir / "totalsegmentator_total.csv"),
            "--source", "baseline", "--augment", "noise(20)", "--out", url,
            "--manifest", str(tmp_path / "manifest.parquet"), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert sorted(manifest.status) == ["written"] * 3
    assert all(location.startswith(f"{url}/studies/{sample_ct.study_instance_uid}/series/") for location in manifest.location)

    qc_series = read_qc_table(str(tmp_path / "qc"), "qc_series").iloc[0]  # QC read the SEGs back from Orthanc
    assert qc_series.status == "done" and not qc_series.skipped
    segs = orthanc.list_instances(modality="SEG", study_uid=sample_ct.study_instance_uid)
    assert sorted(ref.sop_uid for ref in segs) == sorted([*manifest.seg_sop_instance_uid, qc_series.consensus_sop_uid])
    vocabularies = {row.seg_sop_instance_uid: decode_vocabulary(row.vocabulary) for row in manifest.itertuples()}
    assert sorted(map(sorted, vocabularies.values())) == sorted(
        [["skeleton"], ["skeleton"], sorted(load_label_set("totalsegmentator_total").emitted())])
    for ref in segs:
        decoded = read_seg(orthanc.get(*ref[:3]), sample_ct)
        assert decoded.volume.array.shape == sample_ct.volume.array.shape and decoded.volume.array.any()
        # what each source can label survives STOW and WADO (Algorithm Parameters); the consensus records none
        assert decoded.vocabulary == vocabularies.get(ref.sop_uid), ref.sop_uid
    (sr,) = orthanc.list_instances(modality="SR", study_uid=sample_ct.study_instance_uid)
    groups = read_qc_sr(orthanc.get(*sr[:3]))
    table = read_qc_table(str(tmp_path / "qc"), "qc_table")
    assert sr.sop_uid == qc_series.sr_sop_uid and [g["bone"] for g in groups] == list(table.bone)

    assert main(args) == 0  # the SEGs in Orthanc are CT-free: the CT search still finds one series, nothing is redone
    assert sorted(pd.read_parquet(tmp_path / "manifest.parquet").status) == ["exists"] * 3
    assert len(orthanc.list_instances(modality="SEG")) == 3 + 1  # the consensus SEG was replaced, not duplicated
    assert len(orthanc.list_instances(modality="SR")) == 1


def test_gcs_output_manifest_and_staging(gcs_bucket, sample_dir, sample_ct, tmp_path):
    """Everything a Dataflow run keeps in buckets: SEGs, manifest, QC outputs, and the staging between its steps."""
    out = f"gs://{gcs_bucket}/bonehub/run1"
    assert main(["run", "--dicom-folder", str(sample_dir / "ct"), "--source", "baseline", "--out", out,
                 "--staging", f"gs://{gcs_bucket}/checkpoints/staging", "--cache-dir", str(tmp_path / "cache")]) == 0
    bucket = gcs_client().bucket(gcs_bucket)
    assert list(bucket.list_blobs(prefix="checkpoints/")) == []  # the SEG is stored: nothing left staged
    manifest = read_manifest(f"{out}/manifest.parquet")
    assert list(manifest.status) == ["written"]
    (row,) = manifest.itertuples()
    assert row.location == f"{out}/{sample_ct.study_instance_uid}/{row.seg_series_instance_uid}/{row.seg_sop_instance_uid}.dcm"
    store = open_store(out)
    seg = store.get(sample_ct.study_instance_uid, row.seg_series_instance_uid, row.seg_sop_instance_uid)
    assert read_seg(seg, sample_ct).volume.array.any()
    # QC ran on the SEG in the bucket and wrote its tables and report there; one source: nothing to compare
    table = read_qc_table(f"{out}/qc", "qc_table")
    assert set(table.status) == {"insufficient_sources"} and list(table.bone) == ["skeleton"]
    qc_series = read_qc_table(f"{out}/qc", "qc_series").iloc[0]
    assert read_qc_sr(store.get(sample_ct.study_instance_uid, *qc_sr_uids(sample_ct.series_instance_uid)))[0]["bone"] == "skeleton"
    assert qc_series.sr_sop_uid == qc_sr_uids(sample_ct.series_instance_uid)[1]
    assert b"<img" in read_bytes(f"{out}/qc/qc_report.html")


def test_staged_objects_in_a_bucket(gcs_bucket, sample_ct):
    area = Staging(f"gs://{gcs_bucket}/checkpoints/staging/")
    fingerprint = staging.ct_fingerprint(sample_ct)
    ct_uri = area.ct_uri(sample_ct.series_instance_uid, fingerprint)
    assert ct_uri == f"gs://{gcs_bucket}/checkpoints/staging/{sample_ct.series_instance_uid}/{fingerprint}/ct.npz"
    assert area.stale(sample_ct.series_instance_uid, fingerprint) == []
    assert not staging.is_staged(ct_uri)
    staging.put_ct(ct_uri, sample_ct)
    assert area.stale(sample_ct.series_instance_uid, "0" * 16) == [ct_uri]  # other pixels would not reuse it
    back = staging.get_ct(ct_uri)
    assert back.volume.array.dtype == sample_ct.volume.array.dtype
    assert np.array_equal(back.volume.array, sample_ct.volume.array) and list(back.datasets) == list(sample_ct.datasets)
    staging.discard(ct_uri)
    staging.discard(ct_uri)  # gone already: no error
    assert not staging.is_staged(ct_uri)
