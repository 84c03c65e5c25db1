"""A local folder as a store, laid out as DICOMweb is: ``<root>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``.

One folder per series is what OHIF and 3D Slicer expect, and such a folder can be pushed to a DICOMweb
server unchanged.
"""

from __future__ import annotations

import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import pydicom
from pydicom import Dataset

from dicom_io.seg_file import dicom_file_bytes
from labels.slabs import workers
from dicom_io.stores.preflight import check_local_folder, remove_dead_temp_files
from dicom_io.stores.base import (
    SUFFIX, InstanceNotFoundError, InstanceRef, instance_uids, matches, validate_filters, validate_key,
)

logger = logging.getLogger(__name__)


class LocalStore:
    """``<root>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``; written to a temporary name and renamed, so a crash
    never leaves a partial ``.dcm`` that ``exists`` would report."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({self.uri!r})"

    def _path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        validate_key(study_uid, series_uid, sop_uid)
        return self.root / study_uid / series_uid / f"{sop_uid}{SUFFIX}"

    def check_writable(self) -> None:
        """The folder exists (or is made) and a file can be written in it and removed; leftovers of killed runs go."""
        check_local_folder(self.root, "output store")
        remove_dead_temp_files(self.root)

    def put(self, ds: Dataset) -> str:
        path = self._path(*instance_uids(ds))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")  # hidden: never listed, never `exists`
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            with os.fdopen(fd, "wb") as f:
                f.write(dicom_file_bytes(ds))  # a deflated SEG: zlib-ng, smaller and faster than pydicom's zlib
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logger.debug("stored SOP instance %s at %s", path.stem, path)
        return path.as_uri()

    def put_many(self, datasets: Sequence[Dataset]) -> list[str]:
        """Each written by its own thread (deflating and syncing release the GIL): a series' SEGs side by side."""
        if len(datasets) < 2:
            return [self.put(ds) for ds in datasets]
        with ThreadPoolExecutor(max_workers=min(workers(), len(datasets)), thread_name_prefix="bonehub-put") as pool:
            return list(pool.map(self.put, datasets))

    def exists(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        return self._path(study_uid, series_uid, sop_uid).is_file()

    def location(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return self._path(study_uid, series_uid, sop_uid).as_uri()

    def get(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        path = self._path(study_uid, series_uid, sop_uid)
        try:
            return pydicom.dcmread(path)
        except FileNotFoundError:
            raise InstanceNotFoundError(f"no SOP instance {sop_uid} of series {series_uid} in {self.uri}") from None

    def list_instances(
        self, series_uid: str | None = None, modality: str | None = None, *, study_uid: str | None = None
    ) -> list[InstanceRef]:
        validate_filters(study_uid, series_uid)
        studies = [self.root / study_uid] if study_uid else self._subdirs(self.root)
        refs = []
        for study_dir in studies:
            series_dirs = [study_dir / series_uid] if series_uid else self._subdirs(study_dir)
            for series_dir in series_dirs:
                if not series_dir.is_dir():
                    continue
                for path in sorted(series_dir.glob(f"[!.]*{SUFFIX}")):
                    header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
                    ref = InstanceRef(study_dir.name, series_dir.name, path.name[: -len(SUFFIX)], str(header.get("Modality", "")))
                    if matches(ref, None, None, modality):
                        refs.append(ref)
        return sorted(refs)

    @staticmethod
    def _subdirs(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []
