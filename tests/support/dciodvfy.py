"""dicom3tools' dciodvfy (the DICOM IOD checker) for tests: found on PATH or the test is skipped."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def dciodvfy_binary() -> str:
    binary = shutil.which("dciodvfy")
    if binary is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed; CI installs it")
    return binary


def errors_reported(path) -> list[str]:
    """The lines dciodvfy starts with "Error" for the object at ``path`` (warnings are not errors)."""
    result = subprocess.run([dciodvfy_binary(), str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
