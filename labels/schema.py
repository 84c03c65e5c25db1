"""The common bone schema: one row per structure in ``schema.csv``.

Every segmentation source is mapped into this schema (see ``label_sets``), so
everything after Stage 1's harmonize step speaks schema ids and names only.
Structures form a tree (region -> group -> bone); a coarse source label maps to
an inner node and is compared with finer sources at that node.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from labels.coded_values import CodedValue
from labels.errors import BoneHubInputError

PRIVATE_SCHEME_DESIGNATOR = "99BONEHUB"
PRIVATE_SCHEME_NAME = "BoneHub Segmentation private codes"
PRIVATE_SCHEME_VERSION = "1"

LEFT = ("SCT", "7771000", "Left")
RIGHT = ("SCT", "24028007", "Right")


class Level(CodedValue):
    """Depth in the schema tree: a region holds groups, a group holds bones."""

    REGION = "region"
    GROUP = "group"
    BONE = "bone"


@dataclass(frozen=True)
class Code:
    """A coded concept as (scheme designator, value, meaning)."""

    scheme: str
    value: str
    meaning: str

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the concept: meanings vary between sources, values do not."""
        return (self.scheme, self.value)

    @property
    def is_private(self) -> bool:
        return self.scheme.startswith("99")


@dataclass(frozen=True)
class Structure:
    """One node of the schema tree."""

    id: int
    name: str
    display_name: str
    parent: str | None
    level: Level  # given as a Level or its text; kept as the Level
    category: Code
    type: Code
    laterality: str | None
    color: tuple[int, int, int]
    note: str

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "level", Level(self.level))
        except BoneHubInputError as error:
            raise BoneHubInputError(f"schema structure {self.name!r}: {error}") from None

    @property
    def modifier(self) -> Code | None:
        """SegmentedPropertyTypeModifier: the laterality code, if any."""
        if self.laterality is None:
            return None
        return Code(*(LEFT if self.laterality == "left" else RIGHT))


class UnknownStructureError(BoneHubInputError, KeyError):
    """A name, id or code that is not in the schema."""

    def __str__(self) -> str:
        return str(self.args[0])


class BoneSchema:
    """The structures of ``schema.csv`` with lookups by id, name, code and tree position."""

    def __init__(self, structures: list[Structure], aliases: dict[tuple[str, str], tuple[str, str]]):
        self.structures = tuple(sorted(structures, key=lambda s: s.id))
        self._by_id = {s.id: s for s in self.structures}
        self._by_name = {s.name: s for s in self.structures}
        self._aliases = aliases
        self._by_code = {(s.type.key, s.laterality): s for s in self.structures}
        self._check()

    @classmethod
    def load(cls, path: str | Path | None = None) -> BoneSchema:
        """Read the schema CSV (default: the one shipped in this package)."""
        text = Path(path).read_text() if path else resources.files(__package__).joinpath("schema.csv").read_text()
        structures = [_structure_from_row(row) for row in csv.DictReader(text.splitlines())]
        alias_rows = csv.DictReader(resources.files(__package__).joinpath("code_aliases.csv").read_text().splitlines())
        aliases = {(r["alias_scheme"], r["alias_value"]): (r["canonical_scheme"], r["canonical_value"]) for r in alias_rows}
        return cls(structures, aliases)

    def _check(self) -> None:
        """Fail at load time on a schema that would make lookups ambiguous."""
        if len(self._by_id) != len(self.structures) or len(self._by_name) != len(self.structures):
            raise ValueError("schema ids and names must be unique")
        if len(self._by_code) != len(self.structures):
            raise ValueError("schema (type code, laterality) pairs must be unique")
        for s in self.structures:
            if s.id <= 0 or s.id > 65535:
                raise ValueError(f"schema id {s.id} of {s.name!r} must be in 1..65535 (label map voxels)")
            if s.parent is not None and s.parent not in self._by_name:
                raise ValueError(f"parent {s.parent!r} of {s.name!r} is not in the schema")

    def __iter__(self) -> Iterator[Structure]:
        return iter(self.structures)

    def __len__(self) -> int:
        return len(self.structures)

    def __contains__(self, key: object) -> bool:
        return key in self._by_name or key in self._by_id

    def __getitem__(self, key: int | str) -> Structure:
        """Structure by schema id (int) or name (str)."""
        found = self._by_id.get(key) if isinstance(key, int) else self._by_name.get(key)
        if found is None:
            raise UnknownStructureError(f"{key!r} is not a structure of the bone schema")
        return found

    def canonical_code(self, code: Code) -> Code:
        """Translate a known alias (another source's code for the same concept) to the schema's code."""
        scheme, value = self._aliases.get(code.key, code.key)
        return Code(scheme, value, code.meaning)

    def find_by_code(self, type_code: Code, laterality: str | None) -> Structure | None:
        """The structure coded by this property type (aliases accepted) and laterality, if any."""
        return self._by_code.get((self.canonical_code(type_code).key, laterality))

    def is_anatomical_category(self, code: Code) -> bool:
        """True for the schema's category code or a known alias of it (123037004 vs 91723000)."""
        canonical = self.canonical_code(code).key
        return any(canonical == s.category.key for s in self.structures)

    def parent_of(self, name: str) -> Structure | None:
        parent = self[name].parent
        return None if parent is None else self[parent]

    def ancestors(self, name: str) -> list[Structure]:
        """Parent, grandparent, ... up to the root."""
        chain = []
        node = self.parent_of(name)
        while node is not None:
            chain.append(node)
            node = self.parent_of(node.name)
        return chain

    def children(self, name: str) -> list[Structure]:
        return [s for s in self.structures if s.parent == name]

    def descendants(self, name: str) -> list[Structure]:
        """All structures below ``name`` in the tree, depth first."""
        found = []
        for child in self.children(name):
            found.append(child)
            found.extend(self.descendants(child.name))
        return found

    def is_ancestor_or_self(self, ancestor: str, name: str) -> bool:
        return ancestor == name or any(a.name == ancestor for a in self.ancestors(name))

    def bones(self) -> list[Structure]:
        """The leaves: the finest structures any source can label."""
        return [s for s in self.structures if s.level == "bone"]


def _structure_from_row(row: dict[str, str]) -> Structure:
    return Structure(
        id=int(row["id"]),
        name=row["name"],
        display_name=row["display_name"],
        parent=row["parent"] or None,
        level=row["level"],
        category=Code(row["category_scheme"], row["category_value"], row["category_meaning"]),
        type=Code(row["type_scheme"], row["type_value"], row["type_meaning"]),
        laterality=row["laterality"] or None,
        color=tuple(int(c) for c in row["color"].split()),  # type: ignore[arg-type]
        note=row["note"],
    )


@cache
def default_schema() -> BoneSchema:
    """The packaged schema, loaded once per process."""
    return BoneSchema.load()
