"""``bonehub qc`` (and the QC step that ends ``bonehub run``): arguments → stored SEGs and settings → the Beam job."""

from __future__ import annotations

import argparse
from pathlib import Path

from dicom_io.seg_writer import SegType
from pipeline.segment_command import DEFAULT_OUT, JobInputError, check_outputs, manifest_uri, run_cache_dir, store_uri
from results.blobs import join


def add_qc_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Thresholds and outputs of Stage 2 (shared by ``bonehub qc`` and ``bonehub run``)."""
    from qc.score import QcSettings

    d = QcSettings()
    qc = parser.add_argument_group("QC (Stage 2)")
    qc.add_argument("--qc-dir", help="folder or gs:// prefix for the QC tables and report (default: qc/ next to the manifest)")
    qc.add_argument("--qc-config", type=Path, help="JSON object of QC settings (fields of qc.score.QcSettings, e.g. "
                    '{"nsd_tolerance_mm_by_structure": {"vertebra_C1": 3}, "rule_penalty": {"too_small": 0.7}}); flags below win')
    qc.add_argument("--review-below", type=float, help=f"score below which a bone goes to review (default {d.review_below})")
    qc.add_argument("--nsd-tolerance-mm", type=float, help=f"NSD tolerance in mm (default {d.nsd_tolerance_mm})")
    qc.add_argument("--min-volume-ml", type=float, help=f"smaller bones are flagged too_small (default {d.min_volume_ml})")
    qc.add_argument("--consensus-seg-type", choices=list(SegType), default=SegType.LABELMAP,
                    help="consensus SEG type (default labelmap; binary for 3D Slicer QuantitativeReporting's SR view)")
    qc.add_argument("--snapshots", type=int, default=3, help="pictures of the worst bones per series in the report (default 3)")


def add_qc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"store holding the SEGs (folder, gs:// or DICOMweb URL; default {DEFAULT_OUT}); "
                        "the consensus SEGs and QC SRs are stored there too")
    parser.add_argument("--manifest", help="Stage 1 manifest listing the SEGs (default: OUT/manifest.parquet)")
    parser.add_argument("--series-uid", action="append", help="only these CT series (repeatable)")
    parser.add_argument("--ct-folder", type=Path, help="read the CT series from this folder instead of where the manifest says")
    parser.add_argument("--cache-dir", type=Path, help="where fetched CT series are kept (default: the one `bonehub segment` used for the same --out)")
    parser.add_argument("--idc-endpoint", help="S3 endpoint for IDC downloads (default: idc-index's)")
    add_qc_settings_arguments(parser)


def qc_settings(args: argparse.Namespace):
    """``QcSettings`` from ``--qc-config`` and the threshold flags; a bad value is a one-line input error."""
    import dataclasses
    import json

    from qc.score import QcSettings

    values = {}
    if args.qc_config:
        try:
            values = json.loads(args.qc_config.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise JobInputError(f"--qc-config {args.qc_config}: {error}") from None
        known = {f.name for f in dataclasses.fields(QcSettings)}
        if not isinstance(values, dict) or (unknown := sorted(set(values) - known)):
            raise JobInputError(f"--qc-config {args.qc_config}: expected a JSON object of {sorted(known)}"
                                + (f"; unknown: {unknown}" if isinstance(values, dict) else ""))
    for flag in ("review_below", "nsd_tolerance_mm", "min_volume_ml"):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if "multi_part" in values:
        values["multi_part"] = tuple(values["multi_part"])
    try:
        return QcSettings(**values)
    except (TypeError, ValueError) as error:
        raise JobInputError(f"QC settings: {error}") from None


def qc_dir(args: argparse.Namespace, manifest: str) -> str:
    """``--qc-dir``, else a ``qc`` folder next to the manifest (local or gs://)."""
    if args.qc_dir:
        return args.qc_dir
    folder = manifest.rsplit("/", 1)[0] if manifest.startswith("gs://") else str(Path(manifest).parent)
    return join(folder, "qc")


def run_qc_from_args(args: argparse.Namespace, series_uids: list[str] | None = None, settings=None) -> int:
    """Run Stage 2 over the manifest's SEGs (of ``series_uids`` or ``--series-uid`` when given), print a summary,
    and return how many series failed.

    ``settings``: the ``QcSettings`` when the caller checked them already (``run`` does, before Stage 1).
    """
    qc = settings or qc_settings(args)
    from pipeline.qc_job import QcJobSettings, run_qc_job
    from results.manifest import read_manifest
    from results.members import stored_segs
    import pandas as pd

    from results.qc_shards import read_qc_table
    from results.qc_tables import REPORT, SERIES_TABLE, TABLE, output_uri

    store = store_uri(args.out)
    manifest = manifest_uri(args)
    wanted = series_uids if series_uids is not None else args.series_uid
    segs = stored_segs(read_manifest(manifest), wanted)
    if not segs:
        raise JobInputError(f"no stored SEG in the manifest {manifest}" + (f" for series {', '.join(wanted)}" if wanted else ""))
    settings = QcJobSettings(
        store_uri=store, qc_dir=qc_dir(args, manifest), qc=qc, snapshots=args.snapshots,
        consensus_seg_type=args.consensus_seg_type,
        ct_folder=str(args.ct_folder) if getattr(args, "ct_folder", None) else None,
        idc_endpoint_url=args.idc_endpoint,
        cache_dir=str(run_cache_dir(args)),
    )
    if series_uids is None:  # `bonehub run` checked these before Stage 1
        check_outputs(args, run_cache_dir(args), settings.qc_dir)
    series = sorted({s.series_uid for s in segs})
    print(f"QC of {len(series)} series from {len(segs)} SEGs -> {settings.qc_dir}")
    run_qc_job(segs, settings, args.beam_args)

    mine = read_qc_table(settings.qc_dir, SERIES_TABLE, series=series)  # every series has its row: the job wrote it
    bones = read_qc_table(settings.qc_dir, TABLE, ["series_uid", "status"], series=series)
    bones = pd.DataFrame(columns=["series_uid", "status"]) if bones is None else bones
    counts = bones["status"].value_counts()
    print(f"QC: {int((mine['status'] == 'done').sum())} series done, {int((mine['status'] == 'failed').sum())} failed; "
          f"{len(bones)} structures: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("accept", "review", "absent", "insufficient_sources")))
    for row in mine.itertuples():
        if row.status == "failed":
            print(f"  failed: series {row.series_uid}: {row.error}")
        for skipped in filter(None, row.skipped.split(";")):
            print(f"  left out in series {row.series_uid}: {skipped}")
    print(f"QC report: {output_uri(settings.qc_dir, REPORT)}")
    return int((mine["status"] == "failed").sum())
