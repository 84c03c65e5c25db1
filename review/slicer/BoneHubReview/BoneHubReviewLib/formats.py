"""The files ``bonehub review export`` writes and the module writes back: their names, formats and reading.

A JSON file is read only in the format version this module knows; another version is refused by
name, so an export from a newer bonehub never half-loads. Standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path

WORKLIST_FORMAT = "bonehub-worklist/1"
ITEM_FORMAT = "bonehub-review-item/1"
CORRECTION_FORMAT = "bonehub-correction/1"
WORKLIST_FILE = "worklist.json"
ITEM_FILE = "item.json"
CORRECTED_FILE = "corrected.nrrd"
CORRECTION_FILE = "correction.json"
# Where the module saves the label map before it is checked; only a checked one becomes corrected.nrrd.
PARTIAL_FILE = ".corrected.partial.nrrd"


class ReviewError(Exception):
    """A problem the reviewer can act on; the module shows the message as it is."""


def read_json(path: Path, expected_format: str) -> dict:
    """A JSON object whose ``format`` is the one this module reads; other versions are refused by name."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReviewError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReviewError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(record, dict):
        raise ReviewError(f"{path}: expected a JSON object")
    found = record.get("format")
    if found == expected_format:
        return record
    family = expected_format.split("/")[0]
    if isinstance(found, str) and found.startswith(family + "/"):
        raise ReviewError(f"{path}: format {found!r} is not supported; this BoneHubReview module reads "
                          f"{expected_format!r}, update the module or re-export with a matching bonehub")
    raise ReviewError(f"{path}: not a {family} file (format {found!r}, expected {expected_format!r})")


def required_text(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise ReviewError(f"{where}: {key!r} must be a non-empty string")
    return value
