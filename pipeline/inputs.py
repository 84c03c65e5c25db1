"""Which CT series a Stage 1 run segments: ``SeriesRef``s from the command line's input options.

Three kinds of input make refs (``results.series_ref``, the contract the manifest records):

- a local DICOM folder (walked recursively; every CT series in it),
- an IDC selection resolved offline with the bundled idc-index (collection,
  patients, studies, series, or a CSV of series UIDs),
- a DICOMweb store (or any ``dicom_io.stores`` URI) searched for CT series.

An unknown or missing series is an input error naming it, before the job starts.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from dicom_io.ct_series import list_series
from dicom_io.errors import SeriesSelectionError
from results.series_ref import IDC, LOCAL, STORE, SeriesRef


def local_series(folder: str | os.PathLike, series_uids: Iterable[str] | None = None) -> list[SeriesRef]:
    """Every CT series under ``folder`` (or only ``series_uids``, each of which must be there)."""
    root = Path(folder)
    if not root.is_dir():
        raise SeriesSelectionError(f"input folder {root} does not exist")
    found = {s.series_uid: s for s in list_series(root) if s.modality == "CT" and s.series_uid}
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
