"""Source specs: the one-line names the command line and the Beam job use to build adapters."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from models.harmonize import to_schema
from models.precomputed import PrecomputedNotFoundError
from models.sources import SourceSpecError, build_source, parse_source_spec


def test_spec_parts():
    spec = parse_source_spec("nnunet:/models/D501/nnUNetTrainer__nnUNetPlans__3d_fullres?mapping=/m.csv&folds=0,1")
    assert (spec.kind, spec.target) == ("nnunet", "/models/D501/nnUNetTrainer__nnUNetPlans__3d_fullres")
    assert spec.params == {"mapping": "/m.csv", "folds": "0,1"}


@pytest.mark.parametrize("text, message", [
    ("segformer:big", "unknown kind 'segformer'"),
    ("baseline?speed=fast", "unknown parameter(s) speed"),
    ("nnunet:/models/x", "parameter 'mapping' is required"),
    ("precomputed:/results?label_set=totalsegmentator_total", "parameter 'name' is required"),
    ("precomputed:/no/such/table.csv?label_set=totalsegmentator_total&name=a&version=1", "precomputed table /no/such/table.csv"),
    ("plugin:no_such_module:Model", "cannot import no_such_module:Model"),
    ("plugin:tests.support.crashing_source", "must be 'package.module:ClassName'"),
    ("store-seg:http://127.0.0.1:1/dicom-web?name=a&version=1&include_own=maybe", "include_own must be true or false"),
])
def test_bad_specs_name_what_is_wrong(text, message):
    with pytest.raises(SourceSpecError, match=None) as error:
        build_source(text)
    assert message in str(error.value) and text in str(error.value)


def test_precomputed_table_finds_the_series_file_and_names_a_missing_row(sample_dir, sample_ct, sample_schema_maps, tmp_path):
    spec = (f"precomputed:{sample_dir / 'totalsegmentator_total.csv'}?label_set=totalsegmentator_total"
            "&name=TotalSegmentator total&version=2")
    model = pickle.loads(pickle.dumps(build_source(spec)))  # specs become adapters on Beam workers
    model.load()
    np.testing.assert_array_equal(to_schema(model.predict(sample_ct), sample_ct),
                                  sample_schema_maps["seg_totalsegmentator_v2_full.nii.gz"])
    table = tmp_path / "other.csv"
    table.write_text("series_uid,path\n1.2.3,x.nii.gz\n")
    other = build_source(f"precomputed:{table}?label_set=totalsegmentator_total&name=a&version=1")
    with pytest.raises(PrecomputedNotFoundError, match=sample_ct.series_instance_uid):
        other.predict(sample_ct)
    table.write_text("series_uid,path\n1.2.3,x.nii.gz\n1.2.4,y.nii.gz\n1.2.3,z.nii.gz\n")
    with pytest.raises(SourceSpecError, match="series listed more than once: 1.2.3"):
        build_source(f"precomputed:{table}?label_set=totalsegmentator_total&name=a&version=1")


def test_plugin_parameters_become_keyword_arguments(tmp_path):
    model = build_source(f"plugin:tests.support.crashing_source:CrashingSource?calls={tmp_path / 'c.txt'}&name=Mine")
    assert (model.name, model.version, str(model.calls)) == ("Mine", "1", str(tmp_path / "c.txt"))


def test_spec_kinds_build_their_adapters_without_loading_weights(tmp_path):
    assert build_source("baseline").name == "BoneHub bone threshold baseline"
    idc = build_source("idc-seg:totalsegmentator_ct_segmentations")
    assert idc.name == "totalsegmentator_ct_segmentations" and idc.version.startswith("IDC index ")
