"""A series' stored SEGs read back as QC members: Stage 2 compares them, review crops and pastes them.

The manifest says which SEGs Stage 1 stored for a series, where they are and
where the CT came from. ``stored_segs`` lists them (the consensus SEG QC stores
beside them is never a member), ``read_stored_ct`` fetches that CT again and
``decode_members`` puts every SEG onto its grid as a schema label map; a SEG that
cannot be used (another series, unknown segment codes, unreadable) is left out
and named, not raised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from dicom_io.stores import Store
from dicom_io.vocabulary import readable_vocabulary
from qc.results import Member
from results.manifest import EXISTS, WRITTEN
from results.series_ref import LOCAL, SeriesRef, fetch_series

log = logging.getLogger("bonehub.qc")

CONSENSUS_NAME = "BoneHub consensus"  # the consensus SEG's algorithm name; never read back as a member


@dataclass(frozen=True)
class StoredSeg:
    """One member's SEG as the manifest lists it."""

    member: Member
    series_uid: str  # the CT series it segments
    study_uid: str
    ct: SeriesRef | None  # where that CT came from (None: not recorded; the job must be told)


def stored_segs(manifest: pd.DataFrame, series_uids: Iterable[str] | None = None) -> list[StoredSeg]:
    """The SEGs Stage 1 stored (status written or exists), optionally only of some series."""
    rows = manifest[manifest["status"].isin([WRITTEN, EXISTS]) & (manifest["source"] != CONSENSUS_NAME)]
    if series_uids is not None:
        rows = rows[rows["series_instance_uid"].isin(set(series_uids))]
    segs = []
    for row in rows.itertuples(index=False):
        member = Member(row.source, row.source_version, row.augmentation, row.seg_series_instance_uid, row.seg_sop_instance_uid,
                        readable_vocabulary(row.vocabulary, f"manifest row of SEG {row.seg_sop_instance_uid}") if row.vocabulary else None)
        ct = SeriesRef(row.series_instance_uid, row.study_instance_uid, row.ct_kind or LOCAL, row.ct_location,
                       int(row.ct_instances)) if row.ct_location else None
        segs.append(StoredSeg(member, row.series_instance_uid, row.study_instance_uid, ct))
    return segs


def read_stored_ct(series_uid: str, segs: Sequence[StoredSeg], cache_dir: str, *, ct_override: SeriesRef | None = None,
                   idc_endpoint_url: str | None = None):
    """The CT series the SEGs segment, from where the manifest says it came (or ``ct_override``)."""
    from dicom_io.ct_series import read_ct_series
    from dicom_io.errors import SeriesSelectionError

    ref = ct_override or next((s.ct for s in segs if s.ct is not None), None)
    if ref is None:
        raise SeriesSelectionError(f"series {series_uid}: the manifest does not say where the CT came from; "
                                   "give its folder (--ct-folder)")
    return read_ct_series(fetch_series(ref, cache_dir, idc_endpoint_url=idc_endpoint_url), series_uid)


def decode_members(segs: Sequence[StoredSeg], ct, store: Store) -> tuple[list[Member], list[np.ndarray], list[str]]:
    """Each SEG as a schema label map on the CT grid; the ones that cannot be used are named with the reason."""
    from dicom_io.seg_reader import read_seg

    members, label_maps, skipped = [], [], []
    for seg in segs:
        try:
            dataset = store.get(seg.study_uid, seg.member.seg_series_uid, seg.member.seg_sop_uid)
            decoded = read_seg(dataset, ct, strict=True)
            label_maps.append(decoded.volume.array)
            # the SEG is the record of what its source can label; the manifest's copy serves SEGs that predate it
            members.append(replace(seg.member, vocabulary=decoded.vocabulary or seg.member.vocabulary))
        except Exception as error:
            reason = " ".join(f"{seg.member.name} (SEG {seg.member.seg_sop_uid}): {type(error).__name__}: {error}".split())
            log.warning("series %s: left out %s", ct.series_instance_uid, reason)
            skipped.append(reason)
    return members, label_maps, skipped
