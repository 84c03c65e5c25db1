"""Tiny ``SeriesFinal``s on synthetic CTs for the nnU-Net export tests: bright bones, patients, untrusted voxels.

Each CT is a small oblique, anisotropic grid of ~40 HU soft tissue with bright (~1000 HU) boxes; a
box is either a trusted bone (its schema id in ``labels``) or a bone not yet trusted (``untrusted``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from scipy.spatial.transform import Rotation

from dataset.files import ExportFiles
from dataset.final_labels import SeriesFinal
from dataset.nnunet_export import NnUNetExport
from dicom_io.ct_series import read_ct_series
from dicom_io.ct_writer import write_ct_series
from labels.schema import default_schema

SHAPE = (20, 24, 28)
AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
UID_ROOT = "1.2.826.0.1.3680043.8.498.915"
TRUSTED_BOX = (slice(4, 10), slice(6, 14), slice(5, 15))
SECOND_BOX = (slice(12, 17), slice(4, 9), slice(16, 24))
UNTRUSTED_BOX = (slice(11, 18), slice(14, 21), slice(3, 11))


def tiny_final(root: Path, index: int, patient_id: str, *, trusted: dict[str, tuple[slice, ...]],
               untrusted: tuple[slice, ...] | None = None, shape: tuple[int, int, int] = SHAPE) -> SeriesFinal:
    """Series ``index`` of ``patient_id``: bright boxes, ``trusted`` (schema name -> box) labelled, ``untrusted`` marked."""
    rng = np.random.default_rng(index)
    array = rng.normal(40.0, 10.0, shape)
    labels = np.zeros(shape, np.uint16)
    mask = np.zeros(shape, bool)
    for name, box in trusted.items():
        array[box] = rng.normal(1000.0, 30.0, array[box].shape)
        labels[box] = default_schema()[name].id
    if untrusted is not None:
        array[untrusted] = rng.normal(900.0, 30.0, array[untrusted].shape)
        mask[untrusted] = True
    study, series, frame = (f"{UID_ROOT}.{index}.{part}" for part in (1, 2, 3))
    volume = hd.Volume.from_components(
        array.round().astype(np.int16), spacing=[2.5, 2.0, 1.5],
        direction=Rotation.from_euler("xyz", [6, -4, 10], degrees=True).as_matrix() @ AXIAL,
        position=[-30.0, -20.5, 60.0], coordinate_system="PATIENT", frame_of_reference_uid=frame)
    folder = root / f"ct{index}"
    write_ct_series(volume, folder, study_instance_uid=study, series_instance_uid=series, frame_of_reference_uid=frame,
                    patient_id=patient_id)
    ct = read_ct_series(folder)
    assert np.allclose(ct.volume.affine, volume.affine, atol=1e-3), "the synthetic CT did not read back on its grid"
    return SeriesFinal(series, study, ct, labels, mask, states={}, statuses={}, sources=())


@dataclass(frozen=True)
class Exported:
    """One nnU-Net export run: the dataset folder, what the format knows after ``finish``, the files."""

    folder: Path
    cases: dict[str, str]
    labels: dict[str, int]
    n_folds: int
    changed: list[str]  # relative to the export folder: written with new bytes, or removed
    files: dict[str, str]  # every file this run made -> digest (what the data card lists)


def export_nnunet(finals: Iterable[SeriesFinal], to: Path, previous: Exported | None = None, **options) -> Exported:
    """Drive ``NnUNetExport`` as ``dataset.export`` does (one item per series, ``finish``, stale files out)."""
    files = ExportFiles(to)
    writer = NnUNetExport(files, **options)
    uids = []
    for final in finals:
        with files.item():
            writer.add(final)
        uids.append(final.series_uid)
    writer.finish(sorted(uids))
    removed = files.remove_stale(previous.files if previous else {})
    return Exported(Path(to) / writer.folder, writer.cases, writer.labels, writer.n_folds,
                    sorted(files.changed) + removed, dict(files.digests))
