"""The quick-start job: ``bonehub run`` on the bundled sample CT with sources that work offline.

Sources: the sample's two real TotalSegmentator results (``total`` and ``total
--fast``, precomputed) and the weight-free CPU baseline; the baseline also runs
under one rotation, which is inverted back onto the source grid. ``bonehub
sample`` prints the equivalent ``bonehub run`` command line and runs it.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "ts_abdomen_3mm"
TOTALSEGMENTATOR_VERSION = "2 (reference output of its test suite)"
SAMPLE_AUGMENTATION = "rotate(0,0,5)"  # 5 degrees about the patient's head-foot axis


def _precomputed(table: Path, name: str) -> str:
    return (f"precomputed:{table}?label_set=totalsegmentator_total"
            f"&name={name}&version={TOTALSEGMENTATOR_VERSION}")


def sample_arguments(out: Path, sample: Path = SAMPLE) -> list[str]:
    """The ``bonehub run`` arguments of the quick-start job on the sample folder ``sample``, writing under ``out``."""
    return [
        "run", "--dicom-folder", str(sample / "ct"),
        "--source", _precomputed(sample / "totalsegmentator_total.csv", "TotalSegmentator total"),
        "--source", _precomputed(sample / "totalsegmentator_total_fast.csv", "TotalSegmentator total fast"),
        "--source", "baseline",
        "--augment", SAMPLE_AUGMENTATION,
        "--out", str(out / "seg"),
        "--manifest", str(out / "manifest.parquet"),
        "--qc-dir", str(out / "qc"),
        "--cache-dir", str(out / "cache"),
    ]
