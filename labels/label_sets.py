"""Native label sets of segmentation sources and their mapping into the bone schema.

A label set is one CSV in ``mappings/`` (or a user's file in the same format):
``native_value, native_name, schema_name, split_by_side``. Every native label must
be listed: ``schema_name`` empty means "not a bone, dropped on purpose"; a label
that is not listed at all is a hard error (IDC's practice), because silently
dropping it would hide a wrong mapping. ``split_by_side = yes`` marks a label
without laterality (TotalSegmentator ``appendicular_bones``); it is split into
``<schema_name>_left`` / ``_right`` by the body midline (or fills ``{side}`` in
it: ``rib_{side}_3``). An optional ``refused`` column gives why a label cannot be
used at all (an aggregate that no schema node matches exactly, e.g. BoneHub's
whole left hand): the label is listed, maps to nothing, and a label map that
holds it is refused with that reason instead of being mapped to a node of other
content or silently dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from labels.errors import BoneHubInputError
from labels.schema import BoneSchema, Structure, default_schema
from labels.slabs import present_values

SIDES = ("left", "right")


class UnmappedLabelError(BoneHubInputError):
    """A native label value that the source's mapping table does not list."""


class RefusedLabelError(UnmappedLabelError):
    """A native label the mapping lists as refused: it matches no schema node, so the label map cannot be used."""


class LabelSetError(BoneHubInputError):
    """A label set that cannot be used: unknown name, malformed mapping table, target not in the schema."""


@dataclass(frozen=True)
class NativeLabel:
    value: int
    name: str
    schema_name: str | None  # None: not a bone, dropped on purpose (or refused)
    split_by_side: bool
    refused: str = ""  # why a label map holding this label cannot be used; empty for a usable label

    def side_target(self, side: str) -> str:
        """The schema name of this label's ``side`` half: ``{side}`` filled in, else ``_<side>`` appended."""
        name = self.schema_name or ""
        return name.replace("{side}", side) if "{side}" in name else f"{name}_{side}"

    def targets(self) -> list[str]:
        """Schema names this label can become (two when split by side)."""
        if self.schema_name is None:
            return []
        if self.split_by_side:
            return [self.side_target(side) for side in SIDES]
        return [self.schema_name]


class LabelSet:
    """One source's native labels and how each maps into the schema."""

    def __init__(self, name: str, labels: Iterable[NativeLabel], schema: BoneSchema | None = None):
        self.name = name
        self.schema = schema or default_schema()
        labels = list(labels)
        self.labels = {label.value: label for label in labels}
        for field in ("value", "name"):
            seen = [getattr(label, field) for label in labels]
            if duplicates := sorted({v for v in seen if seen.count(v) > 1}, key=str):
                raise LabelSetError(f"label set {name!r}: native {field}(s) {duplicates} listed more than once")
        for label in labels:
            if label.value <= 0:
                raise LabelSetError(f"label set {name!r}: native value {label.value} must be > 0 (0 is background)")
            if label.refused and label.schema_name is not None:
                raise LabelSetError(f"label set {name!r}: {label.name!r} is refused, so it cannot map to {label.schema_name!r}")
            for target in label.targets():
                if target not in self.schema:
                    raise LabelSetError(f"label set {name!r}: {label.name!r} maps to {target!r}, which is not in the bone schema")

    @classmethod
    def from_csv(cls, path: str | Path, name: str | None = None, schema: BoneSchema | None = None) -> LabelSet:
        path = Path(path)
        return cls(name or path.stem, _read_rows(path.read_text(), str(path)), schema)

    def __repr__(self) -> str:
        return f"LabelSet({self.name!r}, {len(self.labels)} labels)"

    def by_name(self, native_name: str) -> NativeLabel | None:
        return next((label for label in self.labels.values() if label.name == native_name), None)

    def emitted(self) -> frozenset[str]:
        """Schema names this source can produce."""
        return frozenset(t for label in self.labels.values() for t in label.targets())

    @property
    def split_values(self) -> list[int]:
        """Native values without laterality, split into left and right when harmonized."""
        return [label.value for label in self.labels.values() if label.split_by_side]

    def check_values(self, values: Iterable[int]) -> None:
        """Raise ``UnmappedLabelError`` naming the source and every unlisted value, or the first refused one."""
        values = sorted({int(v) for v in values if v != 0})
        unknown = [v for v in values if v not in self.labels]
        if unknown:
            raise UnmappedLabelError(
                f"label set {self.name!r} has no mapping for native label value(s) {unknown}; "
                f"add them to its mapping table (schema_name empty if they are not bones)"
            )
        if refused := [self.labels[v] for v in values if self.labels[v].refused]:
            label = refused[0]
            raise RefusedLabelError(f"label set {self.name!r}: native label {label.value} ({label.name}) is refused: {label.refused}")

    def harmonize(self, native: np.ndarray, patient_left: np.ndarray | None = None) -> np.ndarray:
        """Native label map -> schema id map (uint16, same shape).

        ``patient_left`` (bool, same shape) is required when a label present in
        ``native`` has no laterality of its own; see ``labels.laterality``.
        """
        if native.dtype.kind not in "iub":
            raise TypeError(f"label set {self.name!r}: label map must hold integers, got dtype {native.dtype}")
        if native.dtype.kind == "i" and native.size and native.min() < 0:
            raise UnmappedLabelError(f"label set {self.name!r}: negative label value {int(native.min())} in label map")
        present = present_values(native)
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
                left_lut[value] = self.schema[label.side_target("left")].id
                lut[value] = self.schema[label.side_target("right")].id
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


COLUMNS = ("native_value", "native_name", "schema_name", "split_by_side")


def _read_rows(text: str, where: str) -> list[NativeLabel]:
    reader = csv.DictReader(text.splitlines())
    if missing := [c for c in COLUMNS if c not in (reader.fieldnames or [])]:
        raise LabelSetError(f"{where}: mapping table lacks column(s) {missing}; expected {list(COLUMNS)}")
    rows = []
    for line, row in enumerate(reader, start=2):
        split = row["split_by_side"].strip().lower()
        if split not in ("", "yes"):
            raise LabelSetError(f"{where} line {line}: split_by_side must be 'yes' or empty, got {row['split_by_side']!r}")
        try:
            value = int(row["native_value"])
        except ValueError:
            raise LabelSetError(f"{where} line {line}: native_value {row['native_value']!r} is not an integer") from None
        rows.append(NativeLabel(value, row["native_name"], row["schema_name"] or None, split == "yes", (row.get("refused") or "").strip()))
    return rows


def packaged_label_sets() -> list[str]:
    """Names of the label sets shipped with the project."""
    folder = resources.files(__package__).joinpath("mappings")
    return sorted(p.name.removesuffix(".csv") for p in folder.iterdir() if p.name.endswith(".csv"))


@cache
def _packaged(name: str) -> LabelSet:
    text = resources.files(__package__).joinpath("mappings", f"{name}.csv").read_text()
    return LabelSet(name, _read_rows(text, f"packaged label set {name}"))


def load_label_set(name_or_path: str | Path) -> LabelSet:
    """A packaged label set by name (e.g. ``totalsegmentator_total``) or a mapping CSV by path."""
    if str(name_or_path) in packaged_label_sets():
        return _packaged(str(name_or_path))
    path = Path(name_or_path)
    if path.suffix == ".csv" and path.is_file():
        return LabelSet.from_csv(path)
    raise LabelSetError(f"unknown label set {str(name_or_path)!r}: not one of {packaged_label_sets()} and not a mapping CSV file")


def finest_comparable(structure: str, label_sets: Iterable[LabelSet], schema: BoneSchema | None = None) -> Structure | None:
    """The finest schema node, at or above ``structure``, at which all given sources can be compared.

    A source represents node N when it emits nothing strictly above N (a coarser
    label would make its N-mask incomplete) and the structures it emits under N
    cover every leaf under N that any of the compared sources covers. At N each
    source's mask is the union of everything it emits under N. Leaves that no
    compared source labels (an L6, say) do not count. Returns None when the
    sources cannot be compared at any level (e.g. one never labels this part).
    """
    schema = schema or default_schema()
    emitted = [ls.emitted() for ls in label_sets]
    for node in [schema[structure], *schema.ancestors(structure)]:
        above = {a.name for a in schema.ancestors(node.name)}
        covered = [_covered_leaves(node.name, e, schema) for e in emitted]
        wanted = set().union(*covered)
        if wanted and all(c == wanted and not e & above for c, e in zip(covered, emitted)):
            return node
    return None


def _covered_leaves(node: str, emitted: frozenset[str], schema: BoneSchema) -> set[str]:
    """Leaves under (or equal to) ``node`` that the emitted structures include."""
    covered = set()
    for name in emitted:
        if schema.is_ancestor_or_self(node, name):
            subtree = [schema[name], *schema.descendants(name)]
            covered |= {s.name for s in subtree if s.level == "bone"}
    return covered
