"""dcmqi's ``segimage2itkimage`` (the SEG reader 3D Slicer uses): the real binary inside the ``dcmqi`` package."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from labels.schema import default_schema

DCMQI_BIN = Path(__import__("dcmqi").__file__).parent / "bin"


def run_dcmqi(tool: str, *args: str) -> None:
    subprocess.run([str(DCMQI_BIN / tool), *args], check=True, capture_output=True, text=True)


def dcmqi_decode(seg_path: Path, out: Path, ct) -> tuple[np.ndarray, dict]:
    """dcmqi decodes ``seg_path`` -> schema-id array on the CT grid + its metadata (``meta.json``)."""
    out.mkdir()
    run_dcmqi("segimage2itkimage", "--inputDICOM", str(seg_path), "--outputDirectory", str(out), "--mergeSegments", "-t", "nrrd")
    meta = json.loads((out / "meta.json").read_text())
    (image,) = out.glob("*.nrrd")
    by_label_id = {s["labelID"]: default_schema()[s["TrackingIdentifier"]].id for s in meta["segmentAttributes"][0]}
    label_ids = hd.Volume.from_simpleitk(sitk.ReadImage(str(image))).match_geometry(ct.geometry).array
    lut = np.zeros(max(by_label_id) + 1, np.uint16)
    for label_id, schema_id in by_label_id.items():
        lut[label_id] = schema_id
    return lut[label_ids], meta
