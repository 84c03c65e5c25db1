"""Select CT series (and analysis results) in the IDC series index bundled with ``idc-index-data``, offline.

We query that parquet file with duckdb ourselves instead of going through ``idc_index.IDCClient``:
the client takes ~10 s to start and its ``sql_query`` 8-26 s per call, a direct duckdb query
~0.5-1 s. Nothing that selects nothing passes silently: every value that matched no series is named.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from dicom_io.errors import SeriesSelectionError
from dicom_io.idc.series import IdcSeries
from dicom_io.uids import validate_uid

_UID_COLUMN = "SeriesInstanceUID"


class IdcSelectionError(SeriesSelectionError):
    """An IDC selection that matched nothing, or named UIDs the index does not hold."""


def index_parquet_path() -> Path:
    """The series index parquet bundled with ``idc-index-data`` (the file IDCClient loads)."""
    import idc_index_data

    path = idc_index_data.IDC_INDEX_PARQUET_FILEPATH
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"idc-index-data {idc_index_data.__version__} has no idc_index.parquet")
    return Path(path)


def index_version() -> str:
    """The ``idc-index-data`` version (its major number is the IDC data release), for provenance."""
    import idc_index_data

    return str(idc_index_data.__version__)


def resolve(
    *,
    collection_id: str | None = None,
    patient_ids: Iterable[str] | None = None,
    study_uids: Iterable[str] | None = None,
    series_uids: Iterable[str] | None = None,
    modality: str | None = "CT",
) -> list[IdcSeries]:
    """Look up series in the bundled IDC index, offline; the given criteria are ANDed.

    At least one of ``collection_id``, ``patient_ids``, ``study_uids`` or
    ``series_uids`` is required, so an empty call cannot select all of IDC.
    ``modality=None`` accepts any modality.

    Nothing is silently dropped: a requested series UID that the index lacks,
    one that fails the other criteria (e.g. is not CT), and a collection,
    patient or study UID that selects no series raise
    :class:`IdcSelectionError` listing every such value. Results follow the
    order of ``series_uids`` when given, else (study UID, series UID) order.
    All values are bound as query parameters; UIDs are validated first.
    """
    series_list = _unique(series_uids, "SeriesInstanceUID")
    study_list = _unique(study_uids, "StudyInstanceUID")
    patient_list = _unique(patient_ids, "PatientID", uid=False)
    if collection_id is not None and (not isinstance(collection_id, str) or not collection_id):
        raise ValueError(f"collection_id must be a non-empty string, got {collection_id!r}")
    if collection_id is None and not (series_list or study_list or patient_list):
        raise ValueError("resolve() needs collection_id, patient_ids, study_uids or series_uids")

    filters: list[str] = []
    params: dict[str, object] = {"index": str(index_parquet_path())}
    if collection_id is not None:
        filters.append("collection_id = $collection")
        params["collection"] = collection_id
    for name, column, values in (
        ("patients", "PatientID", patient_list),
        ("studies", "StudyInstanceUID", study_list),
        ("series", "SeriesInstanceUID", series_list),
    ):
        if values is not None:
            filters.append(f"{column} IN (SELECT UNNEST(${name}))")
            params[name] = values
    # With explicit series UIDs the modality is checked after the query, so a
    # requested series of another modality is reported as such, not as "not found".
    if modality is not None and series_list is None:
        filters.append("Modality = $modality")
        params["modality"] = modality
    query = (
        "SELECT SeriesInstanceUID, StudyInstanceUID, PatientID, collection_id, Modality, "
        "instanceCount, series_aws_url, series_size_MB FROM read_parquet($index) WHERE "
        + " AND ".join(filters)
    )
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(query, params).fetchall()

    problems: list[str] = []
    if series_list is not None:
        found = {row[0] for row in rows}
        missing = [uid for uid in series_list if uid not in found]
        if missing:
            problems.append(f"{len(missing)} series UID(s) not in the index or not matching the other criteria: "
                            + ", ".join(missing))
    if modality is not None:
        other = [(row[0], row[4]) for row in rows if row[4] != modality]
        if series_list is not None and other:
            problems.append(f"{len(other)} requested series are not {modality}: "
                            + ", ".join(f"{uid} ({mod})" for uid, mod in other))
        rows = [row for row in rows if row[4] == modality]
    for label, position, values in (("patient", 2, patient_list), ("study", 1, study_list)):
        if values is not None:
            hit = {row[position] for row in rows}
            empty = [value for value in values if value not in hit]
            if empty:
                # Patient IDs are named by count only: they are not UIDs.
                named = ", ".join(empty) if label == "study" else f"{len(empty)} patient ID(s)"
                problems.append(f"no {modality or 'matching'} series for {label}: {named}")
    if collection_id is not None and not rows:
        problems.append(f"no {modality or 'matching'} series in collection {collection_id!r} for these criteria")
    if problems:
        raise IdcSelectionError(f"IDC index v{index_version()}: " + "; ".join(problems))

    result = [
        IdcSeries(
            series_uid=row[0],
            study_uid=row[1],
            collection_id=row[3],
            modality=row[4],
            instance_count=int(row[5]),
            series_aws_url=row[6],
            series_size_mb=float(row[7]),
        )
        for row in rows
    ]
    if series_list is not None:
        order = {uid: i for i, uid in enumerate(series_list)}
        result.sort(key=lambda s: order[s.series_uid])
    else:
        result.sort(key=lambda s: (s.study_uid, s.series_uid))
    return result


def analysis_result_ids() -> list[str]:
    """The analysis result ids the bundled index knows (e.g. ``totalsegmentator_ct_segmentations``), sorted."""
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT DISTINCT analysis_result_id FROM read_parquet($index) WHERE analysis_result_id IS NOT NULL",
            {"index": str(index_parquet_path())},
        ).fetchall()
    return sorted(row[0] for row in rows)


def analysis_result_series(study_uid: str, analysis_result_id: str, *, modality: str = "SEG") -> list[IdcSeries]:
    """The series of one analysis result in one study (empty when there are none), offline.

    The bundled index does not say which image series a SEG segments (that is
    in idc-index's ``seg_index``, which is fetched from the internet), so these
    are candidates: the caller checks each SEG's references after download.
    Sorted by series UID.
    """
    validate_uid(study_uid, "StudyInstanceUID of the analysis result query")
    if not isinstance(analysis_result_id, str) or not analysis_result_id:
        raise ValueError(f"analysis_result_id must be a non-empty string, got {analysis_result_id!r}")
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT SeriesInstanceUID, StudyInstanceUID, collection_id, Modality, instanceCount, series_aws_url, "
            "series_size_MB FROM read_parquet($index) WHERE StudyInstanceUID = $study "
            "AND analysis_result_id = $result AND Modality = $modality ORDER BY SeriesInstanceUID",
            {"index": str(index_parquet_path()), "study": study_uid, "result": analysis_result_id, "modality": modality},
        ).fetchall()
    return [IdcSeries(uid, study, collection, mod, int(count), url, float(size))
            for uid, study, collection, mod, count, url, size in rows]


def read_uid_csv(path: str | os.PathLike) -> list[str]:
    """The series UIDs in a CSV with a ``SeriesInstanceUID`` header column.

    Other columns are ignored, blank rows skipped, duplicates dropped (first
    occurrence kept, file order otherwise preserved). Each UID is validated and
    a bad one is reported with its line number, so a typo in a selection file
    fails before any query or download.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or _UID_COLUMN not in reader.fieldnames:
            raise ValueError(f"{path}: no {_UID_COLUMN} column (columns: {reader.fieldnames})")
        uids: dict[str, None] = {}
        for row in reader:
            value = row[_UID_COLUMN]
            if value is None or value == "":
                continue
            uids.setdefault(validate_uid(value, f"{_UID_COLUMN} in {path} line {reader.line_num}"))
    if not uids:
        raise ValueError(f"{path}: no series UIDs")
    return list(uids)


def _unique(values: Iterable[str] | None, what: str, *, uid: bool = True) -> list[str] | None:
    """Deduplicate a requested list in order; validate UIDs (a bare string is refused, not split into characters)."""
    if values is None:
        return None
    if isinstance(values, str):
        raise TypeError(f"{what}: pass a list of values, not a single string")
    out: dict[str, None] = {}
    for value in values:
        if uid:
            validate_uid(value, f"requested {what}")
        elif not isinstance(value, str) or not value:
            raise ValueError(f"requested {what} must be non-empty strings")
        out.setdefault(value)
    if not out:
        raise ValueError(f"requested {what} list is empty")
    return list(out)
