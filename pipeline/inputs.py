"""Where CT series come from, and how one is fetched onto the worker's disk.

A ``SeriesRef`` is what travels through the job graph: UIDs and a location,
never pixels. Three kinds of input make refs:

- a local DICOM folder (walked recursively; every CT series in it),
- an IDC selection resolved offline with the bundled idc-index (collection,
  patients, studies, series, or a CSV of series UIDs),
- a DICOMweb store (or any ``dicom_io.stores`` URI) searched for CT series.

``fetch_series`` turns a ref into a local folder holding exactly that series:
the folder itself for local input, an s5cmd download checked instance by
instance for IDC, a retrieval into the cache for a store.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dicom_io.ct_series import list_series
from dicom_io.errors import SeriesSelectionError
from dicom_io.uids import validate_uid

log = logging.getLogger("bonehub.inputs")

LOCAL, IDC, STORE = "local", "idc", "store"


@dataclass(frozen=True)
class SeriesRef:
    """One CT series to segment: its UIDs and where to get it.

    ``location``: the folder (local), the ``s3://`` series URL (IDC) or the store URI (store).
    ``instance_count`` lets a download be checked; 0 when unknown.
    """

    series_uid: str
    study_uid: str
    kind: str
    location: str
    instance_count: int = 0

    def __post_init__(self) -> None:
        validate_uid(self.series_uid, "SeriesInstanceUID of an input series")
        validate_uid(self.study_uid, f"StudyInstanceUID of input series {self.series_uid}")
        if self.kind not in (LOCAL, IDC, STORE):
            raise ValueError(f"series {self.series_uid}: unknown input kind {self.kind!r}")


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


def fetch_series(ref: SeriesRef, cache_dir: str | os.PathLike, *, idc_endpoint_url: str | None = None) -> Path:
    """A local folder holding the series of ``ref`` (read it with ``read_ct_series(folder, ref.series_uid)``).

    Downloads land in ``cache_dir/<SeriesInstanceUID>/`` and are reused when complete.
    """
    if ref.kind == LOCAL:
        return Path(ref.location)
    started = time.perf_counter()
    if ref.kind == IDC:
        from dicom_io.idc import IdcSeries, download_series

        log.info("series %s: downloading %d instances from IDC", ref.series_uid, ref.instance_count)
        series = IdcSeries(series_uid=ref.series_uid, study_uid=ref.study_uid, collection_id="", modality="CT",
                           instance_count=ref.instance_count, series_aws_url=ref.location, series_size_mb=0.0)
        folder = download_series(series, cache_dir, endpoint_url=idc_endpoint_url)
    else:
        folder = _retrieve_from_store(ref, Path(cache_dir))
    log.info("series %s: fetched in %.1f s", ref.series_uid, time.perf_counter() - started)
    return folder


def _retrieve_from_store(ref: SeriesRef, cache_dir: Path) -> Path:
    """Copy every instance of the series out of its store; a complete earlier copy is reused."""
    from dicom_io.stores import open_store

    target = cache_dir / ref.series_uid
    if ref.instance_count and target.is_dir() and len(list(target.glob("*.dcm"))) == ref.instance_count:
        return target
    store = open_store(ref.location)
    instances = store.list_instances(series_uid=ref.series_uid, study_uid=ref.study_uid)
    if not instances:
        raise SeriesSelectionError(f"series {ref.series_uid} has no instances in {store.uri}")
    log.info("series %s: retrieving %d instances from %s", ref.series_uid, len(instances), store.uri)
    target.mkdir(parents=True, exist_ok=True)
    for instance in instances:
        path = target / f"{instance.sop_uid}.dcm"
        if not path.is_file():
            partial = path.with_name(f".{path.name}.partial")
            store.get(instance.study_uid, instance.series_uid, instance.sop_uid).save_as(partial, enforce_file_format=True)
            os.replace(partial, path)
    return target
