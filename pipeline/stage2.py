"""Stage 2 as plain functions: which SEGs make up each series' QC, and the QC of one series.

Stage 2 reads only what Stage 1 stored: the manifest says which SEGs exist for a
series, where they are and where the CT came from. ``qc_series`` fetches the CT,
decodes every SEG onto its grid, compares them (``qc.assess``), and stores a
consensus SEG and a QC SR next to the SEGs. A SEG that cannot be used (another
series, unknown segment codes, unreadable) is left out and named; only a series
without any usable SEG fails. No model runs here; the Beam job in ``qc_job`` only
wraps these functions.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from dicom_io.provenance import SegmentationSource
from dicom_io.stores import Store
from pipeline.inputs import SeriesRef, fetch_series
from pipeline.manifest import EXISTS, WRITTEN
from qc.assess import SeriesQC, assess_series
from qc.results import REVIEW, BoneResult, Member
from qc.score import QcSettings
from qc.snapshot import Snapshot, take_snapshot

log = logging.getLogger("bonehub.qc")

CONSENSUS_NAME = "BoneHub consensus"  # the consensus SEG's algorithm name; never read back as a member
DONE, FAILED = "done", "failed"
SNAPSHOT_MARGIN_MM = 15.0  # context around a bone in the report's pictures


@dataclass(frozen=True)
class StoredSeg:
    """One member's SEG as the manifest lists it."""

    member: Member
    series_uid: str  # the CT series it segments
    study_uid: str
    ct: SeriesRef | None  # where that CT came from (None: not recorded; the job must be told)


@dataclass(frozen=True)
class SeriesOutcome:
    """What QC of one series produced (or why it failed): small enough to travel between workers."""

    series_uid: str
    study_uid: str
    status: str  # done | failed
    error: str = ""
    skipped: tuple[str, ...] = ()  # "member: reason" for every SEG left out
    results: tuple[BoneResult, ...] = ()
    snapshots: tuple[Snapshot, ...] = ()
    consensus_series_uid: str = ""
    consensus_sop_uid: str = ""
    sr_series_uid: str = ""
    sr_sop_uid: str = ""
    seconds: float = 0.0
    finished_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def row(self) -> dict[str, object]:
        """One row of the per-series QC table."""
        return {
            "series_uid": self.series_uid, "study_uid": self.study_uid, "status": self.status, "error": self.error,
            "skipped": ";".join(self.skipped), "structures": len(self.results),
            "review": sum(r.status == REVIEW for r in self.results), "consensus_series_uid": self.consensus_series_uid,
            "consensus_sop_uid": self.consensus_sop_uid, "sr_series_uid": self.sr_series_uid, "sr_sop_uid": self.sr_sop_uid, "seconds": round(self.seconds, 3), "finished_at": self.finished_at,
        }


def stored_segs(manifest: pd.DataFrame, series_uids: Iterable[str] | None = None) -> list[StoredSeg]:
    """The SEGs Stage 1 stored (status written or exists), optionally only of some series."""
    rows = manifest[manifest["status"].isin([WRITTEN, EXISTS]) & (manifest["source"] != CONSENSUS_NAME)]
    if series_uids is not None:
        rows = rows[rows["series_instance_uid"].isin(set(series_uids))]
    segs = []
    for row in rows.itertuples(index=False):
        member = Member(row.source, row.source_version, row.augmentation, row.seg_series_instance_uid, row.seg_sop_instance_uid)
        ct = SeriesRef(row.series_instance_uid, row.study_instance_uid, row.ct_kind or "local", row.ct_location,
                       int(row.ct_instances)) if row.ct_location else None
        segs.append(StoredSeg(member, row.series_instance_uid, row.study_instance_uid, ct))
    return segs


def qc_series(series_uid: str, segs: Sequence[StoredSeg], store: Store, settings: QcSettings, cache_dir: str, *,
              ct_override: SeriesRef | None = None, idc_endpoint_url: str | None = None,
              snapshots: int = 3, consensus_seg_type: str = "labelmap") -> SeriesOutcome:
    """QC of one series from its stored SEGs; every failure is an outcome naming the step, never an exception."""
    started = time.perf_counter()
    study_uid = segs[0].study_uid

    def failure(step: str, error: BaseException | str) -> SeriesOutcome:
        reason = " ".join(f"{step}: {error if isinstance(error, str) else f'{type(error).__name__}: {error}'}".split())
        log.warning("series %s: QC failed: %s", series_uid, reason)
        return SeriesOutcome(series_uid, study_uid, FAILED, reason, seconds=time.perf_counter() - started)

    try:
        ct = read_stored_ct(series_uid, segs, cache_dir, ct_override=ct_override, idc_endpoint_url=idc_endpoint_url)
    except Exception as error:
        return failure("read CT", error)
    members, label_maps, skipped = decode_members(segs, ct, store)
    if not members:
        return failure("read SEGs", "no usable SEG: " + "; ".join(skipped))
    try:
        assessed = assess_series(series_uid, study_uid, members, label_maps, ct.volume.affine, settings)
    except Exception as error:
        return failure("assess", error)
    try:
        stored = _store_consensus_and_sr(assessed, ct, store, settings, consensus_seg_type)
    except Exception as error:
        return failure("store consensus and SR", error)
    pictures = _snapshots(assessed, ct, snapshots)
    seconds = time.perf_counter() - started
    review = sum(r.status == REVIEW for r in assessed.results)
    log.info("series %s: %d structures, %d to review (%.1f s)", series_uid, len(assessed.results), review, seconds)
    return SeriesOutcome(series_uid, study_uid, DONE, "", tuple(skipped), tuple(assessed.results), tuple(pictures),
                         *stored, seconds=seconds)


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
            label_maps.append(read_seg(dataset, ct, strict=True).volume.array)
            members.append(seg.member)
        except Exception as error:
            reason = " ".join(f"{seg.member.name} (SEG {seg.member.seg_sop_uid}): {type(error).__name__}: {error}".split())
            log.warning("series %s: left out %s", ct.series_instance_uid, reason)
            skipped.append(reason)
    return members, label_maps, skipped


def _store_consensus_and_sr(assessed: SeriesQC, ct, store: Store, settings: QcSettings,
                            seg_type: str) -> tuple[str, str, str, str]:
    """The consensus SEG and the QC SR that references it; nothing when no structure was found at all.

    ``seg_type`` "binary" for readers that follow SR references only to BINARY SEGs
    (3D Slicer's QuantitativeReporting; the 2022 dciodvfy does not know LABELMAP).
    """
    from dicom_io.seg_writer import SOFTWARE_VERSION, write_seg
    from dicom_io.sr_writer import write_qc_sr

    if not assessed.consensus.any():
        return "", "", "", ""
    source = SegmentationSource(CONSENSUS_NAME, SOFTWARE_VERSION)
    consensus = write_seg(assessed.consensus, ct, source, seg_type=seg_type, series_number=350)
    store.put(consensus)
    sr = write_qc_sr(assessed.results, consensus, ct.series_instance_uid, ct.study_instance_uid,
                     settings_text=settings.describe())
    store.put(sr)
    return (str(consensus.SeriesInstanceUID), str(consensus.SOPInstanceUID), str(sr.SeriesInstanceUID),
            str(sr.SOPInstanceUID))


def _snapshots(assessed: SeriesQC, ct, count: int) -> list[Snapshot]:
    """Pictures of the ``count`` lowest-scoring structures under review, cut from their crop boxes."""
    worst = sorted((r for r in assessed.results if r.status == REVIEW), key=lambda r: r.score)[:count]
    pictures = []
    margin = tuple(int(np.ceil(SNAPSHOT_MARGIN_MM / s)) for s in ct.volume.spacing)
    for result in worst:
        box, masks = assessed.masks(result.bone, grow=(0, *margin[1:]))
        picture = take_snapshot(ct.volume.array[box], ct.volume.spacing, masks, result, margin_mm=SNAPSHOT_MARGIN_MM)
        if picture is not None:
            row, col = picture.crop_origin
            pictures.append(replace(picture, slice_index=picture.slice_index + box[0].start,
                                    crop_origin=(row + box[1].start, col + box[2].start)))
    return pictures
