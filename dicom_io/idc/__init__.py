"""Select CT series in NCI Imaging Data Commons (IDC) and download them with s5cmd.

Selection (``selection``) reads the series index that ships inside the ``idc-index-data`` package,
so it works offline and never needs an IDC account. Downloads (``download``) call s5cmd on the
series' public bucket URL and check that every instance the index counts arrived. ``series`` holds
``IdcSeries``, what one carries to the other.

Only UIDs, collection ids and bucket URLs leave this package; patient data in
the index (age, sex, dates, PatientID) is never returned or logged.
"""

from dicom_io.idc.download import IdcDownloadError, default_endpoint_url, download_series, s5cmd_path
from dicom_io.idc.selection import (
    IdcSelectionError,
    analysis_result_ids,
    analysis_result_series,
    index_parquet_path,
    index_version,
    read_uid_csv,
    resolve,
)
from dicom_io.idc.series import IdcSeries

__all__ = [
    "IdcDownloadError",
    "IdcSelectionError",
    "IdcSeries",
    "analysis_result_ids",
    "analysis_result_series",
    "default_endpoint_url",
    "download_series",
    "index_parquet_path",
    "index_version",
    "read_uid_csv",
    "resolve",
    "s5cmd_path",
]
