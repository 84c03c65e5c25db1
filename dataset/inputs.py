"""Which collection each exported series came from, and its licence where known.

A CT downloaded from IDC (manifest ``ct_kind`` idc) belongs to the IDC collection
the bundled idc-index names for its series UID, with that collection's licence
and source DOI; a CT made from a BoneHub-Dataset image belongs to
``BoneHub-Dataset_NNN`` (its dataset id from the manifest); any other input has
no collection (empty). Offline: idc-index is a local table.
"""

from __future__ import annotations

import pandas as pd

from dicom_io.idc.selection import index_parquet_path, index_version
from results.series_ref import IDC

INPUT_COLUMNS = ["series_uid", "collection", "licence", "source_doi"]
BONEHUB_PREFIX = "BoneHub-Dataset_"


def series_inputs(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per CT series of the manifest (``INPUT_COLUMNS``), by series UID."""
    rows = manifest.drop_duplicates("series_instance_uid").sort_values("series_instance_uid")
    idc = _idc_rows(sorted(set(rows.loc[rows["ct_kind"] == IDC.value, "series_instance_uid"])))
    found = []
    for row in rows.itertuples(index=False):
        uid = row.series_instance_uid
        if uid in idc:
            found.append((uid, *idc[uid]))
        elif row.bonehub_dataset:
            found.append((uid, BONEHUB_PREFIX + str(row.bonehub_dataset), "", ""))
        else:
            found.append((uid, "", "", ""))
    return pd.DataFrame(found, columns=INPUT_COLUMNS)


def with_collections(provenance: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """``provenance`` with a ``collection`` column (empty for a series the manifest does not place)."""
    inputs = series_inputs(manifest).set_index("series_uid")["collection"]
    out = provenance.copy()
    out["collection"] = out["series_uid"].map(inputs).fillna("").astype(str)
    return out


def idc_version() -> str:
    """The idc-index version collections and licences were looked up in (the data card records it)."""
    return index_version()


def _idc_rows(series_uids: list[str]) -> dict[str, tuple[str, str, str]]:
    """series UID -> (collection id, licence, source DOI) of the series idc-index knows."""
    if not series_uids:
        return {}
    import duckdb

    query = ("SELECT SeriesInstanceUID, collection_id, license_short_name, source_DOI FROM read_parquet($index) "
             "WHERE SeriesInstanceUID IN (SELECT UNNEST($series))")
    with duckdb.connect() as con:
        rows = con.execute(query, {"index": str(index_parquet_path()), "series": series_uids}).fetchall()
    return {uid: (str(collection or ""), str(licence or ""), str(doi or "")) for uid, collection, licence, doi in rows}
