"""Find the DICOM files of a series: read every header (no pixels), group by series, choose one.

A folder is walked recursively and files of any name are read; what is not DICOM, and DICOMDIRs, are
skipped. Files that look like DICOM but do not read are listed, and a series with such a file in one of
its folders is refused (``read_ct_series``): the file may be one of its slices. A source that holds several series names them all when it cannot choose, so the caller can
pass ``series_uid``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import MediaStorageDirectoryStorage

from dicom_io.errors import DicomInputError, NotCTError, SeriesSelectionError
from dicom_io.uids import validate_uid

Source = str | os.PathLike | Sequence[str | os.PathLike]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesSummary:
    """One series found in a source: enough to choose it, no patient data."""

    series_uid: str
    modality: str
    n_images: int
    description: str
    study_uid: str = ""  # empty when the files disagree or lack it


def describe_source(source: Source) -> str:
    """How messages name ``source``: the folder, or the number of files given."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"{len(source)} given files"


@dataclass(frozen=True)
class HeaderScan:
    """What a walk over a source found: the readable headers, and the files that look like DICOM but do not read.

    ``unreadable`` holds ``(path, reason)`` for files with the DICOM magic number or a ``.dcm`` name that
    pydicom cannot read: a corrupt slice must not vanish from its series unnoticed.
    """

    headers: list[Dataset]
    unreadable: list[tuple[Path, str]]

    def unreadable_beside(self, members: Sequence[Dataset]) -> list[tuple[Path, str]]:
        """The unreadable files in a folder that holds one of ``members``: they may be slices of that series."""
        folders = {Path(ds.filename).parent for ds in members if ds.filename}
        return [(path, reason) for path, reason in self.unreadable if path.parent in folders]


def read_headers(source: Source) -> HeaderScan:
    """Headers of all DICOM files in ``source`` (pixel data is not read), and the DICOM-looking files that fail."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise DicomInputError(f"{folder} is not a folder; pass a folder or a list of files")
        paths = sorted(Path(root) / name for root, _, names in os.walk(folder) for name in names)
        explicit = False
    else:
        paths = [Path(p) for p in source]
        explicit = True
    headers, unreadable = [], []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError as exc:
            if explicit:
                raise DicomInputError(f"{path} is not a DICOM file") from exc
            if _looks_like_dicom(path):
                unreadable.append((path, str(exc)))
            continue
        except Exception as exc:  # pydicom raises many types for corrupt files
            if explicit:
                raise DicomInputError(f"cannot read DICOM file {path}: {exc}") from exc
            unreadable.append((path, f"{type(exc).__name__}: {exc}"))
            continue
        if ds.file_meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
            continue
        if "SeriesInstanceUID" not in ds or "SOPInstanceUID" not in ds:  # pydicom reads some corrupt headers partly
            unreadable.append((path, "no SeriesInstanceUID or SOPInstanceUID (a corrupt header?)"))
        headers.append(ds)
    if unreadable:
        logger.warning("%d file(s) in %s look like DICOM but cannot be read, first %s: %s", len(unreadable),
                       describe_source(source), *unreadable[0])
    return HeaderScan(headers, unreadable)


def _looks_like_dicom(path: Path) -> bool:
    """A ``.dcm`` name, or the DICOM magic number after the 128-byte preamble."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def group_by_series(headers: list[Dataset]) -> dict[str, list[Dataset]]:
    """Headers by SeriesInstanceUID (empty string for files without one)."""
    groups: dict[str, list[Dataset]] = {}
    for ds in headers:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    return groups


def summarize(uid: str, headers: list[Dataset]) -> SeriesSummary:
    """What ``list_series`` and the errors say about one series."""
    modalities = sorted({str(ds.get("Modality", "")) for ds in headers})
    studies = {str(ds.get("StudyInstanceUID", "")) for ds in headers}
    return SeriesSummary(
        series_uid=uid,
        modality="/".join(modalities),
        n_images=len(headers),
        description=str(headers[0].get("SeriesDescription", "")),
        study_uid=studies.pop() if len(studies) == 1 else "",
    )


def _listing(groups: dict[str, list[Dataset]]) -> str:
    return "; ".join(
        f"{s.series_uid or '<no SeriesInstanceUID>'} ({s.modality or '?'}, {s.n_images} images)"
        for s in (summarize(uid, h) for uid, h in sorted(groups.items()))
    )


def select_series(
    groups: dict[str, list[Dataset]], series_uid: str | None, where: str
) -> tuple[str, list[Dataset]]:
    """The series ``series_uid`` names, else the one CT series in ``groups``; its UID and headers."""
    if not groups:
        raise SeriesSelectionError(f"no DICOM files found in {where}")
    if series_uid is not None:
        validate_uid(series_uid, "requested series_uid")
        if series_uid not in groups:
            raise SeriesSelectionError(
                f"series {series_uid} not found in {where}; series present: {_listing(groups)}"
            )
        return series_uid, groups[series_uid]
    ct = {uid: members for uid, members in groups.items() if any(ds.get("Modality") == "CT" for ds in members)}
    if not ct:
        raise NotCTError(f"no CT series in {where}; series present: {_listing(groups)}")
    if len(ct) > 1:
        raise SeriesSelectionError(
            f"{len(ct)} CT series in {where}, choose one with series_uid: {_listing(ct)}"
        )
    return next(iter(ct.items()))
