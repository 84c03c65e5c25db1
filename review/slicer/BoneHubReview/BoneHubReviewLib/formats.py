"""The files ``bonehub review export`` writes and the module writes back: their names, formats, reading, writing.

A JSON file is read only in the format version this module knows; another version is refused by
name, so an export from a newer bonehub never half-loads. Files the module writes are written whole
(a temporary file and a rename). Standard library only.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

WORKLIST_FORMAT = "bonehub-worklist/1"
ITEM_FORMAT = "bonehub-review-item/1"
CORRECTION_FORMAT = "bonehub-correction/1"
VERDICT_FORMAT = "bonehub-verdict/1"
WORKLIST_FILE = "worklist.json"
ITEM_FILE = "item.json"
CORRECTED_FILE = "corrected.nrrd"
CORRECTION_FILE = "correction.json"
VERDICT_FILE = "verdict.json"
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


def utc_now() -> str:
    """ISO 8601 UTC to the second, e.g. 2026-05-01T12:00:00Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and a rename: readers see the old file or the new one."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def checked_reviewer(name: str, action: str) -> str:
    """The reviewer's name, stripped; refused when empty or not one printable line."""
    name = name.strip()
    if not name:
        raise ReviewError(f"enter the reviewer's name before {action}")
    if any(not ch.isprintable() for ch in name):
        raise ReviewError("the reviewer's name must be one line of printable text")
    return name
