"""The hand-over between Stage 1's CPU and GPU steps: a series' CT and its label maps, by URI.

On Dataflow a CPU worker downloads and reads a series, and a GPU worker in another pool runs the
sources on it; they share no disk, and Beam elements should stay small. So the CPU step stages the
read CT as one object (``dicom_io.ct_archive``) under ``STAGING/<SeriesInstanceUID>/<fingerprint>/ct.npz``, the GPU
step writes each output's schema label map (and the statuses its source vouched) next to it as
``<SEG SOPInstanceUID>.labels.npz`` (compressed: mostly zeros), and the next CPU step encodes and
stores the SEG from the two. Elements carry only these URIs.

The staging area doubles as a checkpoint: a staged CT or label map that is there is used, not made
again, so a rerun after a failed store or a lost worker spends no GPU time on what was inferred.
Objects are keyed by the CT's content (``ct_fingerprint``: voxels and geometry), not by its UIDs alone:
a series re-exported with the same UIDs and other pixels gets a new folder, and what was staged for
its old pixels is removed (and logged), never used.
Label maps go once their SEG is stored, the CT once every output of its series is stored.
``STAGING`` is a local folder (DirectRunner) or a ``gs://`` prefix (Dataflow: the checkpoints bucket,
whose lifecycle rule removes anything a failed run left behind).
"""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np

from dicom_io.ct_archive import ct_from_bytes, ct_to_bytes
from dicom_io.ct_series import CTSeries
from dicom_io.uids import validate_uid
from models.segment import SchemaLabels
from results import blobs

CT_NAME = "ct.npz"
LABELS_SUFFIX = ".labels.npz"
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


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

    def series_root(self, series_uid: str) -> str:
        return blobs.join(self.root, validate_uid(series_uid, "SeriesInstanceUID of a staged CT"))

    def ct_uri(self, series_uid: str, fingerprint: str) -> str:
        """Where the CT of ``series_uid`` with these pixels and geometry (``ct_fingerprint``) is staged."""
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise ValueError(f"not a CT fingerprint: {fingerprint!r}")
        return blobs.join(self.series_root(series_uid), fingerprint, CT_NAME)

    def stale(self, series_uid: str, fingerprint: str) -> list[str]:
        """Staged objects of ``series_uid`` made from other pixels (a re-export, a corrected series, a reused UID)."""
        mine = blobs.join(self.series_root(series_uid), fingerprint)
        return [uri for uri in blobs.list_uris(self.series_root(series_uid)) if not uri.startswith(mine + "/")]


def labels_uri(ct_uri: str, seg_sop_uid: str) -> str:
    """Where an output's label map is staged: beside the CT it was made from, so other pixels never share it."""
    seg_sop_uid = validate_uid(seg_sop_uid, "SOPInstanceUID of a staged label map")
    return ct_uri.removesuffix(CT_NAME) + seg_sop_uid + LABELS_SUFFIX


def ct_fingerprint(ct: CTSeries) -> str:
    """16 hex digits of a digest of the CT's voxels and geometry: what makes a staged object reusable."""
    digest = hashlib.sha256(np.ascontiguousarray(ct.volume.array).tobytes())
    digest.update(np.asarray(ct.volume.affine, dtype=np.float64).tobytes())
    digest.update(ct.frame_of_reference_uid.encode())
    return digest.hexdigest()[:16]



def is_staged(uri: str) -> bool:
    return blobs.exists(uri)


def put_ct(uri: str, ct: CTSeries) -> None:
    blobs.write_bytes(uri, ct_to_bytes(ct))


def get_ct(uri: str) -> CTSeries:
    return ct_from_bytes(_read(uri), uri)


def put_labels(uri: str, result: SchemaLabels) -> None:
    """Stage one output: its schema map and the statuses its source vouched (as JSON text, no pickle)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=result.labels, statuses=np.array(json.dumps(dict(result.statuses))))
    blobs.write_bytes(uri, buffer.getvalue())


def get_labels(uri: str) -> SchemaLabels:
    with np.load(io.BytesIO(_read(uri)), allow_pickle=False) as archive:
        statuses = json.loads(str(archive["statuses"])) if "statuses" in archive else {}
        return SchemaLabels(archive["labels"], {name: tuple(codes) for name, codes in statuses.items()})


def discard(uri: str) -> None:
    blobs.delete(uri)


def _read(uri: str) -> bytes:
    data = blobs.read_bytes(uri)
    if data is None:
        raise StagingMissingError(f"{uri} is not staged (removed, or written by a run that failed before it)")
    return data
