"""The data card beside every export: what is in it, how far it can be trusted, where it came from, how it was made.

``datacard.json`` (for programs) and ``README.md`` (for people) say: the series
exported, empty or failed; bones per provenance state (in the selection's scope,
and how many were exported); the QC score distribution of the exported bones per
structure; the sources and versions that segmented the series (manifest); the
input collections with licence and DOI where known; the exact command, selection
and format settings; and every file with its SHA-256. No export time is recorded:
everything in the card follows from the inputs, so rerunning an unchanged export
rewrites no byte (the files' mtimes say when they last changed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dataset.inputs import idc_version, series_inputs
from dataset.errors import ExportInputError
from dicom_io.seg_writer import MANUFACTURER, SOFTWARE_VERSION
from labels.schema import default_schema
from results.manifest import EXISTS, WRITTEN
from results.members import CONSENSUS_NAME
from results.series_ref import IDC
from review.provenance import STATE_STATUS, ProvenanceState

CARD_JSON, CARD_README = "datacard.json", "README.md"
CARD_FORMAT = "bonehub-datacard/1"
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def read_card(folder: Path) -> dict | None:
    """The data card of an earlier export in ``folder``; None when there is none."""
    path = folder / CARD_JSON
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportInputError(f"{path}: unreadable data card ({error}); export into an empty folder") from None
    if not isinstance(card, dict) or card.get("card") != CARD_FORMAT:
        raise ExportInputError(f"{path}: not a {CARD_FORMAT} data card; export into an empty folder")
    return card


def build_card(*, fmt: str, command: str, settings: dict, provenance: pd.DataFrame, trusted: pd.DataFrame,
               manifest: pd.DataFrame, exported: list[str], empty: list[str], failures: list[tuple[str, str]],
               files: dict[str, str]) -> dict:
    """The card's content (see the module docstring); every list sorted, so equal inputs give equal bytes."""
    done = sorted(exported + empty)
    inputs = series_inputs(manifest)
    inputs = inputs[inputs["series_uid"].isin(done)]
    collections = (inputs.groupby(["collection", "licence", "source_doi"]).size().reset_index(name="series")
                   .sort_values(["collection", "licence", "source_doi"]))
    card = {
        "card": CARD_FORMAT,
        "format": fmt,
        "command": command,
        "settings": settings,
        "software": {"name": MANUFACTURER, "version": SOFTWARE_VERSION},
        "series": {"exported": len(exported), "empty": sorted(empty),
                   "failed": [{"series_uid": uid, "reason": reason} for uid, reason in sorted(failures)]},
        "states": _states(provenance, trusted[trusted["series_uid"].isin(done)], set(settings["selection"]["states"])),
        "scores": _scores(trusted[trusted["series_uid"].isin(done)]),
        "sources": _sources(manifest, done),
        "collections": collections.to_dict("records"),
        "time": "not recorded: the card follows from the inputs, so an unchanged rerun rewrites no byte",
        "files": dict(sorted(files.items())),
    }
    if (manifest["series_instance_uid"].isin(done) & (manifest["ct_kind"] == IDC.value)).any():
        card["idc_index_version"] = idc_version()
    return card


def card_bytes(card: dict) -> bytes:
    return (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def readme_bytes(card: dict) -> bytes:
    """The card as a Markdown page."""
    lines = [f"# Bone segmentation dataset ({card['format']})", "",
             f"Made by {card['software']['name']} {card['software']['version']} with:", "",
             f"    {card['command']}", "",
             f"Series exported: {card['series']['exported']}; with no voxel to export (only bones without voxels "
             f"trusted): {len(card['series']['empty'])}; failed: {len(card['series']['failed'])}.", "",
             "Only bones in the selected provenance states are in the labels; every other bone is left out "
             "(nnU-Net: set to the ignore label). Selection and settings: see `datacard.json` (`settings`).", "",
             "## Bones per provenance state", "",
             "| state | BoneHub status | selected | series | bones | exported |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['state']} | {s['bonehub_status']} | {'yes' if s['selected'] else 'no'} | {s['series']} | "
              f"{s['bones']} | {s['exported']} |" for s in card["states"]]
    lines += ["", "## QC score of the exported bones, per structure", "",
              "| structure | bones | min | 25% | median | 75% | max |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {s['structure']} | {s['bones']} | " + " | ".join(_number(s[q]) for q in ("min", "q25", "median", "q75",
                                                                                           "max")) + " |"
              for s in card["scores"]]
    lines += ["", "## Sources", "", "| source | version | augmentation | series |", "|---|---|---|---|"]
    lines += [f"| {s['source']} | {s['version']} | {s['augmentation']} | {s['series']} |" for s in card["sources"]]
    lines += ["", "## Input collections", "", "| collection | licence | source DOI | series |", "|---|---|---|---|"]
    lines += [f"| {c['collection'] or '(local input)'} | {c['licence'] or 'unknown'} | {c['source_doi'] or '-'} | "
              f"{c['series']} |" for c in card["collections"]]
    if "idc_index_version" in card:
        lines += ["", f"IDC collections and licences from idc-index {card['idc_index_version']}."]
    if card["series"]["failed"]:
        lines += ["", "## Failed series (a rerun retries them)", ""]
        lines += [f"- {f['series_uid']}: {f['reason']}" for f in card["series"]["failed"]]
    lines += ["", f"Export time: {card['time']}. Files and their SHA-256: `datacard.json` (`files`).", ""]
    return "\n".join(lines).encode("utf-8")


def _states(provenance: pd.DataFrame, exported: pd.DataFrame, selected: set[str]) -> list[dict]:
    rows = []
    for state in ProvenanceState:
        mine = provenance[provenance["state"] == state.value]
        codes = sorted({int(c) for c in mine["bonehub_status"]} or {STATE_STATUS[state].code})
        rows.append({"state": state.value, "bonehub_status": "/".join(f"{c:02d}" for c in codes),
                     "selected": state.value in selected, "series": int(mine["series_uid"].nunique()),
                     "bones": len(mine), "exported": int((exported["state"] == state.value).sum())})
    return rows


def _scores(exported: pd.DataFrame) -> list[dict]:
    rows = []
    schema = default_schema()
    for structure, group in sorted(exported.groupby("structure"), key=lambda item: schema[item[0]].id):
        scores = group["score"].astype(float).to_numpy()
        scores = scores[np.isfinite(scores)]
        values = np.quantile(scores, QUANTILES) if scores.size else [float("nan")] * len(QUANTILES)
        rows.append({"structure": str(structure), "bones": len(group),
                     **{key: _rounded(v) for key, v in zip(("min", "q25", "median", "q75", "max"), values)}})
    return rows


def _sources(manifest: pd.DataFrame, series: list[str]) -> list[dict]:
    rows = manifest[manifest["series_instance_uid"].isin(series) & manifest["status"].isin([WRITTEN, EXISTS])
                    & (manifest["source"] != CONSENSUS_NAME)]
    counts = rows.groupby(["source", "source_version", "augmentation"])["series_instance_uid"].nunique()
    return [{"source": source, "version": version, "augmentation": augmentation, "series": int(n)}
            for (source, version, augmentation), n in sorted(counts.items())]


def _rounded(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 4)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
