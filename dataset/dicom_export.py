"""``--format dicom``: per series one final SEG and one QC SR, ready to publish as an analysis result.

``STUDY_UID/SERIES_UID/seg.dcm`` holds the trusted bones (BINARY by default: the
type dciodvfy and dcmqi check; LABELMAP on request). Each segment keeps the
provenance it has in the head SEG (AUTOMATIC with the consensus as algorithm, or
SEMIAUTOMATIC / MANUAL with the reviewer's tool), says its provenance state and
reviewer in Segment Description, and records the state's BoneHub status in its
Algorithm Parameters (``dicom_io.bonehub_provenance``). The SEG references the CT
(Referenced Series, per-frame derivation) and, in Referenced Instance Sequence,
every SEG it was made from: the sources' SEGs, the consensus and each corrected
SEG. ``qc_sr.dcm`` is the series' QC SR again (``review.revision``): every structure
with its state's status (accept = automatic_accepted, review = automatic_failed,
accepted / corrected / rejected / missing = the reviewer's states), the exported
ones referencing their segment of the final SEG, the others with no segment; the
head SR is its predecessor.

UIDs derive from the inputs (head SEG and SR, SEG type, each exported bone's state
and reviewer) and the content dates are the head SEG's and SR's, so a rerun writes
the same bytes and a new decision gives the series new UIDs.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes

from dataset.context import ExportContext
from dataset.final_labels import SeriesFinal
from dicom_io.bonehub_provenance import stamp_statuses
from dicom_io.provenance import SegmentationSource, derived_uid
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import SOFTWARE_VERSION, SegType, write_seg
from dicom_io.segment_codes import resolve_segment
from dicom_io.stores import open_store
from labels.schema import default_schema
from review.revision import revised_results, revised_sr
from review.state import corrections, qc_tables

EXPORT_NAME = "BoneHub curated export"
SEG_SERIES_NUMBER = 500
SEG_FILE, SR_FILE = "seg.dcm", "qc_sr.dcm"
_SEG_CLASS = {"labelmap": "1.2.840.10008.5.1.4.1.1.66.7", "binary": "1.2.840.10008.5.1.4.1.1.66.4"}
# attributes highdicom fills with the time of writing; pinned to the head's content time
_TIMES = {"InstanceCreationDate": "DA", "InstanceCreationTime": "TM", "ContentDate": "DA", "ContentTime": "TM",
          "SeriesDate": "DA", "SeriesTime": "TM"}


class DicomExport:
    """Writes each series' final SEG and QC SR (see the module docstring)."""

    def __init__(self, context: ExportContext):
        self.context = context
        self.seg_type = SegType(str(context.options.get("seg_type", SegType.BINARY)))
        self.store = open_store(context.place.store_uri)
        self.table, _ = qc_tables(context.place)
        self.log = corrections(context.place)
        manifest = context.manifest
        self.seg_types = dict(zip(manifest["seg_sop_instance_uid"], manifest["seg_type"]))

    def add(self, final: SeriesFinal) -> None:
        if not final.labels.any():
            return  # only bones without voxels (missing) trusted: nothing to encode; the data card notes the series
        head = final.head
        head_seg = self.store.get(head.study_uid, head.series_uid, head.sop_uid)
        row = final.provenance.iloc[0]
        head_sr = self.store.get(final.study_uid, str(row["sr_series_uid"]), str(row["sr_sop_uid"]))
        seg = self._seg(final, head_seg)
        sr = self._sr(final, seg, head_seg, head_sr)
        folder = f"{final.study_uid}/{final.series_uid}"
        self.context.files.put_bytes(f"{folder}/{SEG_FILE}", _encoded(seg))
        self.context.files.put_bytes(f"{folder}/{SR_FILE}", _encoded(sr))

    def finish(self, exported: list[str]) -> None:
        """Nothing export-wide: each series' SEG and SR stand alone."""

    def _seg(self, final: SeriesFinal, head_seg: Dataset):
        schema = default_schema()
        present = [schema[int(v)].name for v in np.unique(final.labels) if v]
        rows = final.provenance.set_index("structure")
        key = json.dumps([final.head.sop_uid, str(self.seg_type),
                          [(name, final.states[name], str(rows.at[name, "reviewer"])) for name in present]])
        sources = _segment_sources(head_seg)
        seg = write_seg(final.labels, final.ct, SegmentationSource(EXPORT_NAME, SOFTWARE_VERSION), seg_type=self.seg_type,
                        series_number=SEG_SERIES_NUMBER, segment_sources=sources,
                        uids=(derived_uid(key, "dataset seg series"), derived_uid(key, "dataset seg instance")),
                        content_creator=head_seg.get("ContentCreatorName") or None)
        seg.SeriesDescription = EXPORT_NAME
        seg.ContentLabel = "CURATED"
        for item in seg.SegmentSequence:
            name = resolve_segment(item, schema).schema_name
            if name is None:
                continue  # a LABELMAP SEG's background segment
            reviewer = str(rows.at[name, "reviewer"])
            item.SegmentDescription = (final.states[name] + (f" by {reviewer}" if reviewer else ""))[:64]
        stamp_statuses(seg, {name: [final.statuses[name]] for name in present}, schema)
        head_sr = str(rows["sr_sop_uid"].iloc[0])  # the SR is the export SR's predecessor, not a source of the SEG
        seg.ReferencedInstanceSequence = DicomSequence(
            [_instance_reference(self._seg_class(ref.sop_uid, head_seg), ref.sop_uid)
             for ref in final.references if ref.sop_uid != head_sr])
        _pin(seg, head_seg, key)
        return seg

    def _sr(self, final: SeriesFinal, seg, head_seg: Dataset, head_sr: Dataset):
        schema = default_schema()
        corrected_out = {name for name, state in final.states.items() if name not in final.trusted}
        corrected_out &= set(self.log.loc[(self.log["series_uid"] == final.series_uid)
                                          & (self.log["verdict"] == "corrected"), "bone"])
        # a corrected bone left out still reports its corrected volume: measured on the head, not the export
        volumes = read_seg(head_seg, final.ct, strict=True).volume.array if corrected_out else final.labels
        results = revised_results(self.table, self.log, final.series_uid, final.study_uid, volumes,
                                  final.ct.volume.voxel_volume / 1000.0)
        present = [int(v) for v in np.unique(final.labels) if v]
        numbers = {schema_id: number for number, schema_id in enumerate(present, start=1)}
        results = [replace(r, consensus_segment=numbers.get(schema[r.bone].id, 0)) for r in results]
        sr = revised_sr(results, seg, final.ct, head_sr, ("dataset export", str(seg.SOPInstanceUID)))
        _pin(sr, head_sr, str(seg.SOPInstanceUID))
        return sr

    def _seg_class(self, sop_uid: str, head_seg: Dataset) -> str:
        """The SOP class of a SEG the final one was made from: a source's by its manifest row, else the head's type."""
        kind = self.seg_types.get(sop_uid)
        return _SEG_CLASS[kind] if kind in _SEG_CLASS else str(head_seg.SOPClassUID)


def _segment_sources(head_seg: Dataset) -> dict[str, SegmentationSource]:
    """Each structure's provenance in the head SEG: algorithm name, version, augmentation and type."""
    schema = default_schema()
    sources = {}
    for item in head_seg.SegmentSequence:
        name = resolve_segment(item, schema).schema_name
        algorithm = (item.get("SegmentationAlgorithmIdentificationSequence") or [Dataset()])[0]
        parameters = dict(p.split("=", 1) for p in str(algorithm.get("AlgorithmParameters", "")).split(",") if "=" in p)
        if name is not None:
            sources[name] = SegmentationSource(str(algorithm.get("AlgorithmName", "unspecified")),
                                               str(algorithm.get("AlgorithmVersion", "unspecified")),
                                               parameters.get("augmentation", "none"),
                                               str(item.get("SegmentAlgorithmType", "AUTOMATIC")))
    return sources


def _instance_reference(sop_class: str, sop_uid: str) -> Dataset:
    """One SEG the final SEG was made from (General Reference module, Referenced Instance Sequence)."""
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    purpose = Dataset()
    code = codes.DCM.SourceImageForImageProcessingOperation
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = code.value, code.scheme_designator, code.meaning
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    return item


def _pin(ds: Dataset, like: Dataset, key: str) -> None:
    """Replace what highdicom takes from the clock or a random source by the head's content time and derived UIDs."""
    date, time = str(like.get("ContentDate", "")), str(like.get("ContentTime", ""))
    for keyword, vr in _TIMES.items():
        if keyword in ds:
            setattr(ds, keyword, date if vr == "DA" else time)
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time
    organization = derived_uid(key, "dimension organization")
    for sequence in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in ds.get(sequence, []):
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = organization


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
