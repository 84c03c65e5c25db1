"""Schema label map on the CT grid -> one DICOM SEG (LABELMAP by default, BINARY on request).

LABELMAP (Label Map Segmentation Storage, Supplement 243) stores one frame per
slice with segment numbers as pixel values: far smaller and faster than BINARY
for a whole skeleton. BINARY is kept for readers that do not know LABELMAP yet
(the 2022 dciodvfy, Slicer's QuantitativeReporting SR plugin).

Compression (``SegCompression``, the transfer syntax; never part of the UIDs) is
Deflated Explicit VR Little Endian by default: measured on the bench phantom's
skeleton (bench/README.md, seg_encoding) it is 6x smaller than RLE Lossless and
every reader that matters reads it voxel-exact (dcmqi, highdicom, pydicom, Orthanc
WADO-RS as stored and transcoded, OHIF; dicom_io/README.md); the deflated file is
written by dicom_io/seg_file.py (``save_dicom``). Its frame layout is built once per
series and extent (dicom_io/seg_template.py). RLE Lossless and uncompressed (BINARY's
default) stay selectable; empty frames are omitted whatever the compression. Not
JPEG-LS or JPEG 2000: dcmqi 1.5.7 (the SEG reader 3D Slicer uses) refuses both
("... uses lossy compression", "Cannot decompress").
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from importlib.metadata import version

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless

from labels.coded_values import CodedValue
from labels.slabs import present_values
from labels.schema import BoneSchema, default_schema
from dicom_io.ct_series import CTSeries
from dicom_io.errors import DicomInputError
from dicom_io.provenance import SegmentationSource, derived_uid, segmentation_uids
from dicom_io.seg_template import labelmap_seg, shareable
from dicom_io.segment_codes import private_scheme_item, segment_description
from dicom_io.vocabulary import PARAMETER, encode_vocabulary


class SegType(CodedValue):
    """The SEG types written; the text is part of an output's identity (its UIDs) and of the manifest."""

    LABELMAP = "labelmap"  # Label Map Segmentation Storage
    BINARY = "binary"  # one bit-packed frame per segment and slice


class SegCompression(CodedValue):
    """How a SEG's pixel data is stored (its transfer syntax); not part of an output's identity (its UIDs)."""

    DEFLATE = "deflate"  # Deflated Explicit VR Little Endian: the whole dataset deflated (zlib)
    RLE = "rle"  # RLE Lossless, frame by frame; LABELMAP only (not for 1-bit BINARY frames)
    NONE = "none"  # Explicit VR Little Endian


# BINARY stays uncompressed: it is for older readers, and the 2022 dciodvfy cannot read a deflated file.
DEFAULT_COMPRESSION = {SegType.LABELMAP: SegCompression.DEFLATE, SegType.BINARY: SegCompression.NONE}
MANUFACTURER = "BoneHub Segmentation"
SOFTWARE_VERSION = version("bonehub-segmentation")


class EmptySegmentationError(DicomInputError):
    """A label map with no structure in it: there is nothing to store."""


def write_seg(
    label_map: np.ndarray,
    ct: CTSeries,
    source: SegmentationSource,
    *,
    seg_type: SegType | str = SegType.LABELMAP,
    schema: BoneSchema | None = None,
    series_number: int = 300,
    segment_sources: Mapping[str, SegmentationSource] | None = None,
    uids: tuple[str, str] | None = None,
    content_creator: str | None = None,
    compression: SegCompression | str | None = None,
) -> hd.seg.Segmentation:
    """Encode a schema-id label map (same shape as ``ct.volume``) as a SEG that references ``ct``.

    One segment per schema structure present, numbered in schema-id order;
    UIDs derive from (CT series, source) so a rerun yields the same UIDs.
    A corrected SEG mixes provenance: ``segment_sources`` names, per structure,
    a source other than ``source`` (the reviewer's, SEMIAUTOMATIC or MANUAL),
    ``uids`` gives its own (series, instance) UIDs and ``content_creator`` the
    reviewer's name (ContentCreatorName). ``compression`` picks the transfer syntax
    (``SegCompression``; default ``DEFAULT_COMPRESSION`` of the type); a deflated SEG is
    deflated when it is written (``save_as``, ``dcmwrite``).
    """
    schema = schema or default_schema()
    if label_map.shape != ct.volume.spatial_shape:
        raise ValueError(f"label map shape {label_map.shape} is not the CT grid {ct.volume.spatial_shape} of series {ct.series_instance_uid}")
    present = present_values(label_map)
    present = present[present > 0]
    if present.size == 0:
        raise EmptySegmentationError(f"{source.describe()}: no structure in the label map for series {ct.series_instance_uid}")
    structures = [schema[int(v)] for v in present]  # raises on an id that is not in the schema

    lut = np.zeros(int(present.max()) + 1, dtype=np.uint8 if present.size < 256 else np.uint16)
    lut[present] = np.arange(1, present.size + 1)
    numbers = lut[np.ascontiguousarray(label_map)]  # C order: highdicom walks frames; Fortran order costs 5-10x
    seg_type = SegType(seg_type)  # raises on text that is not a SEG type
    compression = SegCompression(compression or DEFAULT_COMPRESSION[seg_type])
    if compression == SegCompression.RLE and seg_type == SegType.BINARY:
        raise DicomInputError(f"{source.describe()}: RLE compression is for LABELMAP SEGs only; a BINARY SEG takes deflate or none")
    series_uid, sop_uid = uids or segmentation_uids(ct.series_instance_uid, source, seg_type)
    sources = [(segment_sources or {}).get(s.name, source) for s in structures]
    descriptions = [segment_description(n, s, made_by, _algorithm(made_by), derived_uid(series_uid, s.name))
                    for n, (s, made_by) in enumerate(zip(structures, sources), start=1)]

    # highdicom takes the segment-number label map for both types and splits it per segment for BINARY.
    labelmap = seg_type == SegType.LABELMAP
    deflate = compression == SegCompression.DEFLATE
    build = partial(
        hd.seg.Segmentation,
        segmentation_type=hd.seg.SegmentationTypeValues.LABELMAP if labelmap else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=source.name[:64],
        software_versions=SOFTWARE_VERSION,
        device_serial_number="none",
        content_label="BONES",
        content_description=f"bones; augmentation: {source.augmentation}"[:64],
        content_creator_name=content_creator,
        series_description=source.describe(),
        transfer_syntax_uid=RLELossless if compression == SegCompression.RLE else ExplicitVRLittleEndian,
        omit_empty_frames=True,
        coding_schemes=[private_scheme_item()] if any(s.type.is_private for s in structures) else None,
    )
    pixels = ct.volume.with_array(numbers)
    if labelmap and deflate:  # the series' layout, built once and cut to this SEG's slices (dicom_io/seg_template.py)
        seg = labelmap_seg(ct, pixels, build)
    else:
        seg = shareable(build(list(ct.datasets), pixels))
    if deflate:  # highdicom does not take the deflated syntax; pydicom deflates on writing when the file meta says so
        seg.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return seg


def _algorithm(source: SegmentationSource) -> hd.AlgorithmIdentificationSequence | None:
    """The algorithm behind a segment; a MANUAL segment has none (PS3.3 C.8.20.4, Type 1C)."""
    if source.algorithm_type == "MANUAL":
        return None
    return hd.AlgorithmIdentificationSequence(
        name=source.name[:64], family=codes.cid7162.ArtificialIntelligence, version=source.version[:64],
        parameters={"augmentation": source.augmentation} | ({PARAMETER: encode_vocabulary(source.vocabulary)} if source.vocabulary else {}),
    )
