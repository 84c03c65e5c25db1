"""What a segmentation's source can label, carried in the SEG itself.

QC compares sources structure by structure, and a structure a source *can* label
but left empty is a disagreement, while one it cannot label is none of its
business. A SEG only lists the segments it holds, so the vocabulary — the schema
structures the source's mapping covers — is written into every segment's
Segmentation Algorithm Identification, attribute Algorithm Parameters
(0066,0032, LT), as ``vocabulary=<schema ids>`` beside ``augmentation=...``. It is
a standard attribute, so it survives every store, STOW-RS and WADO-RS included,
and a SEG found in a store or in IDC carries it without our manifest.

The ids are written as sorted ranges (``1-27 31-58 70-73``): about a hundred
characters for a whole-body source, repeated in each segment, instead of a
few kilobytes of names. The same text is the manifest's ``vocabulary`` column.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from pydicom.dataset import Dataset

from labels.errors import BoneHubInputError
from labels.schema import BoneSchema, default_schema

log = logging.getLogger("bonehub.vocabulary")

PARAMETER = "vocabulary"
_IN_PARAMETERS = re.compile(rf"(?:^|,)\s*{PARAMETER}=([0-9 \-]*)")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class VocabularyError(BoneHubInputError):
    """A vocabulary text that is not sorted schema id ranges, or names a structure the schema does not have."""


def encode_vocabulary(structures: Iterable[str], schema: BoneSchema | None = None) -> str:
    """Schema names as sorted id ranges, e.g. ``{"vertebra_L1", "vertebra_L2", "sacrum"}`` -> ``"20-21 203"``."""
    schema = schema or default_schema()
    ids = sorted({schema[name].id for name in structures})
    ranges: list[list[int]] = []
    for value in ids:
        if ranges and value == ranges[-1][1] + 1:
            ranges[-1][1] = value
        else:
            ranges.append([value, value])
    return " ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def decode_vocabulary(text: str, schema: BoneSchema | None = None) -> frozenset[str]:
    """The schema names of an ``encode_vocabulary`` text; raises ``VocabularyError`` naming what is wrong."""
    schema = schema or default_schema()
    names = set()
    for part in text.split():
        match = _RANGE.match(part)
        if match is None:
            raise VocabularyError(f"vocabulary {text!r}: {part!r} is not a schema id or id range")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        for value in range(first, last + 1):
            if value not in schema:
                raise VocabularyError(f"vocabulary {text!r}: {value} is not a schema id")
            names.add(schema[value].name)
    return frozenset(names)


def vocabulary_of(seg: Dataset, schema: BoneSchema | None = None) -> frozenset[str] | None:
    """The vocabulary a SEG records (the union over its segments' algorithms), or None when it records none.

    A vocabulary this schema cannot read (written under another schema version) is
    treated as none, with a warning: QC then infers it, and the SEG is still used.
    """
    texts = []
    for segment in seg.get("SegmentSequence", []):
        for algorithm in segment.get("SegmentationAlgorithmIdentificationSequence", []):
            if (match := _IN_PARAMETERS.search(str(algorithm.get("AlgorithmParameters", "")))) is not None:
                texts.append(match.group(1))
    if not texts:
        return None
    return readable_vocabulary(" ".join(texts), f"SEG {seg.get('SOPInstanceUID', '?')}", schema)


def readable_vocabulary(text: str, where: str, schema: BoneSchema | None = None) -> frozenset[str] | None:
    """``decode_vocabulary``, or None with a warning naming ``where`` when the text cannot be read."""
    try:
        return decode_vocabulary(text, schema)
    except VocabularyError as error:
        log.warning("%s: vocabulary ignored, QC infers it instead (%s)", where, error)
        return None
