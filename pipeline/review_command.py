"""``bonehub review worklist | export | import | verdict | feedback``: Stage 3 from the command line.

Every command reads what Stages 1 and 2 stored (``--out`` store, manifest, QC
folder). ``export``, ``import`` and ``verdict`` take several items; one that fails
is named with its reason and the others go on (exit code 2 when any failed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dicom_io.cache import default_cache_dir
from pipeline.qc_command import qc_dir
from pipeline.segment_command import DEFAULT_OUT, manifest_uri, store_uri
from review.roi import NeighbourPolicy
from review.writeback import CorrectionMethod


def add_review_commands(subparsers: argparse._SubParsersAction, handler) -> None:
    review = subparsers.add_parser("review", help="Stage 3: worklist of doubted bones, ROI export for 3D Slicer, "
                                                  "import of corrections into new SEGs")
    commands = review.add_subparsers(dest="review_command", required=True)

    worklist = commands.add_parser("worklist", help="the structures QC sends to review, lowest score first")
    add_place_arguments(worklist)
    worklist.add_argument("--to", required=True, type=Path, help="folder for worklist.json and worklist.csv")
    worklist.add_argument("--from-store", action="store_true", help="read the QC SRs in the store instead of the QC tables")
    worklist.add_argument("--series-uid", action="append", help="only these CT series (repeatable)")

    export = commands.add_parser("export", help="ROI CT (DICOM + NRRD) and mask (SEG + NRRD) per item, for 3D Slicer")
    add_place_arguments(export)
    export.add_argument("--to", required=True, type=Path, help="export folder (holds worklist.json; one folder per item)")
    export.add_argument("--item", action="append", help="SERIES_UID/structure to export (repeatable; default: the worklist)")
    export.add_argument("--top", type=int, help="only the first N worklist items")
    export.add_argument("--margin-mm", type=float, default=10.0, help="context around the bone in mm (default 10)")
    export.add_argument("--mask-source", help="start from this source's mask (its name in the QC table) instead of the consensus")
    export.add_argument("--send-to", help="also store the ROI CT and SEG here (e.g. the DICOMweb server Slicer connects to)")

    imports = commands.add_parser("import", help="corrected masks → new corrected SEGs and revised QC SRs")
    add_place_arguments(imports)
    imports.add_argument("items", nargs="+", type=Path, help="exported item folders (EXPORT/SERIES_UID/structure)")
    imports.add_argument("--mask", type=Path, help="the corrected mask (.seg.nrrd/.nrrd/.nii.gz/.dcm; default: from correction.json)")
    imports.add_argument("--reviewer", help="the reviewer's name (default: from correction.json)")
    imports.add_argument("--method", choices=list(CorrectionMethod), help="how it was corrected (default semiautomatic)")
    imports.add_argument("--tool", help="the tool used (default SlicerNNInteractive)")
    imports.add_argument("--neighbours", choices=list(NeighbourPolicy), default=NeighbourPolicy.KEEP,
                         help="voxels the correction claims that another bone holds: that bone keeps them (default) "
                              "or the corrected bone takes them")

    verdict = commands.add_parser("verdict", help="accept as is, reject (with a reason) or mark missing: a revised QC SR, "
                                                  "no new SEG (review/README.md)")
    add_place_arguments(verdict)
    verdict.add_argument("items", nargs="*", type=Path, help="exported item folders (EXPORT/SERIES_UID/structure) to "
                                                             "accept or reject")
    says = verdict.add_mutually_exclusive_group(required=True)
    says.add_argument("--accept", action="store_true", help="right as it is, though QC doubted it")
    says.add_argument("--reject", metavar="REASON", help="unusable, and why")
    says.add_argument("--missing", action="store_true", help="in the image but no source labelled it "
                                                             "(with --series-uid and --structure)")
    verdict.add_argument("--series-uid", help="the CT series of a missing structure")
    verdict.add_argument("--structure", action="append", help="a missing structure's schema name (repeatable)")
    verdict.add_argument("--reviewer", required=True, help="the reviewer's name")
    verdict.add_argument("--reason", help="a note with an accept or a missing (a reject gives its reason itself)")

    feedback = commands.add_parser("feedback", help="how well the QC score predicted the reviewers: tables and a report "
                                                    "page in the QC folder")
    add_place_arguments(feedback)
    feedback.add_argument("--target-error", type=float, default=0.05,
                          help="residual error rate the suggested threshold must meet (default 0.05)")
    feedback.add_argument("--min-labels", type=int, default=20,
                          help="fewest reviewed bones for a risk-coverage curve (default 20)")
    review.set_defaults(handler=handler)


def add_place_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"store holding the SEGs and QC SRs (default {DEFAULT_OUT})")
    parser.add_argument("--manifest", help="Stage 1 manifest (default: OUT/manifest.parquet)")
    parser.add_argument("--qc-dir", help="QC tables folder (default: qc/ next to the manifest)")
    parser.add_argument("--ct-folder", type=Path, help="read the CT series from this folder instead of where the manifest says")
    parser.add_argument("--cache-dir", type=Path, help="where fetched CT series are kept")
    parser.add_argument("--idc-endpoint", help="S3 endpoint for IDC downloads (default: idc-index's)")


def review_place(args: argparse.Namespace):
    from review.state import ReviewPlace

    manifest = manifest_uri(args)
    return ReviewPlace(store_uri(args.out), manifest, qc_dir(args, manifest),
                       str(args.cache_dir or default_cache_dir()),
                       str(args.ct_folder) if args.ct_folder else None, args.idc_endpoint)


def run_review(args: argparse.Namespace) -> int:
    """Run one review command; returns the number of items that failed."""
    commands = {"worklist": _worklist, "export": _export, "import": _import, "verdict": _verdict, "feedback": _feedback}
    return commands[args.review_command](args, review_place(args))


def _worklist(args: argparse.Namespace, place) -> int:
    from dicom_io.stores import open_store
    from review.state import reviewed_bones, corrections, qc_tables
    from review.worklist import worklist_from_store, worklist_from_tables, write_worklist

    if args.from_store:
        items = worklist_from_store(open_store(place.store_uri), args.series_uid)
    else:
        items = worklist_from_tables(qc_tables(place)[0], reviewed_bones(corrections(place)), args.series_uid)
    path = write_worklist(items, args.to)
    print(f"worklist: {len(items)} structures to review -> {path}")
    for item in items[:20]:
        print(f"  {item.priority:3d}. {item.item_id}  score {item.score:.3f}  {';'.join(item.flags)}"
              + (f"  outlier: {item.outlier_source}" if item.outlier_source else ""))
    return 0


def _export(args: argparse.Namespace, place) -> int:
    from review.export import export_item
    from review.series import SeriesLoader
    from review.state import ReviewInputError
    from review.worklist import read_worklist

    items = read_worklist(args.to)
    if args.item:
        by_id = {item.item_id: item for item in items}
        missing = [i for i in args.item if i not in by_id]
        if missing:
            raise ReviewInputError(f"not in the worklist {args.to / 'worklist.json'}: {', '.join(missing)}")
        items = [by_id[i] for i in args.item]
    items = items[: args.top] if args.top else items
    loader = SeriesLoader(place)
    failed = 0
    for item in items:
        try:
            folder = export_item(place, item, args.to, margin_mm=args.margin_mm, mask_source=args.mask_source,
                                 send_to=args.send_to, loader=loader)
        except Exception as error:  # one bad item is reported; the others are exported
            failed += 1
            print(f"  failed: {item.item_id}: {type(error).__name__}: {' '.join(str(error).split())}")
            continue
        print(f"  exported {item.item_id} -> {folder}")
    print(f"export: {len(items) - failed} items exported, {failed} failed")
    return failed


def _import(args: argparse.Namespace, place) -> int:
    from review.series import SeriesLoader
    from review.state import ReviewInputError
    from review.verdict import VERDICT_FILE, read_verdict_file, record_item_verdict, record_missing
    from review.writeback import CORRECTION_FILE, import_correction, reviewer_from_folder

    loader = SeriesLoader(place)
    failed = 0
    for folder in args.items:
        try:
            if (folder / VERDICT_FILE).is_file():  # the Slicer module's Accept as is / Reject
                if (folder / CORRECTION_FILE).is_file() or args.mask:
                    raise ReviewInputError(f"{folder}: holds {VERDICT_FILE} and a correction; keep the one you mean")
                request, series_uid, bone = read_verdict_file(folder, args.reviewer)
                if request.verdict == "missing":
                    outcome = record_missing(place, series_uid, bone, request, loader=loader)
                else:
                    outcome = record_item_verdict(place, folder, request, loader=loader)
                _print_verdict(folder, outcome)
                continue
            reviewer = reviewer_from_folder(folder, name=args.reviewer, method=args.method, tool=args.tool)
            outcome = import_correction(place, folder, reviewer, mask_path=args.mask, policy=args.neighbours, loader=loader)
        except Exception as error:  # one bad correction is reported and writes nothing; the others go on
            failed += 1
            print(f"  failed: {folder}: {type(error).__name__}: {' '.join(str(error).split())}")
            continue
        row = outcome.row
        if outcome.already_imported:
            print(f"  {folder}: already imported as SEG {row['seg_sop_uid']}; nothing written")
        else:
            print(f"  {folder}: corrected SEG {row['seg_sop_uid']}, revised SR {row['sr_sop_uid']} "
                  f"(+{row['added']} -{row['removed']} voxels, {row['contested']} claimed by neighbours, {row['taken']} taken)")
    print(f"import: {len(args.items) - failed} done, {failed} failed")
    return failed


def _verdict(args: argparse.Namespace, place) -> int:
    from review.series import SeriesLoader
    from review.state import ReviewInputError
    from review.verdict import VerdictRequest, record_item_verdict, record_missing

    verdict = "accepted" if args.accept else "rejected" if args.reject else "missing"
    request = VerdictRequest(verdict, args.reviewer, args.reject or args.reason or "")
    loader = SeriesLoader(place)
    if args.missing:
        if args.items or not args.series_uid or not args.structure:
            raise ReviewInputError("--missing takes --series-uid UID and --structure NAME (repeatable), no item folders")
        targets = [(f"{args.series_uid}/{name}", lambda name=name: record_missing(place, args.series_uid, name, request,
                                                                                    loader=loader)) for name in args.structure]
    else:
        if not args.items or args.series_uid or args.structure:
            raise ReviewInputError(f"--{'accept' if args.accept else 'reject'} takes exported item folders "
                                   "(EXPORT/SERIES_UID/structure), not --series-uid / --structure")
        targets = [(folder, lambda folder=folder: record_item_verdict(place, folder, request, loader=loader))
                   for folder in args.items]
    failed = 0
    for name, record in targets:
        try:
            _print_verdict(name, record())
        except Exception as error:  # one refused verdict is reported and writes nothing; the others go on
            failed += 1
            print(f"  failed: {name}: {type(error).__name__}: {' '.join(str(error).split())}")
    print(f"verdict: {len(targets) - failed} done, {failed} failed")
    return failed


def _print_verdict(name: object, outcome) -> None:
    row = outcome.row
    if outcome.already_imported:
        print(f"  {name}: already {row['verdict']} by {row['reviewer']} at {row['imported_at']}; nothing written")
    else:
        print(f"  {name}: {row['verdict']}, revised SR {row['sr_sop_uid']}")


def _feedback(args: argparse.Namespace, place) -> int:
    from review.feedback import write_feedback

    summary = write_feedback(place.qc_dir, target_error=args.target_error, min_labels=args.min_labels)
    print(summary.describe())
    print(f"feedback: review_labels.parquet, risk_coverage.parquet and review_feedback.html in {place.qc_dir}")
    return 0
