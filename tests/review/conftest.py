"""Stage 1 + 2 outputs to review, made once per session and copied per test (an import changes the store).

``reviewed_sample``: the bundled sample job (two real TotalSegmentator results and
the baseline) with QC rerun at review_below 0.95, so bones (not only the
skeleton) go to review, and a BINARY consensus SEG so dciodvfy can check the
corrected SEG. ``oblique_run``: the sample CT rewritten with a non-identity
direction and a non-zero origin, segmented by the same two real results moved
onto that grid, with the default LABELMAP consensus.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dicom_io.ct_series import read_ct_series
from dicom_io.ct_writer import write_ct_series
from dicom_io.label_images import onto_grid, read_label_image, write_label_image
from pipeline.cli import main
from pipeline.sample_job import SAMPLE


@dataclass(frozen=True)
class Run:
    """One copy of a Stage 1 + 2 output folder, and the arguments every ``bonehub review`` command needs."""

    root: Path
    ct_folder: Path

    @property
    def place_args(self) -> list[str]:
        return ["--out", str(self.root / "seg"), "--manifest", str(self.root / "manifest.parquet"),
                "--qc-dir", str(self.root / "qc"), "--cache-dir", str(self.root / "cache")]

    def review(self, *args: str) -> int:
        command, rest = args[0], list(args[1:])
        return main(["review", command, *self.place_args, *rest])


def _qc(out: Path, *extra: str) -> None:
    assert main(["qc", "--out", str(out / "seg"), "--manifest", str(out / "manifest.parquet"),
                 "--qc-dir", str(out / "qc"), "--cache-dir", str(out / "cache"), *extra]) == 0


@pytest.fixture(scope="session")
def reviewed_sample_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("review-sample")
    assert main(["sample", "--out", str(out)]) == 0
    _qc(out, "--review-below", "0.95", "--consensus-seg-type", "binary")
    return out


@pytest.fixture(scope="session")
def oblique_base(tmp_path_factory, sample_dir) -> tuple[Path, Path]:
    """(run folder, CT folder) of the sample on a rotated grid with its origin moved."""
    root = tmp_path_factory.mktemp("review-oblique")
    ct = read_ct_series(sample_dir / "ct")
    turn = Rotation.from_euler("zx", [30, 12], degrees=True).as_matrix()
    affine = ct.volume.affine.copy()
    affine[:3, :3] = turn @ affine[:3, :3]
    affine[:3, 3] = (-101.25, 47.5, 312.75)
    oblique = ct.volume.__class__(np.asarray(ct.volume.array), affine, "PATIENT", frame_of_reference_uid="1.2.826.0.1.3680043.10.1410.7")
    ct_folder = root / "ct"
    write_ct_series(oblique, ct_folder, study_instance_uid="1.2.826.0.1.3680043.10.1410.8",
                    series_instance_uid="1.2.826.0.1.3680043.10.1410.9",
                    frame_of_reference_uid="1.2.826.0.1.3680043.10.1410.7", patient_name="Oblique^Phantom")
    sources = []
    for name, nifti in (("TotalSegmentator total", "seg_totalsegmentator_v2_full.nii.gz"),
                        ("TotalSegmentator total fast", "seg_totalsegmentator_v2_fast.nii.gz")):
        labels = onto_grid(read_label_image(sample_dir / nifti), ct.geometry)  # same voxels, index for index
        path = root / nifti
        write_label_image(oblique.with_array(labels.astype(np.uint8)), path)
        table = root / f"{nifti}.csv"
        table.write_text(f"series_uid,path\n1.2.826.0.1.3680043.10.1410.9,{path}\n")
        sources += ["--source", f"precomputed:{table}?label_set=totalsegmentator_total&name={name}&version=2"]
    assert main(["run", "--dicom-folder", str(ct_folder), *sources, "--out", str(root / "seg"),
                 "--manifest", str(root / "manifest.parquet"), "--qc-dir", str(root / "qc"),
                 "--cache-dir", str(root / "cache"), "--review-below", "0.95"]) == 0
    return root, ct_folder


def _copy(base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "run"
    shutil.copytree(base, root, ignore=shutil.ignore_patterns("cache"))
    return root


@pytest.fixture
def reviewed_sample(reviewed_sample_base, tmp_path) -> Run:
    return Run(_copy(reviewed_sample_base, tmp_path), SAMPLE / "ct")


@pytest.fixture
def oblique_run(oblique_base, tmp_path) -> Run:
    base, ct_folder = oblique_base
    return Run(_copy(base, tmp_path), ct_folder)
