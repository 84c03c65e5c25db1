"""Which structures are compared, and which segmentations take part at each.

Sources label at different granularity: TotalSegmentator names every vertebra,
the CPU baseline only "skeleton". A segmentation takes part at a structure when
it labels that structure or parts of it, and nothing coarser above it; its mask
there is the union of everything it labels under the structure. So the
baseline is compared with the others only at ``skeleton`` (with their union of
all bones), and the vertebrae only among the sources that name vertebrae.

What a segmentation *could* have labelled is inferred from what it did label:
labelling one child of a parent (one lumbar vertebra, one left rib) stands for
labelling all children of that parent at the same level. So a source that
misses L1 while labelling L2 takes part at L1 with an empty mask (a presence
disagreement), but a source that labels no rib at all is not asked about ribs.
The packaged label sets are not used because a SEG does not record which one
made it; inference works for any SEG.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labels.schema import BoneSchema


@dataclass(frozen=True)
class Unit:
    """One compared structure: its schema node, the schema ids whose union is its mask, the members compared."""

    structure: str
    ids: tuple[int, ...]  # the node's own id and the ids of all structures under it
    members: tuple[int, ...]  # indices into the series' list of segmentations


def vocabulary(present: Iterable[str], schema: BoneSchema) -> frozenset[str]:
    """The structures a segmentation is taken to label: what it labels plus their same-level siblings."""
    vocabulary: set[str] = set()
    for name in present:
        structure = schema[name]
        if structure.parent is None:
            vocabulary.add(name)
            continue
        vocabulary |= {s.name for s in schema.children(structure.parent) if s.level == structure.level}
    return frozenset(vocabulary)


def comparison_units(present_by_member: Sequence[Iterable[str]], schema: BoneSchema) -> list[Unit]:
    """Every structure some member labels, with the members that can be compared there (schema order)."""
    vocabularies = [vocabulary(present, schema) for present in present_by_member]
    nodes = set().union(*vocabularies) if vocabularies else set()
    units = []
    for node in sorted(nodes, key=lambda name: schema[name].id):
        above = {a.name for a in schema.ancestors(node)}
        subtree = {node} | {d.name for d in schema.descendants(node)}
        members = tuple(i for i, v in enumerate(vocabularies) if v & subtree and not v & above)
        ids = tuple(sorted(schema[name].id for name in subtree))
        units.append(Unit(node, ids, members))
    return units


def finest_units(units: Sequence[Unit], schema: BoneSchema) -> list[Unit]:
    """Units with no other unit below them: the ones the consensus label map is made of."""
    names = {u.structure for u in units}
    return [u for u in units if not any(d.name in names for d in schema.descendants(u.structure))]
