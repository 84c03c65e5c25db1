"""Every numeric QC setting is refused by name when negative, NaN, infinite or not a number, from the API and the CLI."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from qc.score import QcSettings

NUMERIC = ["nsd_tolerance_mm", "extra_component_ml", "min_volume_ml", "rib_contact_mm", "outlier_margin",
           "outlier_spread_factor"]


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "2", True])
def test_bad_numbers_are_refused_by_name(name, bad):
    with pytest.raises(ValueError, match=f"{name} must be a number >= 0"):
        QcSettings(**{name: bad})


@pytest.mark.parametrize("name", ["nsd_tolerance_mm_by_structure", "min_volume_ml_by_structure"])
def test_per_structure_values_are_checked_too(name):
    with pytest.raises(ValueError, match=rf"{name}\[femur_left\] must be a number >= 0"):
        QcSettings(**{name: {"femur_left": -2.0}})


def test_zero_and_positive_values_are_accepted():
    settings = QcSettings(nsd_tolerance_mm=0.0, min_volume_ml=0, nsd_tolerance_mm_by_structure={"femur_left": 3.5})
    assert settings.tolerance_mm("femur_left") == 3.5 and settings.tolerance_mm("femur_right") == 0.0


def test_a_negative_nsd_tolerance_fails_the_command_before_any_work(tmp_path, capsys):
    config = tmp_path / "qc.json"
    config.write_text(json.dumps({"nsd_tolerance_mm": -1}))
    rc = main(["qc", "--manifest", str(tmp_path / "none.parquet"), "--qc-config", str(config)])
    assert rc == 2
    assert "nsd_tolerance_mm must be a number >= 0, got -1" in capsys.readouterr().err
