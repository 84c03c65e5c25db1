"""Which structures are compared, and which segmentations take part at each.

Sources label at different granularity: TotalSegmentator v2 names S1 apart from
the rest of the sacrum, TotalSegmentator v1 and MOOSE label the sacrum whole, the
CPU baseline labels only "skeleton". Comparison goes through the schema tree:

- A segmentation's **vocabulary** is the set of schema structures its source can
  label (its mapping's targets), recorded with its SEG. It takes part at a
  structure when its vocabulary holds that structure or something under it, and
  nothing above it; its mask there is the union of everything it labels under
  the structure. So a whole-sacrum source meets v2's S1 + rest-of-sacrum at
  ``sacrum``, every source that names vertebrae meets at each vertebra, and the
  baseline meets everyone's union of bones at ``skeleton`` only.
- A structure in the vocabulary that the segmentation left empty is a presence
  disagreement: it takes part with an empty mask. That is how a source that drops
  the only label it had in a family (a deleted L1 in a lumbar-only source) is seen.
- Only a SEG that does not record its vocabulary (one made elsewhere) has it
  inferred from what it labels, family by family: a bone of a group (a vertebra
  of the lumbar spine, a left rib, a carpal) stands for every bone of that group,
  and a sided bone for its mirror twin; a group or region stands only for itself.
  Labelling ``sacrum`` says nothing about the thoracic or lumbar vertebrae.

A structure is compared when some member labels it or something under it, or, for
a bone of a group, anything in its group: a T11 nobody labelled in a CT where T10
and T12 are labelled gets a row (the spine level rules may send it to review), a
femur in a chest CT does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labels.schema import BoneSchema, Structure


@dataclass(frozen=True)
class Unit:
    """One compared structure: its schema node, the schema ids whose union is its mask, the members compared."""

    structure: str
    ids: tuple[int, ...]  # the node's own id and the ids of all structures under it
    members: tuple[int, ...]  # indices into the series' list of segmentations


def inferred_vocabulary(present: Iterable[str], schema: BoneSchema) -> frozenset[str]:
    """What a segmentation that does not record its vocabulary is taken to label (family-local inference)."""
    vocabulary: set[str] = set()
    for name in present:
        for structure in {schema[name], *_mirror(schema, name)}:
            vocabulary.add(structure.name)
            family = schema.parent_of(structure.name)
            if structure.level == "bone" and _is_group(family):
                vocabulary |= {s.name for s in schema.children(family.name) if s.level == "bone"}
    return frozenset(vocabulary)


def _mirror(schema: BoneSchema, name: str) -> list[Structure]:
    """The same structure on the other side (``rib_left_3`` → ``rib_right_3``), if the schema has it."""
    structure = schema[name]
    if structure.laterality is None:
        return []
    other = "right" if structure.laterality == "left" else "left"
    twin = schema.find_by_code(structure.type, other)
    return [] if twin is None else [twin]


def vocabularies(present_by_member: Sequence[Iterable[str]], recorded: Sequence[frozenset[str] | None] | None,
                 schema: BoneSchema) -> list[frozenset[str]]:
    """Each member's vocabulary: the recorded one where there is one, else inferred from what it labels.

    A recorded vocabulary also takes in whatever the member labels outside it (a SEG
    edited after it was made), so no labelled structure is ever dropped.
    """
    recorded = list(recorded) if recorded is not None else [None] * len(present_by_member)
    found = []
    for present, known in zip(present_by_member, recorded):
        present = frozenset(present)
        found.append(inferred_vocabulary(present, schema) if known is None else frozenset(known) | present)
    return found


def comparison_units(present_by_member: Sequence[Iterable[str]], schema: BoneSchema,
                     recorded: Sequence[frozenset[str] | None] | None = None) -> list[Unit]:
    """Every structure of a labelled family, with the members that can be compared there (schema order).

    ``recorded``: per member the vocabulary its SEG records, or None where it records none.
    """
    present_by_member = [frozenset(p) for p in present_by_member]
    vocabs = vocabularies(present_by_member, recorded, schema)
    labelled = frozenset().union(*present_by_member) if present_by_member else frozenset()
    nodes = set().union(*vocabs) if vocabs else set()
    units = []
    for node in sorted(nodes, key=lambda name: schema[name].id):
        subtree = {node} | {d.name for d in schema.descendants(node)}
        family = schema.parent_of(node)
        if not ({d.name for d in schema.descendants(family.name)} if _is_group(family) else subtree) & labelled:
            continue
        above = {a.name for a in schema.ancestors(node)}
        members = tuple(i for i, v in enumerate(vocabs) if v & subtree and not v & above)
        ids = tuple(sorted(schema[name].id for name in subtree))
        units.append(Unit(node, ids, members))
    return units


def _is_group(structure: Structure | None) -> bool:
    return structure is not None and structure.level == "group"


def finest_units(units: Sequence[Unit], schema: BoneSchema) -> list[Unit]:
    """Units with no other unit below them: the ones the consensus label map is made of."""
    names = {u.structure for u in units}
    return [u for u in units if not any(d.name in names for d in schema.descendants(u.structure))]
