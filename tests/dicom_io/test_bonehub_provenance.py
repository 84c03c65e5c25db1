"""BoneHub statuses in a SEG's Algorithm Parameters: written beside augmentation/vocabulary, read back, bad codes named."""

from __future__ import annotations

import numpy as np
import pytest

from dicom_io.bonehub_provenance import encode_statuses, stamp_statuses, statuses_of
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_writer import write_seg
from dicom_io.vocabulary import vocabulary_of
from labels.bonehub_status import BoneHubStatus
from labels.errors import BoneHubInputError
from labels.schema import default_schema
from tests.support.bright_object_ct import write_bright_object_ct

SCHEMA = default_schema()


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    ct = write_bright_object_ct(tmp_path_factory.mktemp("ct"), shape=(10, 12, 14)).ct
    label_map = np.zeros(ct.volume.spatial_shape, np.uint16)
    label_map[2:4, 3:6, 3:6] = SCHEMA["vertebra_L1"].id
    label_map[5:7, 3:6, 3:6] = SCHEMA["vertebra_L2"].id
    source = SegmentationSource("BoneHub-Dataset", "001:2.0", vocabulary=frozenset({"vertebra_L1", "vertebra_L2"}))
    return write_seg(label_map, ct, source)


def test_stamped_statuses_read_back_beside_the_other_parameters(seg):
    assert encode_statuses([33, 10, 33]) == "10+33"
    assert stamp_statuses(seg, {"vertebra_L1": (33,), "vertebra_L2": (10, 33), "femur_left": (30,)}) == 2
    parameters = seg.SegmentSequence[1].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    assert parameters.startswith("augmentation=none,vocabulary=") and parameters.endswith(",bonehub_status=33")
    assert statuses_of(seg) == {1: (BoneHubStatus.parse(33),), 2: (BoneHubStatus.parse(10), BoneHubStatus.parse(33))}
    assert vocabulary_of(seg) == {"vertebra_L1", "vertebra_L2"}
    with pytest.raises(ValueError, match="already records bonehub_status"):
        stamp_statuses(seg, {"vertebra_L1": (33,)})


def test_a_bad_code_in_a_seg_is_named(seg):
    algorithm = seg.SegmentSequence[2].SegmentationAlgorithmIdentificationSequence[0]
    kept = algorithm.AlgorithmParameters
    algorithm.AlgorithmParameters = "augmentation=none,bonehub_status=10+58"
    try:
        with pytest.raises(BoneHubInputError, match=r"segment 2: bonehub_status: BoneHub status '58'"):
            statuses_of(seg)
    finally:
        algorithm.AlgorithmParameters = kept
