"""``bonehub segment`` / ``bonehub run``: command-line arguments → series refs, sources, settings → the Beam job.

Everything is checked before the job starts (inputs resolve, source specs build,
augmentations parse), so a typo fails in a second with a one-line reason instead
of after the first download. CT volume files are made DICOM series before the job
(``pipeline.inputs``); one that cannot be used is named on stderr, the others run, and
the command then ends with that error (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dicom_io.cache import default_cache_dir
from dicom_io.seg_writer import SegCompression, SegType
from dicom_io.stores.redact import redact_url
from labels.errors import BoneHubInputError
from pipeline.dataflow import DataflowProfile
from results.blobs import join

if TYPE_CHECKING:
    from pipeline.segment_steps import SegmentSettings

DEFAULT_OUT = "output/segmentations"


class JobInputError(BoneHubInputError):
    """Arguments that do not describe a job (no input, two kinds of input, no manifest location)."""


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    inputs = parser.add_argument_group("input CT series (choose one kind)")
    inputs.add_argument("--dicom-folder", type=Path, help="local folder with DICOM files (walked recursively)")
    inputs.add_argument("--idc-collection", help="IDC collection_id, e.g. nlst")
    inputs.add_argument("--idc-patient", action="append", help="IDC PatientID (repeatable)")
    inputs.add_argument("--idc-study", action="append", help="IDC StudyInstanceUID (repeatable)")
    inputs.add_argument("--idc-series", action="append", help="IDC SeriesInstanceUID (repeatable)")
    inputs.add_argument("--idc-csv", type=Path, help="CSV with a SeriesInstanceUID column of IDC series")
    inputs.add_argument("--dicomweb", help="DICOMweb URL (or gs:// / folder store) searched for CT series (QIDO)")
    inputs.add_argument("--study-uid", action="append", help="with --dicomweb: only these studies (repeatable)")
    inputs.add_argument("--series-uid", action="append", help="with --dicom-folder/--dicomweb: only these series (repeatable)")
    inputs.add_argument("--idc-endpoint", help="S3 endpoint for IDC downloads (default: idc-index's)")
    inputs.add_argument("--volumes", type=Path, metavar="PATH",
                        help="CT volume files (NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, MHA .mha/.mhd): a file, a folder "
                             "of them (not walked) or a CSV with a 'path' column (relative to the CSV)")
    inputs.add_argument("--bonehub-dataset", type=Path, metavar="ROOT",
                        help="a BoneHub-Dataset folder (of Dataset_NNN/ folders, or one of them): every subject's Image")

    job = parser.add_argument_group("segmentation")
    job.add_argument("--source", action="append", required=True, metavar="SPEC",
                     help="segmentation source (repeatable): totalsegmentator:total | totalsegmentator:total-fast | "
                          "totalsegmentator:appendicular_bones | moose:MODEL | nnunet:FOLDER?mapping=CSV | "
                          "auto3dseg:WORKDIR?mapping=CSV | precomputed:FOLDER_OR_CSV?label_set=..&name=..&version=.. | "
                          "baseline | plugin:module:Class (see models/sources.py)")
    job.add_argument("--augment", action="append", default=[], metavar="AUG",
                     help="input augmentation besides the plain input (repeatable): 'rotate(5,0,-3)', 'noise(20)', "
                          "'intensity(scale=1.05,shift=10,gamma=0.9)'")
    job.add_argument("--seg-type", choices=list(SegType), default=SegType.LABELMAP, help="SEG type (default: labelmap)")
    job.add_argument("--seg-compression", choices=list(SegCompression),
                     help="the SEGs' transfer syntax: deflate | rle (labelmap only) | none (default: deflate for labelmap, "
                          "none for binary); the SEG UIDs do not depend on it")

    out = parser.add_argument_group("output")
    out.add_argument("--out", default=DEFAULT_OUT,
                     help=f"store for the SEGs: folder, gs://bucket/prefix or DICOMweb URL (default: {DEFAULT_OUT})")
    out.add_argument("--manifest", help="manifest parquet (local or gs://; default: OUT/manifest.parquet for a folder or gs:// store)")
    out.add_argument("--cache-dir", type=Path, help="where fetched series are kept (default: a folder under the system temp dir named after --out, shared by segment, qc and review of that output)")
    out.add_argument("--staging", metavar="FOLDER_OR_GS",
                     help="where read CTs and label maps wait between the CPU and GPU steps, and are kept for a rerun "
                          "after a failure (pipeline/staging.py; default: CACHE_DIR/staging; gs://... on Dataflow: "
                          "the checkpoints bucket)")

    default = DataflowProfile()
    cloud = parser.add_argument_group("Dataflow (with --runner DataflowRunner; see pipeline/README.md)")
    cloud.add_argument("--gpu", default=default.gpu_type, metavar="TYPE",
                       help=f"GPU of the segmentation step's workers (default: {default.gpu_type})")
    cloud.add_argument("--gpu-count", type=int, default=default.gpu_count, metavar="N",
                       help=f"GPUs per worker; 0: no GPU, for sources that need none (default: {default.gpu_count})")
    cloud.add_argument("--gpu-machine-type", default=default.gpu_machine_type, metavar="TYPE",
                       help=f"machine type of the GPU workers, matching the GPU; '' for Dataflow's choice "
                            f"(default: {default.gpu_machine_type})")
    cloud.add_argument("--dry-run-proto", type=Path, metavar="PATH",
                       help="bonehub segment only: write Stage 1's pipeline as the runner would get it (text proto, "
                            "options in its first line) to PATH and run nothing")


@dataclass(frozen=True)
class Stage1Summary:
    """What a Stage 1 command did: the series it covered, its outputs in the store, and what failed."""

    series_uids: list[str]
    stored: int  # outputs written or found in the store
    failed: int  # outputs that failed, and input volumes that could not be used


def run_from_args(args: argparse.Namespace, qc_folder: str | None = None) -> Stage1Summary:
    """Run Stage 1 as the arguments say and print a summary.

    Every output location (``qc_folder`` too, for ``bonehub run``) is checked before any work.
    """
    from models.sources import build_source
    from pipeline.dataflow import accelerators, runs_on_dataflow, write_pipeline_proto
    from pipeline.segment_job import run_segment_job, segment_pipeline
    from pipeline.segment_steps import SegmentSettings
    from pipeline.stage1 import SourceInfo, canonical_augmentations, plan_outputs
    from results.manifest import FAILED, read_manifest

    if args.dry_run_proto and args.command != "segment":
        raise JobInputError("--dry-run-proto writes Stage 1's pipeline: use it with bonehub segment")
    if args.seg_compression == SegCompression.RLE and args.seg_type == SegType.BINARY:
        raise JobInputError("--seg-compression rle is for labelmap SEGs only: a binary SEG takes deflate or none")
    dataflow = _dataflow_profile(args) if runs_on_dataflow(args.beam_args) else None
    cache_dir = run_cache_dir(args)
    sources = tuple(SourceInfo.of(spec, build_source(spec)) for spec in dict.fromkeys(args.source))
    try:
        augmentations = tuple(canonical_augmentations(args.augment))
    except ValueError as error:
        raise JobInputError(str(error)) from None
    settings = SegmentSettings(
        sources=sources, augmentations=augmentations, store_uri=store_uri(args.out),
        manifest_uri=manifest_uri(args), seg_type=args.seg_type, seg_compression=args.seg_compression,
        idc_endpoint_url=args.idc_endpoint,
        cache_dir=str(cache_dir), staging_uri=args.staging or str(cache_dir / "staging"),
        keep_downloads=dataflow is None,  # locally, Stage 2 reads the CT from the same cache
    )
    if dataflow is not None:
        _check_dataflow_locations(settings)
    if not args.dry_run_proto:  # a dry run writes only the pipeline, offline
        check_outputs(args, cache_dir, qc_folder)
    series, bad_inputs = _series_refs(args, cache_dir)
    planned = [task for ref in series for task in plan_outputs(ref, sources, augmentations, args.seg_type)]
    print(f"{len(series)} series x {len(sources)} sources x {len(augmentations)} augmentations "
          f"({', '.join(augmentations)}): {len(planned)} outputs -> {redact_url(settings.store_uri)}")
    if args.dry_run_proto:
        # Beam's own --dry_run keeps option validation off the network (no bucket checks); the selection
        # file the job would read is written to a temp folder, and removed with it
        with tempfile.TemporaryDirectory(prefix="bonehub-selection-") as selection_root:
            pipeline = segment_pipeline(series, settings, [*args.beam_args, "--dry_run=True"], dataflow, selection_root)
            proto = write_pipeline_proto(pipeline, args.dry_run_proto)
        hinted = accelerators(proto)
        print(f"wrote {args.dry_run_proto}: the pipeline, not run; "
              + (f"accelerator {next(iter(hinted.values()))} on {', '.join(sorted(hinted))}" if hinted else "no accelerator"))
        return Stage1Summary([ref.series_uid for ref in series], 0, len(bad_inputs))
    run_segment_job(series, settings, args.beam_args, dataflow)

    manifest = read_manifest(settings.manifest_uri)
    keys = {task.row("failed").key for task in planned}
    mine = manifest[[tuple(k) in keys for k in manifest[["series_instance_uid", "source", "source_version",
                                                          "augmentation", "seg_type"]].itertuples(index=False)]]
    counts = Counter(mine["status"])
    print(f"manifest {redact_url(settings.manifest_uri)}: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("written", "exists", "failed")))
    for row in mine[mine["status"] == FAILED].itertuples():
        print(f"  failed: series {row.series_instance_uid} | {row.source} | {row.augmentation}: {row.error}")
    return Stage1Summary([ref.series_uid for ref in series], counts.get("written", 0) + counts.get("exists", 0),
                         counts.get(FAILED, 0) + len(bad_inputs))


def check_outputs(args: argparse.Namespace, cache_dir: Path, qc_folder: str | None = None) -> None:
    """Every place the command writes is writable (store, manifest, cache, QC folder): a bad one fails in a second."""
    from dicom_io.stores import open_store
    from dicom_io.stores.preflight import check_local_folder, check_output_store, remove_dead_temp_files

    check_output_store(open_store(args.out))
    manifest = manifest_uri(args)
    folders = [(manifest.rsplit("/", 1)[0] if manifest.startswith("gs://") else str(Path(manifest).parent), "manifest folder"),
               (str(cache_dir), "cache folder"), (qc_folder, "QC folder")]
    for folder, what in folders:
        if folder is None:
            continue
        if folder.startswith("gs://"):
            check_output_store(open_store(folder))
        else:
            check_local_folder(folder, what)
            if what != "cache folder":
                remove_dead_temp_files(folder)  # tables half-written by a killed run


def _dataflow_profile(args: argparse.Namespace) -> DataflowProfile:
    """The Dataflow profile the arguments ask for; a job Dataflow workers could not run fails here, in a second."""
    from apache_beam.options.pipeline_options import PipelineOptions, WorkerOptions

    if args.dicom_folder or args.volumes or args.bonehub_dataset:
        raise JobInputError("--dicom-folder, --volumes and --bonehub-dataset are files on this machine, which Dataflow "
                            "workers cannot read: give --idc-* or --dicomweb input")
    if not PipelineOptions(list(args.beam_args)).view_as(WorkerOptions).sdk_container_image:
        raise JobInputError("Dataflow needs the worker image: --sdk_container_image=REGION-docker.pkg.dev/PROJECT/REPO/"
                            "IMAGE:TAG (built from the Dockerfile)")
    try:
        return DataflowProfile(gpu_type=args.gpu, gpu_count=args.gpu_count, gpu_machine_type=args.gpu_machine_type or None)
    except ValueError as error:
        raise JobInputError(str(error)) from None


def _check_dataflow_locations(settings: SegmentSettings) -> None:
    """SEGs, the manifest and the staging area must be where workers (and this machine) reach: a bucket or a server."""
    if settings.store_uri.startswith("file://"):
        raise JobInputError(f"--out {settings.store_uri} is a folder on this machine, which Dataflow workers cannot "
                            "write: give gs://bucket/prefix or a DICOMweb URL")
    if not settings.manifest_uri.startswith("gs://"):
        raise JobInputError(f"the manifest {settings.manifest_uri} must be on GCS for a Dataflow run: give --manifest gs://...")
    if not settings.staging_uri.startswith("gs://"):
        raise JobInputError(f"the staging area {settings.staging_uri} must be on GCS for a Dataflow run, where the CPU "
                            "and GPU workers both reach it: give --staging gs://CHECKPOINTS_BUCKET/staging "
                            "(terraform output checkpoints_bucket)")


def _series_refs(args: argparse.Namespace, cache_dir: Path) -> tuple[list, list[str]]:
    """The refs of the one kind of input given, and the one-line errors of volume files that cannot be used."""
    from dicom_io.idc import read_uid_csv
    from pipeline.inputs import bonehub_inputs, idc_series, local_series, store_series, volume_inputs, volume_series

    idc = any([args.idc_collection, args.idc_patient, args.idc_study, args.idc_series, args.idc_csv])
    kinds = [name for name, given in (("--dicom-folder", args.dicom_folder), ("IDC", idc), ("--dicomweb", args.dicomweb),
                                      ("--volumes", args.volumes), ("--bonehub-dataset", args.bonehub_dataset)) if given]
    if len(kinds) != 1:
        raise JobInputError("give exactly one kind of input (--dicom-folder, --idc-*, --dicomweb, --volumes, "
                            f"--bonehub-dataset); got {', '.join(kinds) or 'none'}")
    if args.volumes or args.bonehub_dataset:
        items = volume_inputs(args.volumes) if args.volumes else bonehub_inputs(args.bonehub_dataset)
        refs, errors = volume_series(items, cache_dir)
        for error in errors:
            print(f"bonehub: error: {error}", file=sys.stderr)
        if not refs:
            raise JobInputError(f"none of the {len(items)} input volume(s) could be used (each named above)")
        return refs, errors
    if args.dicom_folder:
        return local_series(args.dicom_folder, args.series_uid), []
    if args.dicomweb:
        return store_series(args.dicomweb, study_uids=args.study_uid, series_uids=args.series_uid), []
    series_uids = list(args.idc_series or []) + (read_uid_csv(args.idc_csv) if args.idc_csv else [])
    return idc_series(collection_id=args.idc_collection, patient_ids=args.idc_patient, study_uids=args.idc_study,
                      series_uids=series_uids or None), []


def run_cache_dir(args: argparse.Namespace) -> Path:
    """``--cache-dir``, else the cache of the runs into this output store (the same for segment, qc and review)."""
    return Path(args.cache_dir) if args.cache_dir else default_cache_dir(output=store_uri(args.out))


def store_uri(out: str) -> str:
    from dicom_io.stores import open_store

    return open_store(out).uri


def manifest_uri(args: argparse.Namespace) -> str:
    if args.manifest:
        return args.manifest
    if args.out.startswith("gs://"):
        return join(args.out, "manifest.parquet")
    if "://" in args.out and not args.out.startswith("file://"):
        raise JobInputError(f"--out {args.out} is not a folder or bucket: give --manifest PATH for the run manifest")
    from dicom_io.stores import open_store

    return str(Path(open_store(args.out).root) / "manifest.parquet")
