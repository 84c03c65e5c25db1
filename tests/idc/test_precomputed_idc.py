"""IDC analysis-result SEGs as a precomputed source.

Location is real: candidates come from the bundled IDC index, downloads go through
s5cmd from a real S3 server on loopback (moto) holding objects under the index's own
bucket keys. Content is synthetic: CT series written with the real study and series
UIDs, and SEGs written by our writer that reference them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

from dicom_io.ct_series import CTSeries, read_ct_series
from dicom_io.ct_writer import write_ct_series
from dicom_io.provenance import SegmentationSource, derived_uid
from dicom_io.seg_writer import write_seg
from labels.schema import default_schema
from models.harmonize import to_schema
from models.precomputed import PrecomputedAmbiguousError, PrecomputedNotFoundError, PrecomputedSegmentation

from .conftest import BUCKET, MotoS3

RESULT = "totalsegmentator_ct_segmentations"


@dataclass(frozen=True)
class IndexStudy:
    """An NLST study as the bundled index (idc-index-data 25.0.5) lists it: two CT series
    (from tests/data/idc/nlst_review_series.csv) and the two SEG series of RESULT with their
    bucket folders. Which CT each real SEG segments is not in this index; the tests choose."""

    study_uid: str
    ct_uids: tuple[str, str]
    segs: tuple[tuple[str, str], tuple[str, str]]  # (SEG series UID, bucket folder)


STUDY_A = IndexStudy(
    "1.2.840.113654.2.55.174144834924218414213677353968537663991",
    ("1.2.840.113654.2.55.195946682403058845904768502826466194287",
     "1.2.840.113654.2.55.221581533879834196356530174246594024639"),
    (("1.2.276.0.7230010.3.1.3.313263360.11967.1706318547.125050", "49362c79-f0ce-4183-9414-57422fe67f0d"),
     ("1.2.276.0.7230010.3.1.3.313263360.42821.1706311439.17300", "3ec10989-f2d8-4b7b-8996-aeef5b2d7c69")),
)
STUDY_B = IndexStudy(
    "1.2.840.113654.2.55.327670372562599702205432127692146974562",
    ("1.2.840.113654.2.55.71263399928421039572326605504649736531",
     "1.2.840.113654.2.55.79318439085250760439172236218713769408"),
    (("1.2.276.0.7230010.3.1.3.313263360.27736.1706328890.204711", "c3fe085f-00d0-4592-b216-3a2c36a8ca4c"),
     ("1.2.276.0.7230010.3.1.3.313263360.27863.1706311464.588484", "e0531401-38e4-449a-a494-ef02ab95ff6a")),
)
# An NLST study with three CT series and no SEG at all in the index.
NO_SEG_STUDY = "1.2.840.113654.2.55.267894665111579128593734685770689628055"
NO_SEG_CT = "1.2.840.113654.2.55.280923810098023209260837542441023627362"


def _ct(folder: Path, study_uid: str, series_uid: str) -> CTSeries:
    """A 4-slice synthetic CT series carrying the given UIDs."""
    frame_uid = derived_uid(study_uid, "frame of reference")
    array = np.random.default_rng(int(series_uid[-6:])).integers(-1000, 1500, size=(4, 10, 12)).astype(np.float32)
    volume = hd.Volume.from_components(array, spacing=[2.5, 0.8, 0.8], direction=np.eye(3), position=[0.0, 0.0, 0.0],
                                       coordinate_system="PATIENT", frame_of_reference_uid=frame_uid)
    write_ct_series(volume, folder / series_uid, study_instance_uid=study_uid, series_instance_uid=series_uid,
                    frame_of_reference_uid=frame_uid, patient_name="Synthetic^Test")
    return read_ct_series(folder / series_uid)


def _label_map(ct: CTSeries, names: tuple[str, ...]) -> np.ndarray:
    """One block per named bone, side by side."""
    schema = default_schema()
    labels = np.zeros(ct.volume.spatial_shape, np.uint16)
    for i, name in enumerate(names):
        labels[1:3, 2 + 3 * i: 4 + 3 * i, 3:9] = schema[name].id
    return labels


def _seed_seg(moto_s3: MotoS3, ct: CTSeries, labels: np.ndarray, seg: tuple[str, str], folder: Path) -> None:
    """Upload a SEG of ``labels`` on ``ct`` under the index's key of SEG series ``seg``."""
    seg_uid, bucket_folder = seg
    dataset = write_seg(labels, ct, SegmentationSource("TotalSegmentator", "1.5.6"))
    dataset.SeriesInstanceUID = seg_uid
    dataset.SOPInstanceUID = derived_uid(seg_uid, "instance")
    path = folder / f"{seg_uid}.dcm"
    dataset.save_as(path)
    moto_s3.seed_series([path], bucket_folder)


def _delete_folder(moto_s3: MotoS3, bucket_folder: str) -> None:
    listed = moto_s3.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{bucket_folder}/")
    for item in listed.get("Contents", []):
        moto_s3.client.delete_object(Bucket=BUCKET, Key=item["Key"])


def test_finds_the_seg_of_each_ct_and_caches_it(moto_s3: MotoS3, tmp_path: Path) -> None:
    cts = [_ct(tmp_path, STUDY_A.study_uid, uid) for uid in STUDY_A.ct_uids]
    maps = [_label_map(cts[0], ("vertebra_T1", "vertebra_T2")), _label_map(cts[1], ("rib_left_1", "rib_right_1"))]
    for ct, labels, seg in zip(cts, maps, STUDY_A.segs):
        _seed_seg(moto_s3, ct, labels, seg, tmp_path)
    cache = tmp_path / "cache"
    source = PrecomputedSegmentation.from_idc(RESULT, cache, endpoint_url=moto_s3.endpoint_url)
    assert (source.name, source.label_set_name) == (RESULT, None)

    for ct, labels in zip(cts, maps):
        prediction = source.predict(ct)
        assert prediction.label_set is None
        np.testing.assert_array_equal(to_schema(prediction, ct), labels)
    assert sorted(p.name for p in cache.iterdir()) == sorted(uid for uid, _ in STUDY_A.segs)

    # Gone from the bucket: a rerun still works, so it downloads nothing.
    for _, bucket_folder in STUDY_A.segs:
        _delete_folder(moto_s3, bucket_folder)
    np.testing.assert_array_equal(to_schema(source.predict(cts[0]), cts[0]), maps[0])


def test_unreferenced_and_doubly_referenced_series(moto_s3: MotoS3, tmp_path: Path) -> None:
    cts = [_ct(tmp_path, STUDY_B.study_uid, uid) for uid in STUDY_B.ct_uids]
    labels = _label_map(cts[1], ("vertebra_L1",))
    for seg in STUDY_B.segs:  # both SEGs segment the second CT
        _seed_seg(moto_s3, cts[1], labels, seg, tmp_path)
    source = PrecomputedSegmentation.from_idc(RESULT, tmp_path / "cache", endpoint_url=moto_s3.endpoint_url)

    with pytest.raises(PrecomputedNotFoundError) as none:
        source.predict(cts[0])
    assert STUDY_B.ct_uids[0] in str(none.value) and RESULT in str(none.value)
    assert "2 SEG series" in str(none.value)

    with pytest.raises(PrecomputedAmbiguousError) as several:
        source.predict(cts[1])
    assert all(uid in str(several.value) for uid, _ in STUDY_B.segs)


def test_study_without_candidates_downloads_nothing(tmp_path: Path) -> None:
    ct = _ct(tmp_path, NO_SEG_STUDY, NO_SEG_CT)
    cache = tmp_path / "cache"
    source = PrecomputedSegmentation.from_idc(RESULT, cache, endpoint_url="http://127.0.0.1:9")  # never contacted
    with pytest.raises(PrecomputedNotFoundError) as raised:
        source.predict(ct)
    message = str(raised.value)
    assert NO_SEG_CT in message and NO_SEG_STUDY in message and RESULT in message
    assert not cache.exists()


def test_unknown_analysis_result_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"'totalsegmentator'.*{RESULT}"):
        PrecomputedSegmentation.from_idc("totalsegmentator", tmp_path)
