"""Per series the final label map an export writes: the head SEG, cut down to the bones the selection trusts.

The head SEG of a series is its latest correction, else QC's consensus
(``review.provenance``). Bones the selection does not trust are removed from the
label map and their voxels kept aside as ``untrusted`` (nnU-Net's ignore label);
nothing untrusted is silently kept. Bones in a state without voxels (``missing``,
``absent``) are only noted in ``states``. Every SEG and SR the map was made from
is named, so an export can reference them. Reads through review and results:
no SEG decoding or CT fetching of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset.inputs import with_collections
from dataset.selection import ExportSelection, select
from dicom_io.ct_series import CTSeries
from labels.errors import BoneHubInputError
from labels.schema import default_schema
from results.manifest import read_manifest
from results.members import stored_segs
from review.provenance import provenance_table
from review.series import SeriesLoader
from review.state import ReviewPlace, SegRef, corrections

log = logging.getLogger("bonehub.dataset")


@dataclass(frozen=True, eq=False)
class SeriesFinal:
    """One series' final labels on its CT grid, with every structure's provenance."""

    series_uid: str
    study_uid: str
    ct: CTSeries
    labels: np.ndarray  # schema ids on the CT grid, trusted bones only
    untrusted: np.ndarray  # bool: voxels of bones present in the head SEG but not trusted
    states: dict[str, str]  # every structure of the series (trusted or not) -> provenance state
    statuses: dict[str, int]  # ... -> BoneHub status code of that state
    sources: tuple[str, ...]  # SOP instance UIDs of every SEG and SR the labels were made from
    references: tuple[SegRef, ...] = ()  # the same instances by study, series and SOP UID (sources' order)
    trusted: frozenset[str] = frozenset()  # structures the selection trusts (those with voxels are in labels)
    provenance: pd.DataFrame = field(default_factory=pd.DataFrame)  # the series' provenance rows (+ collection)

    @property
    def head(self) -> SegRef:
        """The SEG the labels were cut from (latest correction, else the consensus)."""
        row = self.provenance.iloc[0]
        return SegRef(self.study_uid, str(row["seg_series_uid"]), str(row["seg_sop_uid"]))


def trusted_provenance(place: ReviewPlace, selection: ExportSelection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every provenance row of the series the filters keep, the rows of those the selection trusts), with collections."""
    provenance = with_collections(provenance_table(place.qc_dir), read_manifest(place.manifest_uri))
    if selection.series_uids is not None:
        provenance = provenance[provenance["series_uid"].isin(selection.series_uids)]
    if selection.collections is not None:
        provenance = provenance[provenance["collection"].isin(selection.collections)]
    return provenance, select(provenance, selection)


def final_series(place: ReviewPlace, selection: ExportSelection,
                 failures: list[tuple[str, str]] | None = None) -> Iterator[SeriesFinal]:
    """The final labels of every series with at least one trusted bone, by series UID.

    A series whose trusted bones all lack voxels (only ``missing`` ones) is still given: its labels are empty.
    With ``failures`` a series that cannot be read (its CT or head SEG) is appended there as (series UID,
    reason) and the others go on; without, the error is raised.
    """
    provenance, trusted = trusted_provenance(place, selection)
    loader = SeriesLoader(place)
    log_rows = corrections(place)
    manifest = read_manifest(place.manifest_uri)
    for series_uid in sorted(set(trusted["series_uid"])):
        rows = provenance[provenance["series_uid"] == series_uid].reset_index(drop=True)
        try:
            final = _final(loader, rows, frozenset(trusted.loc[trusted["series_uid"] == series_uid, "structure"]),
                           _references(rows, manifest, log_rows))
        except (BoneHubInputError, OSError) as error:
            if failures is None:
                raise
            failures.append((series_uid, f"{type(error).__name__}: {' '.join(str(error).split())}"))
            continue
        yield final


def _final(loader: SeriesLoader, rows: pd.DataFrame, trusted: frozenset[str], references: tuple[SegRef, ...]) -> SeriesFinal:
    first = rows.iloc[0]
    series_uid, study_uid = str(first["series_uid"]), str(first["study_uid"])
    ct = loader.ct(series_uid, study_uid)
    head = SegRef(study_uid, str(first["seg_series_uid"]), str(first["seg_sop_uid"]))
    labels = loader.label_map(head, ct)
    schema = default_schema()
    keep = np.isin(labels, np.array([schema[name].id for name in trusted], dtype=labels.dtype))
    untrusted = (labels > 0) & ~keep
    states = dict(zip(rows["structure"], rows["state"]))
    empty = sorted(name for name in trusted if not (labels == schema[name].id).any())
    if empty:
        log.info("series %s: trusted without voxels (%s): %s", series_uid,
                 ", ".join(sorted({states[name] for name in empty})), ", ".join(empty))
    return SeriesFinal(series_uid, study_uid, ct, np.where(keep, labels, 0).astype(labels.dtype), untrusted, states,
                       {name: int(code) for name, code in zip(rows["structure"], rows["bonehub_status"])},
                       tuple(ref.sop_uid for ref in references), references, trusted, rows)


def _references(rows: pd.DataFrame, manifest: pd.DataFrame, log_rows: pd.DataFrame) -> tuple[SegRef, ...]:
    """Every SEG and SR the series' final labels come from: the sources' SEGs, the consensus or corrected SEGs
    in the corrections log, the head SEG and the head SR; each once, in that order."""
    first = rows.iloc[0]
    series_uid, study_uid = str(first["series_uid"]), str(first["study_uid"])
    refs = [SegRef(seg.study_uid, seg.member.seg_series_uid, seg.member.seg_sop_uid)
            for seg in stored_segs(manifest, [series_uid])]
    mine = log_rows[log_rows["series_uid"] == series_uid]
    refs += [SegRef(study_uid, str(row.base_seg_series_uid), str(row.base_seg_sop_uid)) for row in mine.itertuples()
             if row.base_seg_sop_uid]
    refs += [SegRef(study_uid, str(row.seg_series_uid), str(row.seg_sop_uid)) for row in mine.itertuples()]
    refs += [SegRef(study_uid, str(first["seg_series_uid"]), str(first["seg_sop_uid"])),
             SegRef(study_uid, str(first["sr_series_uid"]), str(first["sr_sop_uid"]))]
    return tuple(dict.fromkeys(ref for ref in refs if ref.sop_uid and ref.series_uid))
