"""The reviewer's word on an item besides a correction: accepted as is, rejected (with a reason), or missing.

*Accept as is* and *Reject* write ``verdict.json`` into the item folder; *Missing* (a bone in the
image that no source labelled, so it is on no worklist) writes it into ``EXPORT/<series_uid>/<bone>/``
of that bone. ``bonehub review import`` reads the file as it reads ``correction.json``. In one item
folder the reviewer's last decision counts: a verdict removes ``correction.json`` (the corrected mask
stays on disk) and Accept of a correction removes ``verdict.json``. Standard library only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .formats import (
    CORRECTION_FILE,
    ITEM_FILE,
    VERDICT_FILE,
    VERDICT_FORMAT,
    ReviewError,
    atomic_write_text,
    checked_reviewer,
    read_json,
    utc_now,
)

ACCEPTED, REJECTED, MISSING = "accepted", "rejected", "missing"
VERDICT_TOOL = "3D Slicer BoneHubReview"
_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # schema names: bonehub review import checks them against the schema
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _record(item_id: str, series_uid: str, bone: str, verdict: str, reviewer: str, reason: str) -> dict:
    return {"format": VERDICT_FORMAT, "item_id": item_id, "series_uid": series_uid, "bone": bone, "verdict": verdict,
            "reviewer": reviewer, "reason": " ".join(reason.split()), "tool": VERDICT_TOOL, "saved_at": utc_now()}


def write_verdict(folder: Path, item: dict, verdict: str, reviewer: str, reason: str = "") -> Path:
    """Accept as is or reject an exported item; a rejection needs a reason. Returns ``verdict.json``."""
    action = {ACCEPTED: "Accept as is", REJECTED: "Reject"}.get(verdict)
    if action is None:
        raise ReviewError(f"verdict {verdict!r} is not one of {ACCEPTED!r}, {REJECTED!r} for an exported item")
    reviewer = checked_reviewer(reviewer, action)
    if verdict == REJECTED and not reason.strip():
        raise ReviewError("a rejection needs a reason: why is the mask unusable?")
    folder = Path(folder)
    record = _record(item["item_id"], item["series_uid"], item["bone"], verdict, reviewer, reason)
    (folder / CORRECTION_FILE).unlink(missing_ok=True)  # the last decision counts
    path = folder / VERDICT_FILE
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def write_missing(export_dir: Path, series_uid: str, bone: str, reviewer: str, reason: str = "") -> Path:
    """Record that ``bone`` is in the image of ``series_uid`` but no source labelled it. Returns ``verdict.json``."""
    reviewer = checked_reviewer(reviewer, "Missing")
    bone = bone.strip()
    if not _NAME.match(bone):
        raise ReviewError(f"{bone!r} is not a bone name of the schema (e.g. vertebra_L3, rib_left_12)")
    if not _UID.match(series_uid):
        raise ReviewError(f"{series_uid!r} is not a series UID")
    folder = Path(export_dir) / series_uid / bone
    if (folder / ITEM_FILE).is_file():
        raise ReviewError(f"{bone} of {series_uid} was exported with a mask: correct it or reject it instead")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / VERDICT_FILE
    atomic_write_text(path, json.dumps(_record(f"{series_uid}/{bone}", series_uid, bone, MISSING, reviewer, reason),
                                       indent=2) + "\n")
    return path


def verdict_state(folder: Path) -> str | None:
    """The verdict ``verdict.json`` in ``folder`` records (accepted, rejected, missing), or None without a readable one."""
    path = Path(folder) / VERDICT_FILE
    if not path.is_file():
        return None
    try:
        verdict = read_json(path, VERDICT_FORMAT).get("verdict")
    except ReviewError:
        return None
    return verdict if verdict in (ACCEPTED, REJECTED, MISSING) else None
