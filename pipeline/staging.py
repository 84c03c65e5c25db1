"""The hand-over between Stage 1's CPU and GPU steps: a series' CT and its label maps, by URI.

On Dataflow a CPU worker downloads and reads a series, and a GPU worker in another pool runs the
sources on it; they share no disk, and Beam elements should stay small. So the CPU step stages the
read CT as one object (``dicom_io.ct_archive``) under ``STAGING/<SeriesInstanceUID>/ct.npz``, the GPU
step writes each output's schema label map next to it as ``<SEG SOPInstanceUID>.labels.npz``
(compressed: mostly zeros), and the next CPU step encodes and stores the SEG from the two. Elements
carry only these URIs.

The staging area doubles as a checkpoint: a staged CT or label map that is there is used, not made
again, so a rerun after a failed store or a lost worker spends no GPU time on what was inferred.
Label maps go once their SEG is stored, the CT once every output of its series is stored.
``STAGING`` is a local folder (DirectRunner) or a ``gs://`` prefix (Dataflow: the checkpoints bucket,
whose lifecycle rule removes anything a failed run left behind).
"""

from __future__ import annotations

import io

import numpy as np

from dicom_io.ct_archive import ct_from_bytes, ct_to_bytes
from dicom_io.ct_series import CTSeries
from dicom_io.uids import validate_uid
from results import blobs

CT_NAME = "ct.npz"
LABELS_SUFFIX = ".labels.npz"


class StagingMissingError(LookupError):
    """A staged object an earlier step should have written is not there."""


class Staging:
    """Where the staged objects of a run live: one root (a folder or ``gs://bucket/prefix``)."""

    def __init__(self, root: str):
        if not root:
            raise ValueError("the staging area needs a folder or gs:// prefix")
        self.root = root  # blobs.join drops a gs:// prefix's trailing "/"

    def __repr__(self) -> str:
        return f"Staging({self.root!r})"

    def ct_uri(self, series_uid: str) -> str:
        return blobs.join(self.root, validate_uid(series_uid, "SeriesInstanceUID of a staged CT"), CT_NAME)

    def labels_uri(self, series_uid: str, seg_sop_uid: str) -> str:
        seg_sop_uid = validate_uid(seg_sop_uid, "SOPInstanceUID of a staged label map")
        return blobs.join(self.root, validate_uid(series_uid, "SeriesInstanceUID of a staged CT"),
                          seg_sop_uid + LABELS_SUFFIX)



def is_staged(uri: str) -> bool:
    return blobs.exists(uri)


def put_ct(uri: str, ct: CTSeries) -> None:
    blobs.write_bytes(uri, ct_to_bytes(ct))


def get_ct(uri: str) -> CTSeries:
    return ct_from_bytes(_read(uri), uri)


def put_labels(uri: str, schema_map: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=schema_map)
    blobs.write_bytes(uri, buffer.getvalue())


def get_labels(uri: str) -> np.ndarray:
    with np.load(io.BytesIO(_read(uri)), allow_pickle=False) as archive:
        return archive["labels"]


def discard(uri: str) -> None:
    blobs.delete(uri)


def _read(uri: str) -> bytes:
    data = blobs.read_bytes(uri)
    if data is None:
        raise StagingMissingError(f"{uri} is not staged (removed, or written by a run that failed before it)")
    return data
