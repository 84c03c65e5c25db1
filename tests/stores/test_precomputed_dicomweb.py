"""SEGs in a store (a real Orthanc over DICOMweb; also a folder and the GCS emulator) as a precomputed source.

"Third-party" SEGs are SEGs written by our writer with another Manufacturer, which is
all that tells the source a SEG is not one of this project's own outputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from dicom_io.provenance import SegmentationSource
from dicom_io.seg_writer import write_seg
from dicom_io.stores import open_store
from models.harmonize import to_schema
from models.precomputed import PrecomputedAmbiguousError, PrecomputedNotFoundError, PrecomputedSegmentation

from .conftest import FULL

VENDOR = "Example Vendor"


def _third_party(label_map: np.ndarray, ct, name: str):
    seg = write_seg(label_map, ct, SegmentationSource(name, "1"))
    seg.Manufacturer = VENDOR
    return seg


def test_finds_a_third_party_seg_and_skips_our_own(store, sample_ct, sample_schema_maps, sample_seg):
    full = sample_schema_maps[FULL]
    store.put(_third_party(full, sample_ct, "Vendor model"))
    store.put(sample_seg)  # our own earlier output for the same CT

    source = PrecomputedSegmentation.from_store(store.uri, "vendor", "1")
    prediction = source.predict(sample_ct)
    assert prediction.label_set is None
    np.testing.assert_array_equal(to_schema(prediction, sample_ct), full)

    # Reading an earlier run of ours on purpose needs a filter naming it.
    with pytest.raises(ValueError, match="include_own"):
        PrecomputedSegmentation.from_store(store.uri, "earlier", "1", include_own=True)
    earlier = PrecomputedSegmentation.from_store(store.uri, "earlier", "1", include_own=True,
                                                 algorithm_name="TotalSegmentator total")
    np.testing.assert_array_equal(to_schema(earlier.predict(sample_ct), sample_ct), full)


def test_several_series_are_ambiguous_until_filtered(empty_orthanc, sample_ct, sample_schema_maps):
    full = sample_schema_maps[FULL]
    store = open_store(empty_orthanc.dicomweb_url, timeout=30)
    first = _third_party(full, sample_ct, "Model A")
    second_map = np.where(full == full.max(), 0, full).astype(full.dtype)  # drop one bone, to tell them apart
    second = _third_party(second_map, sample_ct, "Model B")
    store.put(first)
    store.put(second)

    source = PrecomputedSegmentation.from_store(store.uri, "vendor", "1")
    with pytest.raises(PrecomputedAmbiguousError) as raised:
        source.predict(sample_ct)
    message = str(raised.value)
    assert first.SeriesInstanceUID in message and second.SeriesInstanceUID in message
    assert sample_ct.series_instance_uid in message

    by_description = PrecomputedSegmentation.from_store(store.uri, "B", "1", series_description=second.SeriesDescription)
    np.testing.assert_array_equal(to_schema(by_description.predict(sample_ct), sample_ct), second_map)
    by_algorithm = PrecomputedSegmentation.from_store(store.uri, "A", "1", algorithm_name="Model A")
    np.testing.assert_array_equal(to_schema(by_algorithm.predict(sample_ct), sample_ct), full)


def test_series_of_two_instances_found_by_frame_references(empty_orthanc, sample_ct, sample_schema_maps):
    full = sample_schema_maps[FULL]
    ids = np.unique(full[full > 0])
    halves = [np.where(np.isin(full, part), full, 0).astype(full.dtype) for part in np.array_split(ids, 2)]
    instances = [_third_party(half, sample_ct, f"Part {i}") for i, half in enumerate(halves)]
    for seg in instances:  # one series, no ReferencedSeriesSequence: only the frames' source images say which CT
        seg.SeriesInstanceUID = instances[0].SeriesInstanceUID
        seg.SeriesDescription = instances[0].SeriesDescription
        del seg.ReferencedSeriesSequence
    store = open_store(empty_orthanc.dicomweb_url, timeout=30)
    for seg in instances:
        store.put(seg)

    prediction = PrecomputedSegmentation.from_store(store.uri, "parts", "1").predict(sample_ct)
    np.testing.assert_array_equal(to_schema(prediction, sample_ct), full)


def test_no_usable_seg_is_not_found(empty_orthanc, sample_ct, sample_seg):
    store = open_store(empty_orthanc.dicomweb_url, timeout=30)
    source = PrecomputedSegmentation.from_store(store.uri, "vendor", "1")
    with pytest.raises(PrecomputedNotFoundError) as empty:
        source.predict(sample_ct)
    for expected in (sample_ct.series_instance_uid, sample_ct.study_instance_uid, store.uri, "0 of 0 SEG series"):
        assert expected in str(empty.value)

    store.put(sample_seg)  # only our own output: skipped, and the message says why
    with pytest.raises(PrecomputedNotFoundError, match="0 of 1 SEG series.*not written by BoneHub Segmentation"):
        source.predict(sample_ct)
