"""``Predict`` shares one augmented CT per series and augmentation among its sources, with unchanged labels."""

from __future__ import annotations

import numpy as np
import pytest

from models import augment
from models.augment import parse_augmentation
from models.segment import segment_ct
from models.sources import build_source
from pipeline import staging
from pipeline.segment_predict import Predict
from pipeline.segment_steps import PredictedSeries, SegmentSettings, StagedSeries
from pipeline.stage1 import SourceInfo, plan_outputs
from results.series_ref import LOCAL, SeriesRef

ROTATION = "rotate(0,0,5)"


@pytest.fixture
def staged(sample_ct, sample_dir, tmp_path):
    """The sample CT staged, and Predict's settings for two pixel-seeing sources under none and a rotation."""
    specs = ("baseline", f"plugin:tests.support.counting_source:CountingSource?calls={tmp_path / 'calls.txt'}")
    sources = tuple(SourceInfo.of(spec, build_source(spec)) for spec in specs)
    settings = SegmentSettings(sources=sources, augmentations=("none", ROTATION), store_uri=str(tmp_path / "seg"),
                               manifest_uri=str(tmp_path / "manifest.parquet"), cache_dir=str(tmp_path),
                               staging_uri=str(tmp_path / "staging"))
    area = staging.Staging(settings.staging_uri)
    ct_uri = area.ct_uri(sample_ct.series_instance_uid, staging.ct_fingerprint(sample_ct))
    staging.put_ct(ct_uri, sample_ct)
    series = SeriesRef(sample_ct.series_instance_uid, sample_ct.study_instance_uid, LOCAL, str(sample_dir / "ct"))
    return settings, StagedSeries(ct_uri, tuple(plan_outputs(series, sources, settings.augmentations, "labelmap")))


def test_sources_under_one_rotation_share_one_augmented_ct_and_get_the_labels_of_a_run_alone(staged, sample_ct, monkeypatch):
    settings, series = staged
    calls = []
    real = augment.apply
    monkeypatch.setattr(augment, "apply", lambda *args: calls.append(args) or real(*args))
    predict = Predict(settings)
    predict.setup()

    (done,) = [element for element in predict.process(series) if isinstance(element, PredictedSeries)]

    assert done.complete and len(done.outputs) == 4
    assert len(calls) == 1  # one rotated CT for the series, whatever the number of sources
    for output in done.outputs:
        model = build_source(output.task.source.spec)
        model.load()
        alone = segment_ct(sample_ct, model, parse_augmentation(output.task.augmentation))  # its own augmented CT
        assert np.array_equal(staging.get_labels(output.labels_uri).labels, alone.labels), output.task.describe()
    assert len(calls) == 3  # each run alone rotated the CT itself
