"""The worklist an export folder holds: its entries, each item's folder and state, and the item files.

``worklist.json`` lists the bones QC sent to review; ``<series_uid>/<bone>/item.json`` describes one
exported item. Both are checked for what the module uses before anything is shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .formats import (
    CORRECTED_FILE,
    CORRECTION_FILE,
    ITEM_FILE,
    ITEM_FORMAT,
    WORKLIST_FILE,
    WORKLIST_FORMAT,
    ReviewError,
    read_json,
    required_text,
)
from .geometry import roi_grid
from .verdicts import verdict_state

PENDING, EXPORTED, CORRECTED = "pending", "exported", "corrected"
TABLE_COLUMNS = ("Priority", "Series", "Bone", "Score", "Flags", "Outlier", "State")


@dataclass(frozen=True)
class WorklistEntry:
    """One bone of one series that QC sent to review, as ``worklist.json`` lists it."""

    item_id: str
    series_uid: str
    study_uid: str
    bone: str
    score: float | None
    flags: tuple[str, ...]
    outlier_source: str
    priority: int


@dataclass(frozen=True)
class ItemStatus:
    """A worklist entry, its folder and how far it got: pending (not exported), exported, corrected."""

    entry: WorklistEntry
    folder: Path
    state: str


def _path_part(value: str, key: str, where: str) -> str:
    """A UID or bone name used as a folder name; a separator or '..' would escape the export folder."""
    if value in (".", "..") or "/" in value or "\\" in value:
        raise ReviewError(f"{where}: {key} {value!r} cannot be a folder name")
    return value


def _entry(raw: object, where: str) -> WorklistEntry:
    if not isinstance(raw, dict):
        raise ReviewError(f"{where}: an item must be a JSON object")
    series_uid = _path_part(required_text(raw, "series_uid", where), "series_uid", where)
    bone = _path_part(required_text(raw, "bone", where), "bone", where)
    item_id = required_text(raw, "item_id", where)
    if item_id != f"{series_uid}/{bone}":
        raise ReviewError(f"{where}: item_id {item_id!r} is not '<series_uid>/<bone>'")
    priority, score, flags = raw.get("priority"), raw.get("score"), raw.get("flags", [])
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ReviewError(f"{where}: priority must be an integer")
    if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
        raise ReviewError(f"{where}: score must be a number or null")
    if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
        raise ReviewError(f"{where}: flags must be a list of strings")
    return WorklistEntry(item_id, series_uid, str(raw.get("study_uid") or ""), bone,
                         None if score is None else float(score), tuple(flags),
                         str(raw.get("outlier_source") or ""), priority)


def find_worklist(path: str | os.PathLike) -> Path:
    """``worklist.json`` given either the export folder or the file itself."""
    if not str(path).strip():
        raise ReviewError("choose the folder that 'bonehub review export' wrote")
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        candidate = candidate / WORKLIST_FILE
    if not candidate.is_file():
        raise ReviewError(f"{candidate}: not found; choose the folder that 'bonehub review export' wrote")
    return candidate


def read_worklist(path: str | os.PathLike) -> tuple[Path, list[WorklistEntry]]:
    """The export folder and its worklist entries in priority order (1 first)."""
    worklist = find_worklist(path)
    record = read_json(worklist, WORKLIST_FORMAT)
    items = record.get("items")
    if not isinstance(items, list):
        raise ReviewError(f"{worklist}: 'items' must be a list")
    entries = [_entry(raw, f"{worklist} item {index}") for index, raw in enumerate(items)]
    seen: set[str] = set()
    for entry in entries:
        if entry.item_id in seen:
            raise ReviewError(f"{worklist}: item {entry.item_id} is listed twice")
        seen.add(entry.item_id)
    return worklist.parent, sorted(entries, key=lambda entry: entry.priority)


def item_folder(export_dir: Path, entry: WorklistEntry) -> Path:
    """``EXPORT/<series_uid>/<bone>``: where the export put the item and where its correction goes."""
    return Path(export_dir) / entry.series_uid / entry.bone


def item_state(folder: Path) -> str:
    """Accepted / rejected when a verdict is saved; corrected once both correction files exist (correction.json is
    written last); else exported or pending."""
    verdict = verdict_state(folder)
    if verdict is not None:
        return verdict
    if (folder / CORRECTION_FILE).is_file() and (folder / CORRECTED_FILE).is_file():
        return CORRECTED
    return EXPORTED if (folder / ITEM_FILE).is_file() else PENDING


def list_items(path: str | os.PathLike) -> tuple[Path, list[ItemStatus]]:
    """The export folder and every worklist entry with its folder and state, in priority order."""
    export_dir, entries = read_worklist(path)
    statuses = []
    for entry in entries:
        folder = item_folder(export_dir, entry)
        statuses.append(ItemStatus(entry, folder, item_state(folder)))
    return export_dir, statuses


def next_item_id(statuses: list[ItemStatus], current_id: str | None, skipped: set[str]) -> str | None:
    """The next exported, uncorrected, unskipped item after ``current_id`` in priority order (wrapping)."""
    ids = [status.entry.item_id for status in statuses]
    start = ids.index(current_id) + 1 if current_id in ids else 0
    for status in statuses[start:] + statuses[:start]:
        item_id = status.entry.item_id
        if status.state == EXPORTED and item_id not in skipped and item_id != current_id:
            return item_id
    return None


def table_row(status: ItemStatus, skipped: bool) -> tuple[str, ...]:
    """The worklist table's cells, in ``TABLE_COLUMNS`` order."""
    entry = status.entry
    score = "-" if entry.score is None else f"{entry.score:.2f}"
    state = "skipped" if skipped and status.state == EXPORTED else status.state
    return (str(entry.priority), entry.series_uid, entry.bone, score, ", ".join(entry.flags),
            entry.outlier_source, state)


def _relative_file(value: object, key: str, where: str) -> str:
    if not isinstance(value, str) or not value or Path(value).is_absolute() or ".." in Path(value).parts:
        raise ReviewError(f"{where}: files.{key} must be a path inside the item folder, got {value!r}")
    return value


def read_item(folder: str | os.PathLike) -> dict:
    """``item.json`` of an exported item, checked for what the module uses; other keys are left as they are."""
    folder = Path(folder)
    path = folder / ITEM_FILE
    if not path.is_file():
        raise ReviewError(f"{folder}: not exported yet (no {ITEM_FILE}); run 'bonehub review export' for it")
    item = read_json(path, ITEM_FORMAT)
    series_uid, bone = required_text(item, "series_uid", str(path)), required_text(item, "bone", str(path))
    required_text(item, "study_uid", str(path))
    if required_text(item, "item_id", str(path)) != f"{series_uid}/{bone}":
        raise ReviewError(f"{path}: item_id {item['item_id']!r} is not '<series_uid>/<bone>'")
    if (folder.parent.name, folder.name) != (series_uid, bone):
        raise ReviewError(f"{path}: describes {series_uid}/{bone} but lies in {folder.parent.name}/{folder.name}")
    files = item.get("files")
    if not isinstance(files, dict):
        raise ReviewError(f"{path}: 'files' must be an object")
    for key in ("ct", "mask"):
        _relative_file(files.get(key), key, str(path))
    roi_grid(item)  # refuses a malformed ROI now rather than at Accept
    return item


def bone_label(item: dict) -> str:
    """The name the reviewer sees for the bone: its meaning if the export gave one."""
    return str(item.get("bone_meaning") or item["bone"])
