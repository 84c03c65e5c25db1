"""Stage 3 against a real DICOMweb server (Orthanc): the results live there, reviewers' Slicer reads from there.

The sample job stores its SEGs and QC SR in Orthanc; the worklist is read from
the SRs there, the ROI CT series and SEG are sent there (what Slicer's DICOMweb
import retrieves), and the corrected SEG and revised SR land there beside the
untouched originals.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import SimpleITK as sitk

from dicom_io.ct_series import read_ct_series
from dicom_io.seg_reader import read_seg
from dicom_io.sr_reader import read_qc_sr
from dicom_io.stores import open_store
from pipeline.cli import main
from pipeline.sample_job import SAMPLE, sample_arguments


def test_review_loop_through_dicomweb(empty_orthanc, tmp_path, capsys):
    url = empty_orthanc.dicomweb_url
    argv = sample_arguments(tmp_path, SAMPLE)
    argv[argv.index("--out") + 1] = url
    assert main([*argv, "--review-below", "0.95"]) == 0
    store = open_store(url)
    originals = {(r.series_uid, r.sop_uid) for r in store.list_instances()}
    place = ["--out", url, "--manifest", str(tmp_path / "manifest.parquet"), "--qc-dir", str(tmp_path / "qc"),
             "--cache-dir", str(tmp_path / "cache")]

    export_dir = tmp_path / "export"
    assert main(["review", "worklist", *place, "--to", str(export_dir), "--from-store"]) == 0
    items = json.loads((export_dir / "worklist.json").read_text())["items"]
    bone = next(i for i in items if i["bone"].startswith("vertebra_"))
    assert main(["review", "export", *place, "--to", str(export_dir), "--item", bone["item_id"], "--send-to", url]) == 0
    folder = export_dir / bone["series_uid"] / bone["bone"]
    record = json.loads((folder / "item.json").read_text())
    assert record["store"] == url
    # the ROI CT series and the ROI SEG are in the server, as the item names them
    roi_ct = store.list_instances(record["roi_ct"]["series_uid"])
    assert len(roi_ct) == record["roi"]["shape"][0] and {r.modality for r in roi_ct} == {"CT"}
    roi_seg = store.get(record["roi_seg"]["study_uid"], record["roi_seg"]["series_uid"], record["roi_seg"]["sop_uid"])
    local_roi_ct = read_ct_series(folder / "dicom" / "ct")
    roi_mask = read_seg(roi_seg, local_roi_ct).volume.array > 0
    assert roi_mask.sum() == sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "mask_roi.nrrd"))).sum() > 0

    image = sitk.ReadImage(str(folder / "mask_roi.nrrd"))
    array = sitk.GetArrayFromImage(image)
    array[tuple(np.argwhere(array)[0])] = 0
    edited = sitk.GetImageFromArray(array)
    edited.CopyInformation(image)
    sitk.WriteImage(edited, str(folder / "corrected.nrrd"))
    assert main(["review", "import", *place, str(folder), "--reviewer", "Doe^Jane"]) == 0
    row = pd.read_parquet(tmp_path / "qc" / "corrections.parquet").iloc[-1]
    assert row.removed == 1 and row.added == 0
    now = {(r.series_uid, r.sop_uid) for r in store.list_instances()}
    assert originals <= now and {(row.seg_series_uid, row.seg_sop_uid), (row.sr_series_uid, row.sr_sop_uid)} <= now
    revised = {g["bone"]: g["status"] for g in read_qc_sr(store.get(row.study_uid, row.sr_series_uid, row.sr_sop_uid))}
    assert revised[bone["bone"]] == "corrected"
    # the worklist from the store now reads the revised SR only, without the corrected bone
    assert main(["review", "worklist", *place, "--to", str(tmp_path / "after"), "--from-store"]) == 0
    after = json.loads((tmp_path / "after" / "worklist.json").read_text())["items"]
    assert [i["item_id"] for i in after] == [i["item_id"] for i in items if i["item_id"] != bone["item_id"]]
