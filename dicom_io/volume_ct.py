"""A CT volume file (NIfTI, NRRD, MHA) as a DICOM CT series, made once per file in the run's cache.

Everything after the input step reads DICOM CT series, so a volume file becomes one: checked by
``dicom_io.volume_files``, written unresampled by ``dicom_io.ct_writer`` (geometry and integer HU exact),
with its identity and subject metadata in the headers (``dicom_io.subject_headers``) and these:

- ImageType ``DERIVED\\SECONDARY\\AXIAL``; DerivationDescription names the file (path relative to its input
  root) and its SHA-256, and the largest change when non-integer values were rounded to whole HU;
- Study, Series and FrameOfReference UIDs derived from (content digest, PatientID, BoneHub dataset and
  subject ids), SOP Instance UIDs from the series UID and slice index: the same file for the same
  subject gives the same UIDs on every run and machine, so a rerun finds its SEGs in the store.

The series lands in ``<cache>/derived_ct/<digest[:16]>-<key[:16]>/``, ``key`` a digest of everything written
into the headers (so changed Subject_info makes a new folder with the same UIDs). It is written into a
temporary folder, ``.complete`` (JSON: UIDs, slice count) last, then renamed into place: a folder with the
marker is reused without reading the volume again, one without (a killed run) is rebuilt, and a volume that
fails its checks leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dicom_io.bonehub_layout import BoneHubSubject
from dicom_io.ct_writer import write_ct_series
from dicom_io.provenance import derived_uid
from dicom_io.subject_headers import subject_attributes
from dicom_io.volume_files import DETACHED_SUFFIXES, CheckedVolume, file_digest, read_volume, volume_digest

log = logging.getLogger("bonehub.volumes")

FORMAT = "bonehub-volume-ct/1"  # part of every folder key: a change in what is written makes new folders
DERIVED_CT = "derived_ct"
MARKER = ".complete"
_DESCRIPTION_CHARS = 1024  # DerivationDescription is ST


@dataclass(frozen=True)
class VolumeInput:
    """One CT volume file to convert, as the command line found it."""

    path: Path
    source_path: str  # the file relative to its input root (folder, CSV's folder, BoneHub-Dataset root)
    subject: BoneHubSubject | None = None  # for BoneHub-Dataset input


@dataclass(frozen=True)
class DerivedCT:
    """The DICOM CT series made from a volume file."""

    folder: Path
    series_uid: str
    study_uid: str
    instances: int


def derive_ct(item: VolumeInput, cache_dir: str | os.PathLike) -> DerivedCT:
    """The CT series of ``item`` under ``cache_dir``, made unless a complete one is there.

    Raises ``VolumeInputError`` (naming the file) for a volume that fails its checks, leaving nothing behind.
    """
    path = Path(item.path)
    checked = read_volume(path) if path.name.lower().endswith(DETACHED_SUFFIXES) else None
    digest = volume_digest(path, checked) if checked is not None else _digest_checked(path)
    attributes = _header_attributes(item, digest)
    key = hashlib.sha256(json.dumps([FORMAT, digest, item.source_path, attributes], sort_keys=True,
                                    default=str).encode()).hexdigest()
    folder = Path(cache_dir) / DERIVED_CT / f"{digest[:16]}-{key[:16]}"
    if (done := _complete(folder)) is not None:
        return done
    checked = checked or read_volume(path)
    identity = (digest, attributes["PatientID"], attributes.get("ClinicalTrialProtocolID", ""),
                attributes.get("ClinicalTrialSubjectID", ""))
    study_uid, series_uid, frame_uid = (derived_uid("volume ct", role, *identity) for role in ("study", "series", "frame"))
    attributes["DerivationDescription"] = _derivation(item.source_path, digest, checked)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        paths = write_ct_series(
            checked.volume, scratch, study_instance_uid=study_uid, series_instance_uid=series_uid,
            frame_of_reference_uid=frame_uid, series_description=_description(item), derived=True,
            attributes=attributes)
        made = DerivedCT(folder, series_uid, study_uid, len(paths))
        (scratch / MARKER).write_text(json.dumps({"format": FORMAT, "series_uid": series_uid, "study_uid": study_uid,
                                                  "instances": len(paths), "digest": digest}))
        _move_into_place(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("%s: DICOM CT series %s, %d slices", _who(item), series_uid, made.instances)
    return _complete(folder) or made


def _digest_checked(path: Path) -> str:
    """The file's digest; a missing or empty file is refused first, as ``read_volume`` would."""
    if not path.is_file() or path.stat().st_size == 0:
        read_volume(path)  # raises the error naming the file
    return file_digest(path)


def _header_attributes(item: VolumeInput, digest: str) -> dict[str, object]:
    return subject_attributes(item.subject, item.subject.subject_id if item.subject else f"volume-{digest[:16]}")


def _derivation(source_path: str, digest: str, checked: CheckedVolume) -> str:
    text = f"CT volume file {source_path} (SHA-256 {digest}) stored as DICOM without resampling by BoneHub Segmentation"
    if checked.rounded_by > 0:
        text += f"; non-integer values rounded to whole HU (largest change {checked.rounded_by:.3g} HU)"
    return text[:_DESCRIPTION_CHARS]


def _description(item: VolumeInput) -> str:
    return (f"CT of BoneHub {item.subject.subject_id}" if item.subject else f"CT from {Path(item.source_path).name}")[:64]


def _who(item: VolumeInput) -> str:
    """How logs name a volume: its BoneHub subject id, else only that it is a volume file (paths stay out of logs)."""
    return f"subject {item.subject.subject_id}" if item.subject else "volume file"


def _complete(folder: Path) -> DerivedCT | None:
    """The series in ``folder`` when its marker says it is complete, else None."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        return DerivedCT(folder, marker["series_uid"], marker["study_uid"], int(marker["instances"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _move_into_place(scratch: Path, folder: Path) -> None:
    """Rename the finished ``scratch`` to ``folder``, replacing an incomplete one; another run's complete one wins."""
    if folder.exists() and _complete(folder) is None:
        shutil.rmtree(folder)
    try:
        os.rename(scratch, folder)
    except OSError:
        if _complete(folder) is None:
            raise
