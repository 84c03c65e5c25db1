"""Where a CT series came from, and how to fetch it again: the data contract the manifest records.

A ``SeriesRef`` is what travels through Stage 1's job graph and what the manifest
stores for each output (``ct_kind``, ``ct_location``, ``ct_instances``): UIDs and a
location, never pixels. Its kinds are a local DICOM folder, an IDC series (its
``s3://`` URL) and a DICOMweb/GCS/local store (``dicom_io.stores``); ``pipeline.inputs``
makes refs from the command line's input options (a CT volume file becomes a local folder
holding the DICOM series made from it, and the ref keeps the file's path as ``source_path``).

``fetch_series`` turns a ref into a local folder holding exactly that series:
the folder itself for local input, an s5cmd download checked instance by
instance for IDC, a retrieval into the cache for a store. Stage 1 fetches a
series to segment it; Stage 2 and review fetch it again to read the CT a stored
SEG was made on.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dicom_io.errors import SeriesSelectionError
from dicom_io.uids import validate_uid
from labels.coded_values import CodedValue
from labels.errors import BoneHubInputError

log = logging.getLogger("bonehub.inputs")


class SeriesKind(CodedValue):
    """Where a CT series comes from; stored as its text in the manifest (``ct_kind``)."""

    LOCAL = "local"  # a DICOM folder on this machine
    IDC = "idc"  # an IDC series, downloaded from its s3:// URL
    STORE = "store"  # a DICOMweb server or any dicom_io.stores URI


LOCAL, IDC, STORE = SeriesKind.LOCAL, SeriesKind.IDC, SeriesKind.STORE


@dataclass(frozen=True, slots=True)  # slots: a collection's 200,000 refs stay small
class SeriesRef:
    """One CT series to segment: its UIDs and where to get it.

    ``location``: the folder (local), the ``s3://`` series URL (IDC) or the store URI (store).
    ``instance_count`` lets a download be checked; 0 when unknown. ``source_path``: for a series made
    from a CT volume file (``dicom_io.volume_ct``), that file relative to its input root; else empty.
    """

    series_uid: str
    study_uid: str
    kind: SeriesKind  # given as a SeriesKind or its text; kept as the SeriesKind
    location: str
    instance_count: int = 0
    source_path: str = ""

    def __post_init__(self) -> None:
        validate_uid(self.series_uid, "SeriesInstanceUID of an input series")
        validate_uid(self.study_uid, f"StudyInstanceUID of input series {self.series_uid}")
        try:
            object.__setattr__(self, "kind", SeriesKind(self.kind))
        except BoneHubInputError as error:
            raise BoneHubInputError(f"series {self.series_uid}: {error}") from None


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
