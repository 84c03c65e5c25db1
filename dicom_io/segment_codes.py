"""Schema structures <-> SEG segment descriptions.

Writing: category / type / laterality-modifier codes come from the schema only.
Reading: a segment is resolved to a schema structure by its codes (aliases such
as 123037004 or MOOSE's carpus accepted); when the codes alone are ambiguous
(TotalSegmentator's own SEG writer drops the laterality modifier) the segment
label is matched against schema names and the packaged label sets' native names.
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr._snomed_dict import mapping as _snomed_mapping
from pydicom.sequence import Sequence as DicomSequence

from labels.label_sets import load_label_set, packaged_label_sets
from labels.schema import (
    PRIVATE_SCHEME_DESIGNATOR,
    PRIVATE_SCHEME_NAME,
    PRIVATE_SCHEME_VERSION,
    LEFT,
    RIGHT,
    BoneSchema,
    Code,
    Structure,
)
from dicom_io.provenance import SegmentationSource


SRT_TO_SCT: dict[str, str] = _snomed_mapping["SRT"]


def coded(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def segment_description(
    number: int, structure: Structure, source: SegmentationSource, algorithm: hd.AlgorithmIdentificationSequence | None, tracking_uid: str
) -> hd.seg.SegmentDescription:
    """One SEG segment for a schema structure, with its laterality modifier set explicitly.

    highdicom's SegmentDescription has no argument for the modifier, so the
    sequence is set on the property-type item; dcmqi reads it back
    (tests/seg/test_seg_interop.py).
    """
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=structure.display_name,
        segmented_property_category=coded(structure.category),
        segmented_property_type=coded(structure.type),
        algorithm_type=source.algorithm_type,
        algorithm_identification=algorithm,
        tracking_id=structure.name,
        tracking_uid=tracking_uid,
        display_color=hd.color.CIELabColor.from_rgb(*structure.color),
    )
    if structure.modifier is not None:
        modifier = Dataset()
        modifier.CodeValue = structure.modifier.value
        modifier.CodingSchemeDesignator = structure.modifier.scheme
        modifier.CodeMeaning = structure.modifier.meaning
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = DicomSequence([modifier])
    return description


def private_scheme_item() -> hd.coding_schemes.CodingSchemeIdentificationItem:
    """CodingSchemeIdentificationSequence item that declares the project's private codes."""
    return hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME_DESIGNATOR,
        name=PRIVATE_SCHEME_NAME,
        version=PRIVATE_SCHEME_VERSION,
        responsible_organization="BoneHub Segmentation project",
    )


def _code(item: Dataset) -> Code:
    """The item's code; legacy SNOMED RT (SRT, used by older Slicer/dcmqi/IDC SEGs) translated to SCT."""
    code = Code(str(item.CodingSchemeDesignator), str(item.CodeValue), str(item.get("CodeMeaning", "")))
    if code.scheme == "SRT" and code.value in SRT_TO_SCT:
        return Code("SCT", SRT_TO_SCT[code.value], code.meaning)
    return code


def _laterality(type_item: Dataset) -> str | None:
    for modifier in type_item.get("SegmentedPropertyTypeModifierCodeSequence", []):
        key = _code(modifier).key
        if key == LEFT[:2]:
            return "left"
        if key == RIGHT[:2]:
            return "right"
    return None


@dataclass(frozen=True)
class SegmentInfo:
    """What one SEG segment is and which schema structure (if any) it became."""

    number: int
    label: str
    category: Code
    type: Code
    laterality: str | None
    schema_name: str | None
    reason: str  # how it was resolved, or why it was not

    def as_row(self) -> dict[str, object]:
        return {
            "segment_number": self.number,
            "segment_label": self.label,
            "category": f"{self.category.scheme}:{self.category.value}",
            "type": f"{self.type.scheme}:{self.type.value} {self.type.meaning}",
            "laterality": self.laterality or "",
            "schema_name": self.schema_name or "",
            "resolution": self.reason,
        }


def resolve_segment(item: Dataset, schema: BoneSchema) -> SegmentInfo:
    """Map one SegmentSequence item to a schema structure, or say why not."""
    type_item = item.SegmentedPropertyTypeCodeSequence[0]
    category, type_code = _code(item.SegmentedPropertyCategoryCodeSequence[0]), _code(type_item)
    laterality = _laterality(type_item)
    label = str(item.get("SegmentLabel", ""))

    def info(name: str | None, reason: str) -> SegmentInfo:
        return SegmentInfo(int(item.SegmentNumber), label, category, type_code, laterality, name, reason)

    if type_code.is_private and type_code.scheme != PRIVATE_SCHEME_DESIGNATOR:
        return info(None, f"private code of unknown scheme {type_code.scheme}")
    found = schema.find_by_code(type_code, laterality)
    if found is not None and schema.is_anatomical_category(category):
        return info(found.name, "codes")
    by_label = _structure_for_label(label, schema)
    if by_label is not None:
        return info(by_label, "segment label")
    if _names_a_label_without_side(label):
        return info(None, "a label without laterality (e.g. TotalSegmentator appendicular_bones): its side is unknown")
    if not schema.is_anatomical_category(category):
        return info(None, "category is not an anatomical structure")
    return info(None, "not a structure of the bone schema")


def _names_a_label_without_side(label: str) -> bool:
    return any((native := load_label_set(name).by_name(label.strip())) is not None and native.split_by_side for name in packaged_label_sets())


def _structure_for_label(label: str, schema: BoneSchema) -> str | None:
    """Schema name for a segment label: a schema name/display name, or a native name of a packaged label set."""
    wanted = label.strip().lower()
    for s in schema:
        if wanted in (s.name.lower(), s.display_name.lower()):
            return s.name
    for name in packaged_label_sets():
        native = load_label_set(name).by_name(label.strip())
        if native is not None and native.schema_name and not native.split_by_side:
            return native.schema_name
    return None
