"""Native label sets of segmentation sources and their mapping into the bone schema.

A label set is one CSV in ``mappings/`` (or a user's file in the same format):
``native_value, native_name, schema_name, split_by_side``. Every native label must
be listed: ``schema_name`` empty means "not a bone, dropped on purpose"; a label
that is not listed at all is a hard error (IDC's practice), because silently
dropping it would hide a wrong mapping. ``split_by_side = yes`` marks a label
without laterality (TotalSegmentator ``appendicular_bones``); it is split into
``<schema_name>_left`` / ``_right`` by the body midline.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from labels.schema import BoneSchema, Structure, default_schema

SIDES = ("left", "right")


class UnmappedLabelError(ValueError):
    """A native label value that the source's mapping table does not list."""


@dataclass(frozen=True)
class NativeLabel:
    value: int
    name: str
    schema_name: str | None  # None: not a bone, dropped on purpose
    split_by_side: bool

    def targets(self) -> list[str]:
        """Schema names this label can become (two when split by side)."""
        if self.schema_name is None:
            return []
        if self.split_by_side:
            return [f"{self.schema_name}_{side}" for side in SIDES]
        return [self.schema_name]


class LabelSet:
    """One source's native labels and how each maps into the schema."""

    def __init__(self, name: str, labels: Iterable[NativeLabel], schema: BoneSchema | None = None):
        self.name = name
        self.schema = schema or default_schema()
        self.labels = {label.value: label for label in labels}
        for label in self.labels.values():
            if label.value <= 0:
                raise ValueError(f"label set {name!r}: native value {label.value} must be > 0 (0 is background)")
            for target in label.targets():
                if target not in self.schema:
                    raise ValueError(f"label set {name!r}: {label.name!r} maps to {target!r}, which is not in the bone schema")

    @classmethod
    def from_csv(cls, path: str | Path, name: str | None = None, schema: BoneSchema | None = None) -> LabelSet:
        path = Path(path)
        return cls(name or path.stem, _read_rows(path.read_text()), schema)

    def __repr__(self) -> str:
        return f"LabelSet({self.name!r}, {len(self.labels)} labels)"

    def by_name(self, native_name: str) -> NativeLabel | None:
        return next((label for label in self.labels.values() if label.name == native_name), None)

    def emitted(self) -> frozenset[str]:
        """Schema names this source can produce."""
        return frozenset(t for label in self.labels.values() for t in label.targets())

    @property
    def needs_side_split(self) -> bool:
        return any(label.split_by_side for label in self.labels.values())

    def check_values(self, values: Iterable[int]) -> None:
        """Raise ``UnmappedLabelError`` naming the source and every unlisted value."""
        unknown = sorted(int(v) for v in values if v != 0 and int(v) not in self.labels)
        if unknown:
            raise UnmappedLabelError(
                f"label set {self.name!r} has no mapping for native label value(s) {unknown}; "
                f"add them to its mapping table (schema_name empty if they are not bones)"
            )

    def harmonize(self, native: np.ndarray, patient_left: np.ndarray | None = None) -> np.ndarray:
        """Native label map -> schema id map (uint16, same shape).

        ``patient_left`` (bool, same shape) is required when a label present in
        ``native`` has no laterality of its own; see ``labels.laterality``.
        """
        if native.dtype.kind not in "iub":
            raise TypeError(f"label set {self.name!r}: label map must hold integers, got dtype {native.dtype}")
        if native.size and native.min() < 0:
            raise UnmappedLabelError(f"label set {self.name!r}: negative label value {int(native.min())} in label map")
        present = np.flatnonzero(np.bincount(native.ravel()))
        self.check_values(present)
        size = int(present.max()) + 1 if present.size else 1
        lut = np.zeros(size, dtype=np.uint16)
        left_lut = np.zeros(size, dtype=np.uint16)
        split_values = []
        for value in present:
            label = self.labels.get(int(value))
            if label is None or label.schema_name is None:
                continue
            if label.split_by_side:
                left_lut[value] = self.schema[f"{label.schema_name}_left"].id
                lut[value] = self.schema[f"{label.schema_name}_right"].id
                split_values.append(value)
            else:
                lut[value] = self.schema[label.schema_name].id
        out = lut[native]
        if split_values:
            if patient_left is None or patient_left.shape != native.shape:
                names = [self.labels[int(v)].name for v in split_values]
                raise ValueError(f"label set {self.name!r}: labels {names} have no laterality; a patient-left mask of shape {native.shape} is needed to split them")
            on_left = patient_left & np.isin(native, split_values)
            out[on_left] = left_lut[native[on_left]]
        return out


def _read_rows(text: str) -> list[NativeLabel]:
    rows = []
    for row in csv.DictReader(text.splitlines()):
        rows.append(
            NativeLabel(
                value=int(row["native_value"]),
                name=row["native_name"],
                schema_name=row["schema_name"] or None,
                split_by_side=row["split_by_side"].strip().lower() == "yes",
            )
        )
    return rows


def packaged_label_sets() -> list[str]:
    """Names of the label sets shipped with the project."""
    folder = resources.files(__package__).joinpath("mappings")
    return sorted(p.name.removesuffix(".csv") for p in folder.iterdir() if p.name.endswith(".csv"))


@cache
def _packaged(name: str) -> LabelSet:
    text = resources.files(__package__).joinpath("mappings", f"{name}.csv").read_text()
    return LabelSet(name, _read_rows(text))


def load_label_set(name_or_path: str | Path) -> LabelSet:
    """A packaged label set by name (e.g. ``totalsegmentator_total``) or a mapping CSV by path."""
    if str(name_or_path) in packaged_label_sets():
        return _packaged(str(name_or_path))
    path = Path(name_or_path)
    if path.suffix == ".csv" and path.is_file():
        return LabelSet.from_csv(path)
    raise ValueError(f"unknown label set {str(name_or_path)!r}: not one of {packaged_label_sets()} and not a mapping CSV file")


def finest_comparable(bone: str, label_sets: Iterable[LabelSet], schema: BoneSchema | None = None) -> Structure | None:
    """The finest schema node at which every given source can say something about ``bone``.

    A source represents ``bone`` at node N when it emits some node on the path
    from ``bone`` up to N (itself coarser or equal to the bone, finer or equal to
    N) and no node strictly above N (which would make its N-mask incomplete).
    At N each source's mask is the union of everything it emits under N.
    Returns None when some source cannot represent the bone at any level.
    """
    schema = schema or default_schema()
    emitted = [ls.emitted() for ls in label_sets]
    path = [schema[bone], *schema.ancestors(bone)]
    for depth, node in enumerate(path):
        on_path = {s.name for s in path[: depth + 1]}
        above = {s.name for s in path[depth + 1 :]}
        if all(e & on_path and not e & above for e in emitted):
            return node
    return None
