"""The quick-start job on the bundled sample: what exists of the pipeline, end to end.

Reads the sample CT series, encodes its two real TotalSegmentator results as
SEGs in the bone schema, reads each SEG back and checks it equals what was
encoded, and prints what was written.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dicom_io.ct_series import read_ct_series
from dicom_io.label_images import read_label_image
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import write_seg
from labels.label_sets import load_label_set
from labels.schema import default_schema
from models.harmonize import harmonize_on_ct

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "ts_abdomen_3mm"
TOTALSEGMENTATOR_VERSION = "2 (reference output of its test suite)"
SAMPLE_SOURCES = {
    "seg_totalsegmentator_v2_full.nii.gz": SegmentationSource("TotalSegmentator total", TOTALSEGMENTATOR_VERSION),
    "seg_totalsegmentator_v2_fast.nii.gz": SegmentationSource("TotalSegmentator total fast", TOTALSEGMENTATOR_VERSION),
}


def run_sample(out: Path, sample: Path = SAMPLE) -> list[Path]:
    """Encode the sample's segmentations as LABELMAP SEGs under ``out/seg`` and verify the read-back."""
    schema = default_schema()
    ct = read_ct_series(sample / "ct")
    print(f"CT series {ct.series_instance_uid}: {len(ct.datasets)} slices, grid {ct.volume.spatial_shape}, spacing {tuple(round(s, 3) for s in ct.volume.spacing)} mm")
    label_set = load_label_set("totalsegmentator_total")
    written = []
    for file_name, source in SAMPLE_SOURCES.items():
        started = time.perf_counter()
        schema_map = harmonize_on_ct(read_label_image(sample / file_name), label_set, ct)
        seg = write_seg(schema_map, ct, source)
        path = out / "seg" / f"{seg.SeriesInstanceUID}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        seg.save_as(path)
        decoded = read_seg(path, ct)
        if not np.array_equal(decoded.volume.array, schema_map):
            raise RuntimeError(f"{path}: read-back differs from the encoded label map")
        bones = sorted(schema[int(v)].name for v in np.unique(schema_map) if v)
        print(
            f"{source.name}: {len(bones)} bones -> {path} ({path.stat().st_size / 1024:.0f} KiB, {time.perf_counter() - started:.2f} s, read back identical)\n"
            f"  {', '.join(bones)}"
        )
        written.append(path)
    return written
