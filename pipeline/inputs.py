"""Which CT series a Stage 1 run segments: ``SeriesRef``s from the command line's input options.

Four kinds of input make refs (``results.series_ref``, the contract the manifest records):

- a local DICOM folder (walked recursively; every CT series in it),
- an IDC selection resolved offline with the bundled idc-index (collection,
  patients, studies, series, or a CSV of series UIDs),
- a DICOMweb store (or any ``dicom_io.stores`` URI) searched for CT series,
- CT volume files (NIfTI, NRRD, MHA): one file, a folder of them (not walked: a dataset's masks often sit
  in subfolders beside its CTs; list nested files in a CSV), a CSV with a ``path`` column (relative to the
  CSV), or every subject's image of a BoneHub-Dataset folder. Each is made a DICOM CT series in the cache
  (``dicom_io.volume_ct``) and becomes a local ref to it, with the file's path relative to its input root.

An unknown or missing series is an input error naming it, before the job starts. A volume file that
cannot be used fails alone: ``volume_series`` returns its one-line error beside the other volumes' refs.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from dicom_io.bonehub_layout import find_subjects
from dicom_io.ct_series import list_series
from dicom_io.errors import SeriesSelectionError
from dicom_io.volume_ct import VolumeInput, derive_ct
from dicom_io.volume_files import is_volume_file
from labels.errors import BoneHubInputError
from results.series_ref import IDC, LOCAL, STORE, SeriesRef

log = logging.getLogger("bonehub.inputs")


def local_series(folder: str | os.PathLike, series_uids: Iterable[str] | None = None) -> list[SeriesRef]:
    """Every CT series under ``folder`` (or only ``series_uids``, each of which must be there).

    A series with any CT slice counts: one with a slice of another modality then fails when it is read,
    naming that slice, instead of vanishing from the run.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SeriesSelectionError(f"input folder {root} does not exist")
    found = {s.series_uid: s for s in list_series(root) if "CT" in s.modality.split("/") and s.series_uid}
    wanted = list(dict.fromkeys(series_uids)) if series_uids is not None else sorted(found)
    missing = [uid for uid in wanted if uid not in found]
    if missing:
        raise SeriesSelectionError(f"{len(missing)} requested series not found as CT in {root}: {', '.join(missing)}")
    if not wanted:
        raise SeriesSelectionError(f"no CT series found in {root}")
    refs = []
    for uid in wanted:
        if not found[uid].study_uid:
            raise SeriesSelectionError(f"series {uid} in {root}: files disagree on (or lack) StudyInstanceUID")
        refs.append(SeriesRef(uid, found[uid].study_uid, LOCAL, str(root.resolve()), found[uid].n_images))
    return refs


def idc_series(
    *,
    collection_id: str | None = None,
    patient_ids: Sequence[str] | None = None,
    study_uids: Sequence[str] | None = None,
    series_uids: Sequence[str] | None = None,
) -> list[SeriesRef]:
    """CT series selected from the bundled IDC index (offline); unknown UIDs raise, naming them."""
    from dicom_io.idc import resolve

    return [
        SeriesRef(s.series_uid, s.study_uid, IDC, s.series_aws_url, s.instance_count)
        for s in resolve(collection_id=collection_id, patient_ids=patient_ids, study_uids=study_uids,
                         series_uids=series_uids)
    ]


def store_series(store_uri: str, *, study_uids: Sequence[str] | None = None,
                 series_uids: Sequence[str] | None = None) -> list[SeriesRef]:
    """CT series in a DICOMweb/GCS/local store (a QIDO search for DICOMweb), optionally within studies."""
    from dicom_io.stores import open_store

    store = open_store(store_uri)
    instances = []
    for study in study_uids or [None]:
        instances += store.list_instances(modality="CT", study_uid=study)
    counts = Counter((ref.study_uid, ref.series_uid) for ref in instances)
    refs = [SeriesRef(series, study, STORE, store.uri, n) for (study, series), n in sorted(counts.items())]
    if series_uids is not None:
        by_uid = {ref.series_uid: ref for ref in refs}
        missing = [uid for uid in series_uids if uid not in by_uid]
        if missing:
            raise SeriesSelectionError(f"{len(missing)} requested series not found as CT in {store.uri}: {', '.join(missing)}")
        refs = [by_uid[uid] for uid in dict.fromkeys(series_uids)]
    if not refs:
        raise SeriesSelectionError(f"no CT series found in {store.uri}")
    return refs


def volume_inputs(path: str | os.PathLike) -> list[VolumeInput]:
    """The volume files ``path`` names: itself (a file), the volume files in it (a folder, not walked), or the
    rows of its ``path`` column (a ``.csv``); a listed file that is missing fails alone when converted."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_volume_file(p))
        if not files:
            raise SeriesSelectionError(f"no CT volume files (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd) in {path}")
        return [VolumeInput(p, p.name) for p in files]
    if path.suffix.lower() == ".csv":
        return _csv_volumes(path)
    if not path.exists():
        raise SeriesSelectionError(f"volume input {path} does not exist")
    return [VolumeInput(path, path.name)]


def bonehub_inputs(root: str | os.PathLike) -> list[VolumeInput]:
    """Every subject's image in a BoneHub-Dataset folder (``dicom_io.bonehub_layout``), with its records."""
    root = Path(root)
    subjects = find_subjects(root)
    return [VolumeInput(s.image, s.image.relative_to(root).as_posix(), s) for s in subjects]


def volume_series(items: Sequence[VolumeInput], cache_dir: str | os.PathLike) -> tuple[list[SeriesRef], list[str]]:
    """A local ref to each volume's DICOM CT series (made once in ``cache_dir``), and one line per volume that
    could not be used. The same volume listed twice (same content and subject) is one series."""
    refs: dict[str, SeriesRef] = {}
    errors = []
    for item in items:
        try:
            ct = derive_ct(item, cache_dir)
        except (BoneHubInputError, OSError) as error:
            errors.append(" ".join(str(error).split()))
            continue
        if ct.series_uid in refs:
            log.warning("series %s: listed twice (same volume and subject); made once", ct.series_uid)
            continue
        refs[ct.series_uid] = SeriesRef(ct.series_uid, ct.study_uid, LOCAL, str(ct.folder.resolve()), ct.instances,
                                        source_path=item.source_path)
    return list(refs.values()), errors


def _csv_volumes(path: Path) -> list[VolumeInput]:
    """The ``path`` column of a CSV, each relative to the CSV's folder unless absolute; blank rows skipped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise SeriesSelectionError(f"{path}: no 'path' column (columns: {reader.fieldnames})")
            listed = [row["path"].strip() for row in reader if (row.get("path") or "").strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SeriesSelectionError(f"{path}: cannot read the volume list ({error})") from None
    if not listed:
        raise SeriesSelectionError(f"{path}: no volume paths in its 'path' column")
    return [VolumeInput(path.parent / value, Path(value).as_posix()) for value in listed]
