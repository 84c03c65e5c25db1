"""The CPU baseline under another name, logging each ``predict`` to a file (loaded through ``plugin:``).

A test reads ``calls`` to see whether a rerun ran the source again or used a staged label map.
"""

from __future__ import annotations

from pathlib import Path

from dicom_io.ct_series import CTSeries
from models.base import Prediction
from models.baseline import BoneThresholdBaseline


class CountingSource:
    sees_pixels = True

    def __init__(self, calls: str, name: str = "Counting baseline", version: str = "1"):
        self.name, self.version, self.calls = name, version, Path(calls)
        self._baseline = BoneThresholdBaseline()

    def load(self) -> None:
        self._baseline.load()

    def predict(self, ct: CTSeries) -> Prediction:
        with self.calls.open("a") as log:
            log.write(f"{ct.series_instance_uid}\n")
        return self._baseline.predict(ct)
