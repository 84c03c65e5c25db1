"""Stage 1 on Google Cloud Dataflow: a GPU only where sources run, one model per GPU, defaults that matter at scale.

``bonehub segment ... --runner DataflowRunner`` builds Stage 1 with a ``DataflowProfile``:

- **GPU step.** ``Predict`` (read a staged CT, run the sources on it, stage the label maps) carries
  the Beam resource hint ``accelerator`` (``type:nvidia-l4;count:1;...``); Dataflow's right fitting
  runs it on a GPU worker pool and every other step on CPU workers: planning and store look-ups,
  ``StageSeries`` (download, read and check a series, stage it) and ``EncodeAndStore`` (SEG encoding
  and storing), the manifest. Steps in different pools share no disk, so they hand over through the
  staging area (``pipeline.staging``, ``--staging gs://...``: the checkpoints bucket), and elements
  carry only its URIs. A T4 or L4 hour costs as much as 7.5 or 12 vCPU hours (Dataflow list prices,
  docs/cost_model.md), so downloads and encoding, which leave the GPU idle, are kept off it.
- **One model per GPU.** Dataflow starts one SDK process per vCPU, and every process that loads a
  model puts another copy on the same GPU. ``--experiments=no_use_multiple_sdk_containers`` starts one
  process per worker VM (with ``count:1``, one per GPU); in it the loaded sources are shared by all
  harness threads (``beam.utils.shared``, as Beam's RunInference does) and one inference runs at a time
  (``segment_predict.LoadedSources``), while the other threads (``--number_of_worker_harness_threads``, 4 by
  default) read the next staged CT and stage finished label maps. NVIDIA MPS (several processes
  sharing one GPU) is the alternative Dataflow offers; it multiplies the model's GPU memory, which
  nnU-Net models of several GB cannot afford.
- **Image.** Workers run the project's image (``--sdk_container_image``, built from the Dockerfile with
  the project, its models and Beam's boot entrypoint installed), so nothing is staged at start-up and
  ``--save_main_session`` is not needed: every DoFn is importable from the ``pipeline`` package.
- **Defaults** (Runner v2, disk size, worker cap, threads) come from ``pipeline_args``; any Beam option
  the user gives wins over them.

``write_pipeline_proto`` writes the pipeline as the runner would receive it, without running it or
touching the network (``bonehub segment ... --dry-run-proto PATH``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Beam is imported where it is used: building the CLI's parser must not wait for it
    import apache_beam as beam
    from apache_beam.portability.api import beam_runner_api_pb2

ACCELERATOR_URN = "beam:resources:accelerator:v1"  # Beam's StandardResourceHints.ACCELERATOR
EXPERIMENTS = ("use_runner_v2", "no_use_multiple_sdk_containers")


@dataclass(frozen=True)
class DataflowProfile:
    """How Stage 1 runs on Dataflow: the GPU of the segmentation step and the job-wide defaults."""

    gpu_type: str = "nvidia-l4"
    gpu_count: int = 1  # 0: no accelerator hint (sources that need no GPU: baseline, precomputed)
    gpu_machine_type: str | None = "g2-standard-8"  # must suit the GPU: g2-* for L4, n1-* for T4
    max_num_workers: int = 20  # a cost ceiling: Dataflow's own cap is 1000 workers
    disk_size_gb: int = 100  # worker image (CUDA, torch, weights) plus the series being fetched
    harness_threads: int = 4  # on a GPU worker one thread infers while the others read and stage

    def __post_init__(self) -> None:
        if self.gpu_count < 0 or not self.gpu_type or any(c in self.gpu_type for c in ";: "):
            raise ValueError(f"not a GPU: type {self.gpu_type!r}, count {self.gpu_count}")
        for name in ("max_num_workers", "disk_size_gb", "harness_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")

    @property
    def accelerator(self) -> str:
        """The value of Dataflow's ``accelerator`` resource hint (driver installed by Dataflow)."""
        machine = [f"machine_type:{self.gpu_machine_type}"] if self.gpu_machine_type else []
        return ";".join([f"type:{self.gpu_type}", f"count:{self.gpu_count}", *machine, "install-nvidia-driver"])

    def gpu_hints(self) -> dict[str, str]:
        """Resource hints of the inference step, ``Predict`` (``PTransform.with_resource_hints(**hints)``)."""
        return {"accelerator": self.accelerator} if self.gpu_count else {}

    def pipeline_args(self, beam_args: Sequence[str]) -> list[str]:
        """``beam_args`` plus the profile's defaults for every option the user did not give."""
        from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, SetupOptions, WorkerOptions

        given = PipelineOptions(list(beam_args))
        worker = given.view_as(WorkerOptions)
        defaults = {"--max_num_workers": (worker.max_num_workers, self.max_num_workers),
                    "--disk_size_gb": (worker.disk_size_gb, self.disk_size_gb),
                    "--number_of_worker_harness_threads": (given.view_as(DebugOptions).number_of_worker_harness_threads,
                                                           self.harness_threads),
                    # every DoFn is importable from the installed package: pickling __main__ only costs
                    "--no_save_main_session": (given.view_as(SetupOptions).save_main_session, None)}
        args = list(beam_args) + [name if value is None else f"{name}={value}"
                                  for name, (user, value) in defaults.items() if user is None]
        experiments = set(given.view_as(DebugOptions).experiments or [])
        # an experiment the user switched either way (x or no_x) is theirs to decide
        return args + [f"--experiments={e}" for e in EXPERIMENTS
                       if not {e, e.removeprefix("no_"), f"no_{e.removeprefix('no_')}"} & experiments]


def runs_on_dataflow(beam_args: Sequence[str]) -> bool:
    """Whether these Beam options ask for the Dataflow runner (``DataflowRunner``, ``dataflow``, a class path)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    runner = PipelineOptions(list(beam_args)).view_as(StandardOptions).runner
    return isinstance(runner, str) and runner.rsplit(".", 1)[-1].lower().removesuffix("runner") == "dataflow"


def pipeline_proto(pipeline: beam.Pipeline) -> beam_runner_api_pb2.Pipeline:
    """The portable proto of ``pipeline`` as the Dataflow runner builds it before submission (no network).

    The default environment is the worker image with the job-wide resource hints; a step with its own
    hints gets an environment of its own, which is where the accelerator hint lives.
    """
    from apache_beam.options.pipeline_options import WorkerOptions
    from apache_beam.runners.pipeline_utils import merge_common_environments, merge_superset_dep_environments
    from apache_beam.transforms import environments

    options = pipeline.options
    image = options.view_as(WorkerOptions).sdk_container_image or environments.DockerEnvironment.default_docker_image()
    default = environments.DockerEnvironment.from_container_image(
        image, resource_hints=environments.resource_hints_from_options(options))
    proto = pipeline.to_runner_api(default_environment=default)
    return merge_common_environments(merge_superset_dep_environments(proto))


def write_pipeline_proto(pipeline: beam.Pipeline, path: str | Path) -> beam_runner_api_pb2.Pipeline:
    """Write ``pipeline``'s proto (text format) to ``path``, its non-default options in a leading comment."""
    from google.protobuf import text_format

    options = pipeline.options.get_all_options(drop_default=True, retain_unknown_options=True)
    proto = pipeline_proto(pipeline)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# pipeline_options: {json.dumps(options, sort_keys=True, default=str)}\n"
                    + text_format.MessageToString(proto))
    return proto


def accelerators(proto: beam_runner_api_pb2.Pipeline) -> dict[str, str]:
    """Leaf transform name -> accelerator hint, for every step that does work in an environment with one.

    Leaves only: a composite holds no work of its own, and a hint on a composite reaches all its leaves.
    """
    envs = proto.components.environments
    return {t.unique_name: envs[t.environment_id].resource_hints[ACCELERATOR_URN].decode()
            for t in proto.components.transforms.values()
            if not t.subtransforms and t.environment_id and ACCELERATOR_URN in envs[t.environment_id].resource_hints}
