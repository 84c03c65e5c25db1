"""Write ``.seg.nrrd`` files the way 3D Slicer and BoneHub-Dataset do, independently of ``dicom_io``'s writer.

Layers: one 3-D layer, or several stacked on Slicer's ``list`` axis (4-D NRRD,
``kinds: list domain domain domain``), as Slicer saves overlapping segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk


@dataclass
class Seg:
    """One segment: header fields; ``tags`` None writes no Tags key, ``label_value``/``layer`` None omit the key."""

    name: str
    label_value: int | None
    layer: int | None = 0
    tags: Mapping[str, str] | None = None
    extra: dict[str, str] = field(default_factory=dict)


def bonehub_tags(name: str, value: int, status: int | str) -> dict[str, str]:
    return {"BoneHubLabel": name, "BoneHubValue": str(value), "BoneHubStatus": str(status)}


def write_slicer_file(path: Path, layers: Sequence[np.ndarray], segments: Sequence[Seg], *,
                      spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=None) -> Path:
    """Layers are (z, y, x) arrays of label values; several layers give a 4-D file with a list axis."""
    if len(layers) == 1:
        image = sitk.GetImageFromArray(np.asarray(layers[0], np.uint8))
    else:
        image = sitk.GetImageFromArray(np.stack([np.asarray(a, np.uint8) for a in layers], axis=-1), isVector=True)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    for index, segment in enumerate(segments):
        fields = {"ID": f"Segment_{index + 1}", "Name": segment.name, "Color": "0.5 0.5 0.5"}
        if segment.label_value is not None:
            fields["LabelValue"] = str(segment.label_value)
        if segment.layer is not None:
            fields["Layer"] = str(segment.layer)
        if segment.tags is not None:
            fields["Tags"] = "".join(f"{k}:{v}|" for k, v in segment.tags.items())
        for key, value in {**fields, **segment.extra}.items():
            image.SetMetaData(f"Segment{index}_{key}", value)
    image.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    image.SetMetaData("Segmentation_ContainedRepresentationNames", "Binary labelmap|")
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    if len(layers) > 1:  # ITK writes the component axis as "vector"; Slicer writes "list"
        data = path.read_bytes()
        header, _, body = data.partition(b"\n\n")
        path.write_bytes(header.replace(b"kinds: vector ", b"kinds: list ") + b"\n\n" + body)
    return path
