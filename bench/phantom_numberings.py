"""The phantom's TotalSegmentator v2 label map written in another source's native numbering (same voxels).

Why: QC must compare sources that label at different granularity — TotalSegmentator
v2 names S1 apart from the rest of the sacrum, TotalSegmentator v1 and MOOSE
``clin_ct_vertebrae`` label the sacrum whole, MOOSE labels no ribs. Writing the one
phantom in each numbering gives such sources with known, identical anatomy, so a
test or benchmark can damage one of them (or all alike) and know what QC should see.
"""

from __future__ import annotations

import numpy as np

from labels.label_sets import LabelSet, load_label_set
from labels.schema import default_schema

V2, V1, MOOSE_VERTEBRAE = "totalsegmentator_total", "totalsegmentator_total_v1", "moose_clin_ct_vertebrae"


def renumber(native_v2: np.ndarray, target: str) -> np.ndarray:
    """``native_v2`` (TotalSegmentator v2 ``total`` values) in label set ``target``'s native values.

    Each v2 bone takes the target label of the same structure, or of the nearest
    structure above it that the target labels (S1 and the rest of the sacrum both
    become a whole-sacrum label); what the target cannot label becomes background.
    """
    source, goal = load_label_set(V2), load_label_set(target)
    lut = np.zeros(max(source.labels) + 1, dtype=np.uint16)
    for value, label in source.labels.items():
        if label.schema_name is not None and (found := _label_for(label.schema_name, goal)) is not None:
            lut[value] = found
    return lut[native_v2]


def schema_map(native_v2: np.ndarray, target: str) -> np.ndarray:
    """The phantom in schema ids as a source speaking ``target`` would deliver it (renumbered, then harmonized)."""
    return load_label_set(target).harmonize(renumber(native_v2, target))


def vocabulary(target: str) -> frozenset[str]:
    """The schema structures a source with label set ``target`` can label."""
    return load_label_set(target).emitted()


def _label_for(structure: str, goal: LabelSet) -> int | None:
    schema = default_schema()
    for node in [structure, *(a.name for a in schema.ancestors(structure))]:
        for value, label in goal.labels.items():
            if label.schema_name == node and not label.split_by_side:
                return value
    return None
