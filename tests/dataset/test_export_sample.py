"""``bonehub dataset export`` on the sample after the four decisions (one correction, one accept as is, one reject,
one missing): every bone in exactly its state and label, in DICOM, BoneHub and nnU-Net form.

The expected state of every structure is written out from the QC table and the four decisions (as
tests/review/test_verdicts.py does), so a bone landing in another state, or a label kept that the
selection does not trust, fails. DICOM: dciodvfy finds no error in the BINARY SEG and the SR, dcmqi reads
the same voxels, the SR says each bone's state. BoneHub: our own reader reads back exactly the labels,
the status codes and the CT.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from dicom_io.bonehub_layout import find_subjects
from dicom_io.bonehub_provenance import statuses_of
from dicom_io.bonehub_seg_nrrd import read_bonehub_mask
from dicom_io.ct_series import read_ct_series
from dicom_io.geometry import match_grid
from dicom_io.label_images import read_label_image
from dicom_io.seg_reader import read_seg
from dicom_io.sr_reader import read_qc_sr
from dicom_io.stores import open_store
from labels.bonehub_labels import bonehub_label_set, bonehub_name, bonehub_value
from labels.schema import default_schema
from pipeline.cli import main
from tests.review.test_verdicts import ACCEPTED, CORRECTED, MISSING, QC_STATE, REJECTED, decided  # noqa: F401
from tests.support.dciodvfy import errors_reported
from results.qc_shards import read_qc_table

DCMQI_BIN = Path(__import__("dcmqi").__file__).parent / "bin"
DEFAULT = {"automatic_accepted", "human_accepted", "human_corrected"}
# the QC SR's status of a structure -> its provenance state (review.provenance)
SR_STATE = {"accept": "automatic_accepted", "review": "automatic_failed", "accepted": "human_accepted",
            "corrected": "human_corrected", "rejected": "human_rejected", "missing": "missing", "absent": "absent"}


def expected_states(run) -> dict[str, tuple[str, int]]:
    table = read_qc_table(str(run.root / "qc"), "qc_table")
    expected = {row.bone: QC_STATE[row.status] for row in table.itertuples()}
    return expected | {CORRECTED: ("human_corrected", 23), ACCEPTED: ("human_accepted", 13),
                       REJECTED: ("human_rejected", 14), MISSING: ("missing", 4)}


def head_labels(run):
    """(CT, the series' head label map: the corrected SEG) read with our SEG reader."""
    log = pd.read_parquet(run.root / "qc" / "corrections.parquet")
    ct = read_ct_series(run.ct_folder)
    seg = open_store(run.root / "seg").get(str(log.study_uid[0]), str(log.seg_series_uid[0]), str(log.seg_sop_uid[0]))
    return ct, read_seg(seg, ct).volume.array


def trusted_only(labels: np.ndarray, names) -> np.ndarray:
    ids = [default_schema()[name].id for name in names]
    return np.where(np.isin(labels, ids), labels, 0)


def export(run, to: Path, *args: str) -> int:
    return main(["dataset", "export", *run.place_args, "--to", str(to), *args])


def test_dicom_export_has_every_bone_in_its_state_and_only_trusted_labels(decided, tmp_path):
    run, _ = decided
    to = tmp_path / "dicom"
    assert export(run, to, "--format", "dicom") == 0
    states = expected_states(run)
    trusted = {bone for bone, (state, _) in states.items() if state in DEFAULT and bone != MISSING}
    assert trusted == {CORRECTED, ACCEPTED, "rib_left_7"}  # rib_left_7: QC's only accept on the sample
    (seg_path,) = to.rglob("seg.dcm")
    (sr_path,) = to.rglob("qc_sr.dcm")

    ct, head = head_labels(run)
    final = read_seg(seg_path, ct, strict=True)
    np.testing.assert_array_equal(final.volume.array, trusted_only(head, trusted))
    assert {s.schema_name for s in final.segments} == trusted

    seg = pydicom.dcmread(seg_path)
    assert seg.SegmentationType == "BINARY" and not errors_reported(seg_path) and not errors_reported(sr_path)
    by_name = {item.TrackingID: item for item in seg.SegmentSequence}
    assert by_name[CORRECTED].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert by_name[ACCEPTED].SegmentAlgorithmType == by_name["rib_left_7"].SegmentAlgorithmType == "AUTOMATIC"
    assert {name: str(item.SegmentDescription) for name, item in by_name.items()} == {
        CORRECTED: "human_corrected by Doe^Jane", ACCEPTED: "human_accepted by Doe^Jane", "rib_left_7": "automatic_accepted"}
    stamped = {str(by_number.TrackingID): codes for number, codes in statuses_of(seg).items()
               for by_number in seg.SegmentSequence if int(by_number.SegmentNumber) == number}
    assert {name: tuple(s.code for s in codes) for name, codes in stamped.items()} == {
        ACCEPTED: (13,), CORRECTED: (23,), "rib_left_7": (11,)}  # each state's BoneHub status in its segment

    # references: the CT, and every SEG the labels were made from (sources, consensus, corrected)
    manifest = pd.read_parquet(run.root / "manifest.parquet")
    qc_series = read_qc_table(str(run.root / "qc"), "qc_series")
    log = pd.read_parquet(run.root / "qc" / "corrections.parquet")
    made_from = set(manifest.seg_sop_instance_uid) | {qc_series.consensus_sop_uid[0], log.seg_sop_uid[0]}
    assert {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedInstanceSequence} == made_from
    assert [str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence] == [ct.series_instance_uid]

    # the SR: every structure's state; the exported ones reference their segment of the final SEG, no other does
    groups = read_qc_sr(sr_path)
    assert {g["bone"]: SR_STATE[g["status"]] for g in groups} == {bone: state for bone, (state, _) in states.items()}
    assert {g["bone"] for g in groups if g["consensus_segment"]} == trusted
    assert {g["referenced_seg_sop_uid"] for g in groups if g["consensus_segment"]} == {str(seg.SOPInstanceUID)}
    sr = pydicom.dcmread(sr_path)
    assert str(sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
               .ReferencedSOPInstanceUID) == log.sr_sop_uid.iloc[-1]

    # dcmqi (the reader 3D Slicer uses) reads the same voxels
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run([str(DCMQI_BIN / "segimage2itkimage"), "--inputDICOM", str(seg_path), "--outputDirectory", str(out),
                    "--mergeSegments", "-t", "nrrd"], check=True, capture_output=True, text=True)
    meta = json.loads((out / "meta.json").read_text())
    (image,) = out.glob("*.nrrd")
    lut = np.zeros(256, np.uint16)
    for segment in meta["segmentAttributes"][0]:
        lut[segment["labelID"]] = default_schema()[segment["TrackingIdentifier"]].id
    voxels = hd.Volume.from_simpleitk(sitk.ReadImage(str(image))).match_geometry(ct.geometry).array
    np.testing.assert_array_equal(lut[voxels], trusted_only(head, trusted))

    card = json.loads((to / "datacard.json").read_text())
    per_state = {s["state"]: (s["bones"], s["exported"]) for s in card["states"]}
    assert per_state["human_corrected"] == (1, 1) and per_state["human_rejected"] == (1, 0)
    assert per_state["missing"] == (1, 0) and per_state["automatic_failed"][1] == 0
    assert [s["structure"] for s in card["scores"]] == ["vertebra_T12", "vertebra_L1", "rib_left_7"]
    assert card["command"].startswith("bonehub dataset export --out ") and "--format dicom --seg-type binary" in card["command"]
    assert set(card["files"]) == {str(p.relative_to(to)) for p in (seg_path, sr_path)}
    assert "Bones per provenance state" in (to / "README.md").read_text()


def test_bonehub_export_reads_back_exactly(decided, tmp_path):
    run, _ = decided
    to = tmp_path / "bonehub"
    # the rejected rib and the missing vertebra too: the rib with its voxels and 14, the vertebra in the record only
    assert export(run, to, "--format", "bonehub", *[a for s in (*DEFAULT, "human_rejected", "missing")
                                                     for a in ("--state", s)]) == 0
    states = expected_states(run)
    trusted = {bone for bone, (state, _) in states.items() if state in DEFAULT | {"human_rejected"}}
    (subject,) = find_subjects(to)
    assert (subject.dataset_id, subject.subject_id, subject.image.name) == ("999", "999_000001", "999_000001.nii.gz")

    ct, head = head_labels(run)
    mask = read_bonehub_mask(subject.segmentations[0], bonehub_label_set("v2"))
    assert {s.name: s.status.code for s in mask.segments} == {
        bonehub_name(bonehub_value(bone)): states[bone][1] for bone in trusted}
    values = mask.value_volume()
    assert match_grid(values, ct.geometry) is not None
    expected = trusted_only(head, trusted).astype(np.int64)
    for bone in trusted:
        expected[expected == default_schema()[bone].id] = bonehub_value(bone)
    np.testing.assert_array_equal(match_grid(values, ct.geometry).array, expected)

    record = subject.subject_info
    assert record["segmentation"] == {bonehub_name(bonehub_value(bone)): states[bone][1]
                                      for bone in sorted(trusted | {MISSING}, key=lambda b: default_schema()[b].id)}
    assert record["segmentation"][bonehub_name(bonehub_value(MISSING))] == 4 and record["image"] is True
    assert subject.dataset_info["dataset_id"] == 999

    image = read_label_image(subject.image)  # the CT, HU exactly, on its grid
    on_ct = match_grid(image, ct.geometry)
    assert on_ct is not None and np.array_equal(on_ct.array, ct.volume.array)
    assert sitk.ReadImage(str(subject.image)).GetPixelID() == sitk.sitkInt16


def test_bad_requests_are_refused_in_one_line(decided, tmp_path, capsys):
    run, _ = decided
    assert export(run, tmp_path / "a", "--format", "dicom", "--min-score", "2") == 2
    assert "a QC score is between 0 and 1" in capsys.readouterr().err
    assert export(run, tmp_path / "b", "--format", "dicom", "--series-uid", "1.2.3") == 2
    assert "nothing to export" in capsys.readouterr().err
    assert export(run, tmp_path / "c", "--format", "dicom") == 0
    assert export(run, tmp_path / "c", "--format", "bonehub") == 2
    assert "holds a dicom export" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    assert export(run, tmp_path / "d", "--format", "bonehub") == 2
    assert "holds files but no datacard.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export(run, tmp_path / "e", "--format", "dicom", "--state", "accepted_by_qc")


def test_nnunet_export_of_the_sample_labels_trusted_bones_and_ignores_the_rest(decided, tmp_path):
    run, _ = decided
    to = tmp_path / "nnunet"
    assert export(run, to, "--format", "nnunet") == 0
    (folder,) = [p for p in to.iterdir() if p.is_dir() and p.name.startswith("Dataset")]
    dataset = json.loads((folder / "dataset.json").read_text())
    states = expected_states(run)
    trusted = sorted((bone for bone, (state, _) in states.items() if state in DEFAULT), key=lambda b: default_schema()[b].id)
    ignore = dataset["labels"]["ignore"]
    assert dataset["labels"] == {"background": 0, **{bone: i for i, bone in enumerate(trusted, 1)}, "ignore": len(trusted) + 1}

    ct, head = head_labels(run)
    (labels_file,) = (folder / "labelsTr").iterdir()
    labels = match_grid(read_label_image(labels_file), ct.geometry)
    assert labels is not None
    expected = np.zeros(head.shape, np.int64)
    expected[head > 0] = ignore  # present but not trusted (QC review, the rejected rib): nnU-Net learns nothing there
    for value, bone in enumerate(trusted, 1):
        expected[head == default_schema()[bone].id] = value
    np.testing.assert_array_equal(labels.array, expected)
    assert states[REJECTED][0] == "human_rejected" and (expected == ignore).any()
