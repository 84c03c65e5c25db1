"""BoneHub's own label values (BoneLabelMap) as label sets, and the way back from the schema.

BoneHub-Dataset masks use two layouts: 4-digit values with NIfTI masks (``v1``,
label set ``bonehub_v1``) and 9-digit values ``structure*100000 + part*1000 +
tissue*10 + side`` in ``.seg.nrrd`` (``v2``, label set ``bonehub_v2``). Both
mappings live in ``mappings/`` like every other source's; this module tells the
layout from a value, names values, and gives the v2 value of a schema node, so
that a mask written for BoneHub carries their labels (``femur_left`` ->
710000001). The BoneHub value of a structure is its whole-structure value (part
and tissue zero) with the side it has; a node BoneHub has no value for is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import numpy as np

from labels.errors import BoneHubInputError
from labels.label_sets import LabelSet, LabelSetError, NativeLabel, load_label_set
from labels.schema import BoneSchema, default_schema

BONEHUB_LABEL_SETS = {"v1": "bonehub_v1", "v2": "bonehub_v2"}
_V1_RANGE = range(1, 10_000)
_V2_RANGE = range(100_000_000, 1_000_000_000)
# schema nodes several whole BoneHub structures map to: the one that holds exactly the node
_WHOLE_OF = {"sacrum_below_s1": "SACRUM_S2_S5", "costal_cartilages": "COSTAL_CARTILAGES", "skeleton": "SKELETON"}


def bonehub_version(value: int) -> str:
    """The layout a BoneHub label value belongs to: ``v1`` (4 digits) or ``v2`` (9 digits)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value in _V1_RANGE:
            return "v1"
        if value in _V2_RANGE:
            return "v2"
    raise BoneHubInputError(f"BoneHub label value {value!r} is neither a 4-digit (v1) nor a 9-digit (v2) value")


def bonehub_label_set(version: str) -> LabelSet:
    """The label set of one layout version (``v1`` or ``v2``)."""
    if version not in BONEHUB_LABEL_SETS:
        raise BoneHubInputError(f"BoneHub label map version {version!r} is not one of {sorted(BONEHUB_LABEL_SETS)}")
    return load_label_set(BONEHUB_LABEL_SETS[version])


def _label(value: int) -> NativeLabel:
    label = bonehub_label_set(bonehub_version(value)).labels.get(value)
    if label is None:
        raise BoneHubInputError(f"BoneHub label value {value} is not in BoneHub's {bonehub_version(value)} label map")
    return label


def bonehub_name(value: int) -> str:
    """BoneHub's name of a label value of either layout, e.g. 710000001 -> ``FEMUR_LEFT``."""
    return _label(value).name


def bonehub_targets(values: Iterable[int]) -> frozenset[str]:
    """The schema structures these BoneHub values map to (a mask's vocabulary); unknown or refused values are refused."""
    found: set[str] = set()
    for value in values:
        label = _label(int(value))
        if label.refused:
            raise BoneHubInputError(f"BoneHub label value {label.value} ({label.name}) is refused: {label.refused}")
        found.update(label.targets())
    return frozenset(found)


@cache
def _v2_value_of() -> dict[str, int]:
    """Schema name -> the v2 value of the whole structure (part and tissue zero, not split by side)."""
    candidates: dict[str, list[NativeLabel]] = {}
    for label in bonehub_label_set("v2").labels.values():
        whole = (label.value // 1000) % 100 == 0 and (label.value // 10) % 100 == 0
        if whole and label.schema_name is not None and not label.split_by_side:
            candidates.setdefault(label.schema_name, []).append(label)
    chosen = {}
    for name, labels in candidates.items():
        if len(labels) > 1:
            labels = [label for label in labels if label.name == _WHOLE_OF.get(name)]
        if len(labels) != 1:
            raise LabelSetError(f"label set 'bonehub_v2': no single whole-structure value for {name!r}")
        chosen[name] = labels[0].value
    return chosen


def bonehub_value(schema_name: str) -> int:
    """The BoneHub v2 value of a schema structure, e.g. ``femur_left`` -> 710000001."""
    value = _v2_value_of().get(schema_name)
    if value is None:
        raise BoneHubInputError(f"schema structure {schema_name!r} has no BoneHub label value (BoneHub's label map has no structure with its content)")
    return value


def bonehub_lookup(schema_ids: Iterable[int], schema: BoneSchema | None = None) -> np.ndarray:
    """A lookup table schema id -> BoneHub v2 value for these structures (0 elsewhere), to relabel a map at once.

    Structures without a BoneHub value are named together in one ``BoneHubInputError``.
    """
    schema = schema or default_schema()
    ids = sorted({int(i) for i in schema_ids if i})
    missing = [schema[i].name for i in ids if schema[i].name not in _v2_value_of()]
    if missing:
        raise BoneHubInputError(f"structure(s) {', '.join(missing)} have no BoneHub label value")
    lut = np.zeros(max(ids, default=0) + 1, np.int64)
    for schema_id in ids:
        lut[schema_id] = _v2_value_of()[schema[schema_id].name]
    return lut
