"""Stage 1 for Dataflow, built offline: the GPU hint sits on the segmentation step only, one model per process.

No cloud account and no network: ``bonehub segment ... --runner DataflowRunner --dry-run-proto PATH``
builds the pipeline with the Dataflow options, writes the proto the runner would submit and runs
nothing; the tests read that file back and refuse any socket connection while it is made.
"""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, SetupOptions, WorkerOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.portability.common_urns import resource_hints
from google.protobuf import text_format

from pipeline.cli import main
from pipeline.dataflow import ACCELERATOR_URN, DataflowProfile, accelerators, pipeline_proto
from pipeline.segment_job import segment_pipeline
from pipeline.segment_predict import Predict
from pipeline.segment_steps import SegmentSettings
from results.series_ref import IDC, SeriesRef

IDC_CSV = Path(__file__).resolve().parents[1] / "data" / "idc" / "nlst_review_series.csv"
IMAGE = "europe-west4-docker.pkg.dev/bonehub-test/bonehub/worker:test"
DATAFLOW = ["--runner", "DataflowRunner", "--project", "bonehub-test", "--region", "europe-west4",
            "--temp_location", "gs://bonehub-test/tmp"]
GPU_STEPS = {"Segment/Predict/ParDo(Predict)"}
L4 = "type:nvidia-l4;count:1;machine_type:g2-standard-8;install-nvidia-driver"


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Every connection or name lookup attempted while the test runs (each one refused)."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if isinstance(args[0], socket.socket) else args[:2])
        raise OSError("network use in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def _read(path: Path) -> tuple[dict, beam_runner_api_pb2.Pipeline]:
    text = path.read_text()
    header, _ = text.split("\n", 1)
    assert header.startswith("# pipeline_options: ")
    return json.loads(header.removeprefix("# pipeline_options: ")), text_format.Parse(text, beam_runner_api_pb2.Pipeline())


def _leaf_hints(proto: beam_runner_api_pb2.Pipeline) -> dict[str, bytes | None]:
    """Every leaf transform that runs in an SDK environment -> its accelerator hint (None: none)."""
    envs = proto.components.environments
    return {t.unique_name: envs[t.environment_id].resource_hints.get(ACCELERATOR_URN)
            for t in proto.components.transforms.values() if not t.subtransforms and t.environment_id}


def _segment(tmp_path: Path, *extra: str) -> int:
    return main(["segment", "--idc-csv", str(IDC_CSV), "--source", "baseline", "--augment", "rotate(0,0,5)",
                 "--out", "gs://bonehub-test/seg", "--staging", "gs://bonehub-test-checkpoints/staging", *DATAFLOW, *extra])


def test_dry_run_proto_puts_the_gpu_on_the_segmentation_step_only(tmp_path, no_network, capsys):
    out = tmp_path / "stage1.textproto"
    assert _segment(tmp_path, "--sdk_container_image", IMAGE, "--dry-run-proto", str(out)) == 0
    assert no_network == []
    assert f"wrote {out}: the pipeline, not run; accelerator {L4}" in capsys.readouterr().out

    options, proto = _read(out)
    assert ACCELERATOR_URN == resource_hints.ACCELERATOR.urn
    hints = _leaf_hints(proto)
    assert {name for name, hint in hints.items() if hint is not None} == GPU_STEPS
    assert {hints[name] for name in GPU_STEPS} == {L4.encode()}
    # the steps that must stay on CPU workers are there, in an environment without the hint
    for step in ("Segment/PlanOutputs", "Segment/SkipExisting/ParDo(SkipExisting)", "Segment/StageSeries/ParDo(StageSeries)",
                 "Segment/EncodeAndStore", "WriteManifest", "Segment/AllRows"):
        assert step in hints and hints[step] is None, step
    assert accelerators(proto) == dict.fromkeys(GPU_STEPS, L4)
    # both environments run the project's worker image
    images = {beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
              for env in proto.components.environments.values()}
    assert images == {IMAGE} and len(proto.components.environments) == 2

    assert options["runner"] == "DataflowRunner" and options["sdk_container_image"] == IMAGE
    assert {"use_runner_v2", "no_use_multiple_sdk_containers"} <= set(options["experiments"])
    assert options["save_main_session"] is False
    assert (options["max_num_workers"], options["disk_size_gb"], options["number_of_worker_harness_threads"]) == (20, 100, 4)


def test_gpu_is_configurable_and_count_zero_means_cpu_only(tmp_path):
    series = [SeriesRef("1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", IDC,
                        "s3://idc-open-data/0000/*", 3)]
    settings = SegmentSettings(sources=(), augmentations=("none",), store_uri="gs://bonehub-test/seg",
                               manifest_uri="gs://bonehub-test/seg/manifest.parquet", cache_dir=str(tmp_path),
                               staging_uri="gs://bonehub-test-checkpoints/staging")
    args = [*DATAFLOW, "--sdk_container_image", IMAGE, "--dry_run=True"]

    t4 = DataflowProfile(gpu_type="nvidia-tesla-t4", gpu_count=2, gpu_machine_type="n1-standard-8")
    hinted = accelerators(pipeline_proto(segment_pipeline(series, settings, args, t4)))
    assert hinted == dict.fromkeys(GPU_STEPS, "type:nvidia-tesla-t4;count:2;machine_type:n1-standard-8;install-nvidia-driver")

    assert accelerators(pipeline_proto(segment_pipeline(series, settings, args, DataflowProfile(gpu_count=0)))) == {}
    # the DirectRunner gets neither the hint nor the Dataflow defaults
    direct = segment_pipeline(series, settings, [])
    assert accelerators(pipeline_proto(direct)) == {}
    assert not direct.options.view_as(DebugOptions).lookup_experiment("no_use_multiple_sdk_containers")


def test_beam_options_the_user_gives_win_over_the_profile():
    args = DataflowProfile().pipeline_args(["--max_num_workers=5", "--experiments=use_multiple_sdk_containers",
                                            "--save_main_session", "--disk_size_gb=30"])
    options = PipelineOptions(args)
    worker = options.view_as(WorkerOptions)
    assert (worker.max_num_workers, worker.disk_size_gb) == (5, 30)
    experiments = options.view_as(DebugOptions).experiments
    assert "no_use_multiple_sdk_containers" not in experiments and "use_runner_v2" in experiments
    assert options.view_as(SetupOptions).save_main_session is True
    assert options.view_as(DebugOptions).number_of_worker_harness_threads == 4  # not given: the profile's


@pytest.mark.parametrize(("extra", "reason"), [
    (["--dicom-folder", "sample/ts_abdomen_3mm/ct", "--sdk_container_image", IMAGE], "Dataflow workers cannot read"),
    (["--idc-csv", str(IDC_CSV)], "--sdk_container_image"),
    (["--idc-csv", str(IDC_CSV), "--sdk_container_image", IMAGE, "--out", "{tmp}/seg"], "Dataflow workers cannot write"),
    (["--idc-csv", str(IDC_CSV), "--sdk_container_image", IMAGE, "--manifest", "{tmp}/m.parquet"], "must be on GCS"),
    (["--idc-csv", str(IDC_CSV), "--sdk_container_image", IMAGE], "the staging area"),  # CACHE_DIR/staging by default
    (["--idc-csv", str(IDC_CSV), "--sdk_container_image", IMAGE, "--staging", "{tmp}/staging"], "--staging gs://"),
    (["--idc-csv", str(IDC_CSV), "--sdk_container_image", IMAGE, "--gpu-count", "-1"], "not a GPU"),
])
def test_jobs_dataflow_workers_could_not_run_fail_at_once(tmp_path, capsys, extra, reason):
    extra = [arg.format(tmp=tmp_path) for arg in extra]
    out = ["--out", "gs://bonehub-test/seg"] if "--out" not in extra else []
    assert main(["segment", "--source", "baseline", *out, *DATAFLOW, *extra]) == 2
    assert reason in capsys.readouterr().err


def test_dry_run_is_for_stage_1_alone(tmp_path, capsys):
    assert main(["run", "--idc-csv", str(IDC_CSV), "--source", "baseline", "--out", "gs://bonehub-test/seg",
                 *DATAFLOW, "--sdk_container_image", IMAGE, "--dry-run-proto", str(tmp_path / "p.textproto")]) == 2
    assert "use it with bonehub segment" in capsys.readouterr().err


class RecordingSource:
    """A plugin source that logs each load and each predict (thread, start, end) to a file; predict takes 0.2 s."""

    sees_pixels = True

    def __init__(self, log: str, name: str = "Recording source", version: str = "1"):
        self.name, self.version, self.log = name, version, Path(log)

    def _write(self, line: str) -> None:
        with self.log.open("a") as f:
            f.write(line + "\n")

    def load(self) -> None:
        self._write("load")

    def predict(self, ct) -> None:
        start = time.monotonic()
        time.sleep(0.2)
        self._write(f"{threading.get_ident()} {start} {time.monotonic()}")


def test_threads_of_a_process_share_one_loaded_source_and_predict_one_at_a_time(tmp_path):
    log = tmp_path / "calls.txt"
    spec = f"plugin:tests.cloud.test_dataflow_profile:RecordingSource?log={log}"
    settings = SegmentSettings(sources=(), augmentations=("none",), store_uri=str(tmp_path / "seg"),
                               manifest_uri=str(tmp_path / "manifest.parquet"), cache_dir=str(tmp_path),
                               staging_uri=str(tmp_path / "staging"))
    shipped = pickle.dumps(Predict(settings))  # as Beam ships the DoFn to each worker thread
    dofns = [pickle.loads(shipped) for _ in range(4)]
    for dofn in dofns:
        dofn.setup()
    assert all(dofn.sources is dofns[0].sources for dofn in dofns)

    threads = [threading.Thread(target=lambda d=d: d.sources.get(spec).predict(None)) for d in dofns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = log.read_text().splitlines()
    assert lines.count("load") == 1
    calls = sorted((float(start), float(end), ident) for ident, start, end in (line.split() for line in lines if line != "load"))
    assert len({ident for _, _, ident in calls}) == 4
    assert all(end <= next_start for (_, end, _), (next_start, _, _) in pairwise(calls)), "predicts overlapped"
