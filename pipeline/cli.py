"""``bonehub`` command line: one subcommand per job; a one-line reason on bad input; exit status as in ``exit_status``."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from dicom_io.seg_writer import SegCompression, SegType
from dicom_io.stores.redact import redact_urls
from labels.errors import BoneHubInputError
from labels.label_sets import packaged_label_sets
from pipeline import exit_status
from pipeline.qc_command import add_qc_arguments, add_qc_settings_arguments
from pipeline.dataset_command import add_dataset_command
from pipeline.review_command import add_review_commands
from pipeline.segment_command import add_job_arguments

DECODE_FORMATS = ("label-map", "bonehub-seg-nrrd")
INPUT_ERRORS = (BoneHubInputError, OSError)  # every package's input errors, and files that cannot be read or written

log = logging.getLogger("bonehub")


def _add_seg_commands(subparsers: argparse._SubParsersAction) -> None:
    seg = subparsers.add_parser("seg", help="encode label maps as DICOM SEG, decode SEGs to label maps")
    seg_commands = seg.add_subparsers(dest="seg_command", required=True)

    encode = seg_commands.add_parser("encode", help="CT series + native label map file -> DICOM SEG in the bone schema")
    encode.add_argument("--ct", required=True, type=Path, help="folder holding the CT series")
    encode.add_argument("--series-uid", help="SeriesInstanceUID to pick when the folder holds several series")
    encode.add_argument("--labels", required=True, type=Path, help="label map file (NIfTI .nii/.nii.gz or NRRD)")
    encode.add_argument("--label-set", required=True, help=f"native label set: one of {', '.join(packaged_label_sets())}, or a mapping CSV")
    encode.add_argument("--out", required=True, type=Path, help="SEG file to write")
    encode.add_argument("--type", choices=[t.value for t in SegType], default=SegType.LABELMAP.value, help="SEG type (default: labelmap)")
    encode.add_argument("--seg-compression", choices=[c.value for c in SegCompression],
                        help="transfer syntax (default: deflate for labelmap, none for binary; rle: labelmap only)")
    encode.add_argument("--source-name", required=True, help="algorithm name recorded in the SEG, e.g. 'TotalSegmentator total'")
    encode.add_argument("--source-version", required=True, help="algorithm version recorded in the SEG, e.g. 2.18.0")
    encode.add_argument("--augmentation", default="none", help="input augmentation the labels were made under")
    encode.set_defaults(handler=_seg_encode)

    decode = seg_commands.add_parser("decode", help="DICOM SEG -> label map file in schema ids + segment table")
    decode.add_argument("seg", type=Path, help="SEG file")
    decode.add_argument("--ct", type=Path, help="CT series folder: pads the label map to the full CT grid")
    decode.add_argument("--series-uid", help="CT SeriesInstanceUID, when the folder holds several (default: the series the SEG references)")
    decode.add_argument("--out", required=True, type=Path, help="label map file to write (.nii.gz or .nrrd; .seg.nrrd for bonehub-seg-nrrd)")
    decode.add_argument("--format", choices=DECODE_FORMATS, default=DECODE_FORMATS[0],
                        help="label-map: schema ids in the voxels (default); bonehub-seg-nrrd: a BoneHub layout v2 mask "
                             "(3D Slicer .seg.nrrd, BoneHub values and statuses in the segment tags)")
    decode.add_argument("--segments", type=Path, help="segment table to write (.csv or .json); default: next to --out")
    decode.add_argument("--strict", action="store_true", help="fail on segments that are not in the bone schema")
    decode.set_defaults(handler=_seg_decode)


def _seg_encode(args: argparse.Namespace) -> None:
    from dicom_io.ct_series import read_ct_series
    from dicom_io.label_images import read_label_image
    from dicom_io.provenance import SegmentationSource
    from dicom_io.seg_file import save_dicom
    from dicom_io.seg_writer import write_seg
    from labels.label_sets import load_label_set
    from models.harmonize import harmonize_on_ct

    ct = read_ct_series(args.ct, args.series_uid)
    label_set = load_label_set(args.label_set)
    schema_map = harmonize_on_ct(read_label_image(args.labels), label_set, ct)
    source = SegmentationSource(args.source_name, args.source_version, args.augmentation)
    seg = write_seg(schema_map, ct, source, seg_type=args.type, compression=args.seg_compression)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_dicom(seg, args.out)
    bones = sum(1 for item in seg.SegmentSequence if item.SegmentNumber != 0)  # LABELMAP adds background segment 0
    print(f"wrote {args.out}: {args.type} SEG {seg.SOPInstanceUID} with {bones} bone segments for series {ct.series_instance_uid}")


def _seg_decode(args: argparse.Namespace) -> None:
    from dicom_io.ct_series import read_ct_series
    from dicom_io.label_images import write_label_image
    from dicom_io.seg_reader import load_segmentation, read_seg

    seg = load_segmentation(args.seg)
    ct = None
    if args.ct:
        referenced = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])]
        ct = read_ct_series(args.ct, args.series_uid or (referenced[0] if len(referenced) == 1 else None))
    decoded = read_seg(seg, ct, strict=args.strict)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "bonehub-seg-nrrd":
        from dicom_io.bonehub_export import write_seg_as_bonehub

        write_seg_as_bonehub(seg, decoded, args.out)
    else:
        write_label_image(decoded.volume, args.out)
    table = args.segments or args.out.with_name(args.out.name.split(".")[0] + "_segments.csv")
    rows = [s.as_row() for s in decoded.segments]
    if table.suffix == ".json":
        table.write_text(json.dumps(rows, indent=2))
    else:
        with table.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["segment_number"])
            writer.writeheader()
            writer.writerows(rows)
    print(f"wrote {args.out} ({len(decoded.segments) - len(decoded.ignored)} bones, {len(decoded.ignored)} segments not in the schema) and {table}")


BEAM_NOTE = ". Unknown options (--runner, --direct_num_workers, Dataflow options) go to Apache Beam."


def _add_segment_commands(subparsers: argparse._SubParsersAction) -> None:
    for command, text in (("segment", "Stage 1: segment CT series with several sources and augmentations into SEGs"),
                          ("run", "the whole job on CT series: Stage 1 (segment), then Stage 2 (QC) of the series it covered")):
        parser = subparsers.add_parser(command, help=text, description=text + BEAM_NOTE)
        add_job_arguments(parser)
        if command == "run":
            add_qc_settings_arguments(parser)
        parser.set_defaults(handler=_segment)


def _add_qc_command(subparsers: argparse._SubParsersAction) -> None:
    text = "Stage 2: QC of stored SEGs (no model runs): consensus SEG, QC SR, tables and report"
    parser = subparsers.add_parser("qc", help=text, description=text + BEAM_NOTE)
    add_qc_arguments(parser)
    parser.set_defaults(handler=_qc)


def _add_sample_command(subparsers: argparse._SubParsersAction) -> None:
    sample = subparsers.add_parser("sample", help="bonehub run on the bundled sample CT (offline, no GPU or weights)")
    sample.add_argument("--out", type=Path, default=Path("output/sample"), help="output folder (default: output/sample)")
    sample.add_argument("--data", type=Path, help="sample folder with ct/ and the precomputed results (default: the bundled sample)")
    sample.set_defaults(handler=_sample)


def _segment(args: argparse.Namespace) -> None:
    from pipeline.qc_command import qc_dir, qc_settings, run_qc_from_args
    from pipeline.segment_command import manifest_uri, run_from_args

    qc = qc_settings(args) if args.command == "run" else None  # a bad QC setting fails before any segmentation
    stage1 = run_from_args(args, qc_folder=qc_dir(args, manifest_uri(args)) if qc is not None else None)
    failed = stage1.failed
    if qc is not None and stage1.stored:
        failed += run_qc_from_args(args, stage1.series_uids, qc)
    if failed:
        raise exit_status.SomeItemsFailed(failed, "item(s)")


def _qc(args: argparse.Namespace) -> None:
    from pipeline.qc_command import run_qc_from_args

    if failed := run_qc_from_args(args):
        raise exit_status.SomeItemsFailed(failed, "series")


def _review(args: argparse.Namespace) -> None:
    from pipeline.review_command import run_review
    from review.state import ReviewInputError

    if failed := run_review(args):
        raise ReviewInputError(f"review {args.review_command}: {failed} item(s) failed (listed above)")


def _sample(args: argparse.Namespace) -> None:
    from pipeline.sample_job import SAMPLE, sample_arguments

    argv = sample_arguments(args.out, args.data or SAMPLE)
    print("bonehub " + " ".join(_quote(a) for a in argv))
    run_args, beam_args = build_parser().parse_known_args(argv)
    run_args.beam_args = beam_args
    run_args.handler(run_args)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bonehub", description="Multi-model bone segmentation of CT, automatic QC and review, DICOM native.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_segment_commands(subparsers)
    _add_qc_command(subparsers)
    add_review_commands(subparsers, _review)
    add_dataset_command(subparsers)
    _add_sample_command(subparsers)
    _add_seg_commands(subparsers)
    return parser


def _redact_record(record: logging.LogRecord) -> bool:
    """Every log line goes out with the URLs in it redacted: credentials in a store URL never reach a log."""
    message = record.getMessage()
    redacted = redact_urls(message)
    if redacted != message:
        record.msg, record.args = redacted, ()
    return True


def _drop_beam_gcp_import_notice(record: logging.LogRecord) -> bool:
    """Beam warns on import that optional GCP client libraries are absent; nothing here needs them."""
    return not str(record.msg).startswith("apitools not found")


def _stray_values(beam_args: list[str]) -> list[str]:
    """Values among the options passed on to Beam that follow no option of their own.

    ``--idc-series A B`` gives ``B`` to Beam, which would ignore it: the run would quietly skip series B.
    """
    return [arg for before, arg in zip(["", *beam_args], beam_args)
            if not arg.startswith("-") and not (before.startswith("--") and "=" not in before)]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.handler not in (_segment, _qc):
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    if stray := _stray_values(beam_args):
        parser.error(f"unrecognized arguments: {' '.join(stray)} (repeat the option for each value, e.g. "
                     "--idc-series A --idc-series B)")
    args.beam_args = beam_args
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bonehub").setLevel(logging.INFO)  # progress of long steps is always shown
    logging.getLogger().addFilter(_drop_beam_gcp_import_notice)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)
    try:
        args.handler(args)
    except INPUT_ERRORS as error:
        print(f"bonehub: error: {redact_urls(' '.join(str(error).split()))}", file=sys.stderr)
        return exit_status.BAD_INPUT
    except exit_status.SomeItemsFailed as failure:
        print(f"bonehub: {failure}", file=sys.stderr)
        return exit_status.SOME_FAILED
    return exit_status.OK


if __name__ == "__main__":
    sys.exit(main())
