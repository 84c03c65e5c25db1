"""A read CT series as one self-contained object: what the GPU step gets instead of DICOM files.

Stage 1 on Dataflow downloads and reads a series on a CPU worker and hands it to the GPU step through
a bucket (``pipeline.staging``). The archive holds exactly a ``CTSeries``: the HU voxels, the affine,
and every slice's header as DICOM Part 10 bytes without Pixel Data (so precomputed sources, SEG
encoding and anything else that reads headers get the originals, private tags included). It is a
NumPy ``.npz`` read with ``allow_pickle=False``: loading it runs no code from the bucket. HU values
that are all whole numbers in int16 range are stored as int16, halving the bytes, and come back as
the float32 the reader gave.
"""

from __future__ import annotations

import io
import json
import zipfile

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from dicom_io.ct_series import CTSeries
from dicom_io.errors import DicomInputError

FORMAT = "bonehub-ct-archive/1"


def ct_to_bytes(ct: CTSeries) -> bytes:
    hu = ct.volume.array
    compact = hu.astype(np.int16)
    stored = compact if np.array_equal(compact, hu) else hu.astype(np.float32)
    headers = [_header_bytes(ds) for ds in ct.datasets]
    meta = {"format": FORMAT, "series_uid": ct.series_instance_uid, "study_uid": ct.study_instance_uid,
            "frame_of_reference_uid": ct.frame_of_reference_uid,
            "coordinate_system": ct.volume.coordinate_system.value}
    buffer = io.BytesIO()
    np.savez(buffer, hu=stored, affine=ct.volume.affine,
             headers=np.frombuffer(b"".join(headers), dtype=np.uint8),
             header_ends=np.cumsum([len(h) for h in headers], dtype=np.int64),
             meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return buffer.getvalue()


def ct_from_bytes(data: bytes, where: str = "archive") -> CTSeries:
    """The ``CTSeries`` of ``ct_to_bytes``; ``where`` names the archive in errors."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes())
            hu, affine = archive["hu"].astype(np.float32), archive["affine"]
            blob, ends = archive["headers"].tobytes(), archive["header_ends"]
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise DicomInputError(f"{where} is not a staged CT ({type(error).__name__}: {error})") from error
    if meta.get("format") != FORMAT:
        raise DicomInputError(f"{where} is {meta.get('format')!r}, not {FORMAT}")
    starts = [0, *ends[:-1]]
    datasets = tuple(pydicom.dcmread(io.BytesIO(blob[start:end])) for start, end in zip(starts, ends, strict=True))
    if len(datasets) != hu.shape[0]:
        raise DicomInputError(f"{where}: {len(datasets)} slice headers for {hu.shape[0]} slices")
    volume = hd.Volume(hu, affine, meta["coordinate_system"], frame_of_reference_uid=meta["frame_of_reference_uid"])
    return CTSeries(volume, datasets, meta["series_uid"], meta["study_uid"], meta["frame_of_reference_uid"])


def _header_bytes(ds: Dataset) -> bytes:
    """One slice header as Part 10 bytes, in its own transfer syntax (there are no pixels to re-encode)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
