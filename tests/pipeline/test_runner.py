"""Local jobs run in-process: no runner binary is fetched, and a run reaches no host it was not given."""

from __future__ import annotations

import pytest
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

from pipeline.cli import main
from pipeline.runner import RunnerChoiceError, new_pipeline
from tests.support.bright_object_ct import write_bright_object_ct
from bench.network_guard import no_network


@pytest.mark.parametrize("args", [[], ["--runner", "DirectRunner"], ["--runner=direct"],
                                  ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]])
def test_local_runs_use_the_in_process_runner(args):
    assert isinstance(new_pipeline(args).runner, FnApiRunner)


@pytest.mark.parametrize("runner", ["PrismRunner", "prism", "apache_beam.runners.portability.prism_runner.PrismRunner",
                                    "PortableRunner"])
def test_runners_that_download_a_binary_are_refused(runner):
    with pytest.raises(RunnerChoiceError, match="download"):
        new_pipeline(["--runner", runner])


def test_a_run_makes_no_connection_outside_loopback(tmp_path, capsys):
    """Stage 1 and QC on a local folder, with every outside lookup or connection recorded: none may happen."""
    write_bright_object_ct(tmp_path / "ct")
    with no_network() as attempts:
        rc = main(["run", "--dicom-folder", str(tmp_path / "ct"), "--source", "baseline",
                   "--out", str(tmp_path / "seg"), "--qc-dir", str(tmp_path / "qc"), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0, capsys.readouterr().err
    assert attempts == []
    assert "1 written" in capsys.readouterr().out


def test_an_explicit_prism_runner_fails_before_any_work(tmp_path, capsys):
    write_bright_object_ct(tmp_path / "ct")
    rc = main(["segment", "--dicom-folder", str(tmp_path / "ct"), "--source", "baseline",
               "--out", str(tmp_path / "seg"), "--cache-dir", str(tmp_path / "cache"), "--runner", "PrismRunner"])
    assert rc == 2
    assert "download" in capsys.readouterr().err
    assert not (tmp_path / "seg").exists() or not any((tmp_path / "seg").rglob("*.dcm"))
