"""Precomputed segmentations as a source: a vote at zero GPU cost.

Files are found per CT series, either by a folder plus a file-name pattern
(``"{series_uid}.nii.gz"``, ``"{series_uid}.dcm"``) or by a callable
``series_uid -> Path``. Label images (NIfTI, NRRD, ...) carry native labels of a
declared label set (e.g. ``totalsegmentator_total``); DICOM SEG files are decoded
straight into schema ids, so their source has no label set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from dicom_io.ct_series import CTSeries
from dicom_io.errors import DicomInputError
from dicom_io.label_images import LABEL_IMAGE_SUFFIXES, read_label_image
from dicom_io.seg_reader import read_seg
from dicom_io.uids import validate_uid
from labels.label_sets import LabelSet, load_label_set
from models.base import Prediction



class PrecomputedNotFoundError(DicomInputError, FileNotFoundError):
    """No precomputed segmentation file for a series."""


class PrecomputedSegmentation:
    """Read an existing segmentation for each series instead of running a model.

    ``label_set``: the native label set of label-image files (a packaged name or a CSV path);
    ``None`` for DICOM SEG files, whose segments are resolved to schema ids by their codes.
    ``locate``: a callable ``series_uid -> Path``, or a folder in which ``pattern`` is formatted.
    """

    def __init__(
        self,
        name: str,
        version: str,
        label_set: str | os.PathLike | None,
        locate: Callable[[str], Path] | str | os.PathLike,
        pattern: str = "{series_uid}.nii.gz",
    ):
        self.name = name
        self.version = version
        self.label_set_name = label_set
        if callable(locate):
            self._locate = locate
        else:
            folder = Path(locate)
            if "{series_uid}" not in pattern:
                raise ValueError(f"{name}: file-name pattern {pattern!r} must contain {{series_uid}}")
            self._locate = lambda uid: folder / pattern.format(series_uid=uid)
        self._label_set: LabelSet | None = None

    def __repr__(self) -> str:
        return f"PrecomputedSegmentation({self.name!r}, {self.version!r}, label_set={self.label_set_name!r})"

    def load(self) -> None:
        if self.label_set_name is not None and self._label_set is None:
            self._label_set = load_label_set(self.label_set_name)

    def locate(self, series_uid: str) -> Path:
        """The file for ``series_uid``; the UID is validated first so it cannot escape the folder."""
        validate_uid(series_uid, f"series UID for precomputed source {self.name!r}")
        path = Path(self._locate(series_uid))
        if not path.is_file():
            raise PrecomputedNotFoundError(
                f"{self.name}: no precomputed segmentation for series {series_uid} (looked for {path})"
            )
        return path

    def predict(self, ct: CTSeries) -> Prediction:
        self.load()
        path = self.locate(ct.series_instance_uid)
        if self._is_label_image(path):
            if self._label_set is None:
                raise ValueError(f"{self.name}: {path} is a label image, so the source needs a native label set")
            return Prediction(read_label_image(path), self._label_set)
        if self._label_set is not None:
            raise ValueError(f"{self.name}: {path} is not a label image ({', '.join(LABEL_IMAGE_SUFFIXES)}); "
                             "DICOM SEG sources take label_set=None")
        return Prediction(read_seg(path, ct).volume, None)

    @staticmethod
    def _is_label_image(path: Path) -> bool:
        return path.name.lower().endswith(LABEL_IMAGE_SUFFIXES)
