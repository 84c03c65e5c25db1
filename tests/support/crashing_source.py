"""A segmentation source that crashes in ``predict``, loaded through the ``plugin:`` spec like any custom adapter.

Each call appends a line to ``calls`` (a file), so a test can see which outputs a rerun retried.
"""

from __future__ import annotations

from pathlib import Path

from dicom_io.ct_series import CTSeries
from models.base import Prediction


class CrashingSource:
    sees_pixels = True

    def __init__(self, calls: str, name: str = "Crashing model", version: str = "1"):
        self.name = name
        self.version = version
        self.calls = Path(calls)

    def load(self) -> None:
        pass

    def predict(self, ct: CTSeries) -> Prediction:
        with self.calls.open("a") as log:
            log.write(f"{ct.series_instance_uid}\n")
        raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated crash)")
