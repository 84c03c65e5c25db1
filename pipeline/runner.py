"""The Beam pipeline object every job runs in: on this machine, in-process, never a downloaded binary.

Beam's default ``DirectRunner`` (2.77) first tries the Prism runner, which it downloads
from GitHub and executes; it falls back to the in-process FnApiRunner only when that
fails. On a connected hospital machine that is an unasked-for download and execution, so
a local run here goes straight to the FnApiRunner (which also serves
``--direct_running_mode multi_threading|multi_processing`` and ``--direct_num_workers``),
and ``--runner PrismRunner`` is refused. Any other runner (Dataflow) runs as asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from labels.errors import BoneHubInputError

_LOCAL = {"direct", "switchingdirect", "fnapi", "bundlebaseddirect"}
_DOWNLOADING = {"prism", "portable"}  # Beam fetches a job-server binary or container for these


class RunnerChoiceError(BoneHubInputError):
    """A Beam runner this project does not run, because it would download and execute a binary."""


def runner_key(options: PipelineOptions) -> str:
    """The runner asked for, lower case without package or ``Runner`` suffix (``direct`` when none)."""
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name.rsplit(".", 1)[-1].lower().removesuffix("runner")


def new_pipeline(options: PipelineOptions | Sequence[str]) -> beam.Pipeline:
    """A Beam pipeline that runs in this process for a local runner, or on the runner the options name."""
    if not isinstance(options, PipelineOptions):
        options = PipelineOptions(list(options))
    key = runner_key(options)
    if key in _DOWNLOADING:
        raise RunnerChoiceError(f"--runner {options.view_as(StandardOptions).runner}: Beam would download and execute "
                                "a runner binary; run locally with the default (in-process) runner or on Dataflow")
    if key in _LOCAL:
        return beam.Pipeline(runner=_in_process_runner(options), options=options)
    return beam.Pipeline(options=options)


def _in_process_runner(options: PipelineOptions) -> beam.runners.PipelineRunner:
    """The FnApiRunner, given the options as the DirectRunner would give them (workers read them from there)."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision)
