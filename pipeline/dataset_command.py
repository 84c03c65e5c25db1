"""``bonehub dataset export``: the curated dataset out of the stored results, in one format, with its data card.

Reads what Stages 1-3 stored (the store, the manifest, the QC folder with the
corrections log) through ``dataset/``; never loads Apache Beam. A series that
fails is named and the others are exported (exit 3); a bad selection, format or
folder is one line (exit 2) before anything is written.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from pipeline import exit_status
from pipeline.review_command import add_place_arguments, review_place

# The command-line options each format reads (recorded in the data card); a new format adds its own entry.
FORMAT_OPTIONS = {"dicom": ("seg_type",), "bonehub": ("dataset_id",), "nnunet": ("dataset_id",)}


def add_dataset_command(subparsers: argparse._SubParsersAction) -> None:
    from dataset.formats import FORMATS
    from dataset.selection import DEFAULT_STATES, STATES

    dataset = subparsers.add_parser("dataset", help="the curated dataset out: trusted labels in DICOM, BoneHub or "
                                                    "nnU-Net form, with a data card")
    commands = dataset.add_subparsers(dest="dataset_command", required=True)
    export = commands.add_parser("export", help="export the trusted bones of the selected series (docs/dataset_export.md)")
    add_place_arguments(export)
    export.add_argument("--to", required=True, type=Path, help="export folder (empty, or an earlier export of this format)")
    export.add_argument("--format", required=True, choices=list(FORMATS), help="the dataset form")
    export.add_argument("--state", action="append", choices=STATES, metavar="STATE",
                        help=f"a provenance state to trust (repeatable; default {', '.join(sorted(DEFAULT_STATES))}; "
                             f"one of {', '.join(STATES)})")
    export.add_argument("--min-score", type=float, help="automatic states only: leave out bones whose QC score is lower")
    export.add_argument("--series-uid", action="append", help="only these CT series (repeatable)")
    export.add_argument("--collection", action="append",
                        help="only series of these collections (repeatable): an IDC collection id or BoneHub-Dataset_NNN")
    export.add_argument("--seg-type", choices=["binary", "labelmap"], default="binary",
                        help="dicom: the final SEG's type (default binary, the one dciodvfy and dcmqi check)")
    export.add_argument("--dataset-id", help="bonehub: the dataset id given to CT series not from a BoneHub dataset "
                                             "(default 999); nnunet: the nnU-Net dataset number (default 800)")
    dataset.set_defaults(handler=run_dataset)


def run_dataset(args: argparse.Namespace) -> None:
    """Run ``bonehub dataset export``; raises ``SomeItemsFailed`` when some series failed (listed above)."""
    from dataset.export import export_dataset
    from dataset.selection import DEFAULT_STATES, ExportSelection

    selection = ExportSelection(states=frozenset(args.state or DEFAULT_STATES), min_score=args.min_score,
                                series_uids=frozenset(args.series_uid) if args.series_uid else None,
                                collections=frozenset(args.collection) if args.collection else None)
    options = {name: getattr(args, name) for name in FORMAT_OPTIONS.get(args.format, ()) if getattr(args, name) is not None}
    place = review_place(args)
    outcome = export_dataset(place, args.to, args.format, selection, options=options, command=command_line(args))
    for uid, reason in outcome.failures:
        print(f"  failed: series {uid}: {reason}")
    print(f"dataset export ({args.format}) -> {args.to}: {len(outcome.exported)} series exported, "
          f"{len(outcome.empty)} without voxels to export, {len(outcome.failures)} failed; "
          f"{len(outcome.changed)} files written, {len(outcome.removed)} removed")
    if outcome.failures:
        raise exit_status.SomeItemsFailed(len(outcome.failures), "series")


def command_line(args: argparse.Namespace) -> str:
    """The export's command in one canonical form (the data card records it): every setting that shapes the export."""
    words = ["bonehub", "dataset", "export", "--out", args.out]
    for flag, value in (("--manifest", args.manifest), ("--qc-dir", args.qc_dir), ("--ct-folder", args.ct_folder),
                        ("--to", args.to), ("--format", args.format), ("--min-score", args.min_score)):
        if value is not None:
            words += [flag, str(value)]
    for flag, values in (("--state", args.state), ("--series-uid", args.series_uid), ("--collection", args.collection)):
        for value in sorted(values or ()):
            words += [flag, value]
    for name in FORMAT_OPTIONS.get(args.format, ()):
        if getattr(args, name) is not None:
            words += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return shlex.join(words)
