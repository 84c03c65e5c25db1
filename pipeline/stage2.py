"""Stage 2 as plain functions: the QC of one series from what Stage 1 stored.

Stage 2 reads only what Stage 1 stored (``results.members``: the manifest's SEGs of
a series and the CT they were made on). ``qc_series`` fetches the CT, decodes every
SEG onto its grid, compares them (``qc.assess``), and stores a consensus SEG and a
QC SR next to the SEGs. A SEG that cannot be used (another series, unknown segment
codes, unreadable) is left out and named; only a series without any usable SEG
fails. No model runs here; the Beam job in ``qc_job`` only wraps these functions.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from dicom_io.provenance import SegmentationSource
from dicom_io.stores import Store
from qc.assess import SeriesQC, assess_series
from qc.results import REVIEW, BoneResult
from qc.score import QcSettings
from qc.snapshot import Snapshot, margin_voxels, take_snapshot
from results.members import CONSENSUS_NAME, StoredSeg, decode_members, read_stored_ct
from results.series_ref import SeriesRef

log = logging.getLogger("bonehub.qc")

DONE, FAILED = "done", "failed"


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
    margin = margin_voxels(ct.volume.spacing)
    for result in worst:
        box, masks = assessed.masks(result.bone, grow=(0, *margin[1:]))
        picture = take_snapshot(ct.volume.array[box], ct.volume.spacing, masks, result)
        if picture is not None:
            row, col = picture.crop_origin
            pictures.append(replace(picture, slice_index=picture.slice_index + box[0].start,
                                    crop_origin=(row + box[1].start, col + box[2].start)))
    return pictures
