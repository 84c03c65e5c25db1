"""``bonehub dataset export``: the trusted labels of every selected series out in one format, with a data card.

Order, so a rerun or a failure leaves a consistent folder:

1. refuse a folder that holds another format's export, or files but no data card;
2. per series (``dataset.final_labels``): the format writes its files together or
   not at all (``ExportFiles.item``); a series that fails is named, the others go on;
3. the format's export-wide files, then the data card (``dataset.datacard``);
4. files an earlier export listed that this one did not make are deleted.

Every file is compared before it is written, so rerunning writes nothing and a new
correction rewrites only its series' files (and the card and records that list it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dataset.context import ExportContext
from dataset.datacard import CARD_JSON, CARD_README, build_card, card_bytes, read_card, readme_bytes
from dataset.errors import ExportInputError
from dataset.files import ExportFiles
from dataset.final_labels import final_series, trusted_provenance
from dataset.formats import FORMATS
from dataset.selection import ExportSelection
from labels.errors import BoneHubInputError
from results.manifest import read_manifest
from review.state import ReviewPlace

log = logging.getLogger("bonehub.dataset")


@dataclass(frozen=True)
class ExportOutcome:
    """What an export did."""

    exported: list[str]  # series whose labels were written
    empty: list[str]  # series whose trusted bones have no voxels (only noted in the card)
    failures: list[tuple[str, str]]  # (series UID, reason)
    changed: list[str]  # files written (new bytes), relative to the export folder
    removed: list[str]  # files of an earlier export this one no longer makes


def export_dataset(place: ReviewPlace, to: str | Path, fmt: str, selection: ExportSelection, *,
                   options: Mapping[str, object] | None = None, command: str = "") -> ExportOutcome:
    """Export the selected series' trusted labels to ``to`` in format ``fmt`` (``dataset.formats.FORMATS``)."""
    if fmt not in FORMATS:
        raise ExportInputError(f"unknown export format {fmt!r}: choose from {', '.join(FORMATS)}")
    to = Path(to)
    previous = _previous_card(to, fmt)
    manifest = read_manifest(place.manifest_uri)
    provenance, trusted = trusted_provenance(place, selection)
    if trusted.empty:
        raise ExportInputError(f"nothing to export: no bone of {len(set(provenance['series_uid']))} series is in the "
                               f"selected states ({', '.join(sorted(selection.states))}) and filters")
    options = dict(options or {})
    files = ExportFiles(to)
    writer = FORMATS[fmt](ExportContext(to, files, place, selection, manifest, provenance, options))
    failures: list[tuple[str, str]] = []
    exported, empty = [], []
    for final in final_series(place, selection, failures):
        try:
            with files.item():
                writer.add(final)
        except (BoneHubInputError, OSError) as error:
            failures.append((final.series_uid, f"{type(error).__name__}: {' '.join(str(error).split())}"))
            continue
        (exported if final.labels.any() else empty).append(final.series_uid)
    for uid, reason in failures:
        log.warning("series %s: not exported: %s", uid, reason)
    writer.finish(sorted(exported + empty))
    settings = {"selection": selection.settings(), "options": {k: _plain(v) for k, v in sorted(options.items())},
                "inputs": {"store": place.store_uri, "manifest": place.manifest_uri, "qc_dir": place.qc_dir}}
    card = build_card(fmt=fmt, command=command, settings=settings, provenance=provenance, trusted=trusted,
                      manifest=manifest, exported=exported, empty=empty, failures=failures, files=files.digests)
    files.put_bytes(CARD_JSON, card_bytes(card))
    files.put_bytes(CARD_README, readme_bytes(card))
    removed = files.remove_stale(previous.get("files", {}) if previous else {})
    return ExportOutcome(exported, empty, failures, sorted(files.changed), removed)


def _previous_card(to: Path, fmt: str) -> dict | None:
    """The card of the export already in ``to``; refuses a folder holding another format or unknown files."""
    if to.exists() and not to.is_dir():
        raise ExportInputError(f"--to {to}: not a folder")
    previous = read_card(to)
    if previous is None and to.is_dir() and any(to.iterdir()):
        raise ExportInputError(f"--to {to}: the folder holds files but no {CARD_JSON}; export into an empty folder "
                               "or an earlier export's")
    if previous is not None and previous.get("format") != fmt:
        raise ExportInputError(f"--to {to}: holds a {previous.get('format')} export; export {fmt} into another folder")
    return previous


def _plain(value: object) -> object:
    """An option as a JSON value (paths and enums as text)."""
    return value if isinstance(value, (bool, int, float, type(None))) else str(value)
