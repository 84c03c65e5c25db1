"""Precomputed segmentations as a source: a vote at zero GPU cost.

A locator finds the result for a CT series:

- a folder plus a file-name pattern (``"{series_uid}.nii.gz"``, ``"{series_uid}.dcm"``),
  or any callable ``CTSeries -> Path``: one file per series;
- ``from_idc``: the SEG an IDC analysis result (e.g. ``totalsegmentator_ct_segmentations``)
  published for the series, found through the bundled idc-index data and downloaded with s5cmd;
- ``from_store``: a SEG in a DICOMweb server (or a folder / GCS store, ``dicom_io.stores``).

Label images (NIfTI, NRRD, ...) carry native labels of a declared label set (e.g.
``totalsegmentator_total``); DICOM SEGs are decoded straight into schema ids by their
segment codes, so their source has no label set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from dicom_io import idc
from dicom_io.ct_series import CTSeries
from dicom_io.errors import DicomInputError
from dicom_io.label_images import LABEL_IMAGE_SUFFIXES, read_label_image
from dicom_io.seg_reader import SegOverlapError, read_seg
from dicom_io.seg_writer import MANUFACTURER
from dicom_io.stores import open_store
from dicom_io.uids import validate_uid
from labels.label_sets import LabelSet, load_label_set
from models.base import Prediction

SegInstance = Path | Dataset  # one SEG instance, as a file or in memory
Located = Path | list[SegInstance]  # one file (label image or SEG), or the instances of one SEG series


class PrecomputedNotFoundError(DicomInputError, FileNotFoundError):
    """No precomputed segmentation for a series."""


class PrecomputedAmbiguousError(DicomInputError):
    """Several segmentation series qualify for one CT series, so the source cannot choose."""


class PrecomputedSegmentation:
    """Read an existing segmentation for each series instead of running a model.

    ``label_set``: the native label set of label-image files (a packaged name or a CSV path);
    ``None`` for DICOM SEGs, whose segments are resolved to schema ids by their codes.
    ``locate``: a callable ``CTSeries -> Path | list of SEG instances``, or a folder in which
    ``pattern`` is formatted with the series UID.
    """

    sees_pixels = False  # the result exists already: input augmentations cannot apply

    def __init__(
        self,
        name: str,
        version: str,
        label_set: str | os.PathLike | None,
        locate: Callable[[CTSeries], Located] | str | os.PathLike,
        pattern: str = "{series_uid}.nii.gz",
    ):
        self.name = name
        self.version = version
        self.label_set_name = label_set
        if callable(locate):
            self._locate = locate
        else:
            if "{series_uid}" not in pattern:
                raise ValueError(f"{name}: file-name pattern {pattern!r} must contain {{series_uid}}")
            self._locate = _FolderLocator(Path(locate), pattern)
        self._label_set: LabelSet | None = None

    @classmethod
    def from_idc(
        cls,
        analysis_result_id: str,
        cache_dir: str | os.PathLike,
        *,
        endpoint_url: str | None = None,
        name: str | None = None,
        version: str | None = None,
    ) -> PrecomputedSegmentation:
        """The SEGs an IDC analysis result published, downloaded once into ``cache_dir``.

        ``name`` defaults to the analysis result id, ``version`` to the idc-index-data
        release that located it; ``endpoint_url`` to IDC's public bucket endpoint.
        """
        locator = IdcSegLocator(analysis_result_id, cache_dir, endpoint_url=endpoint_url)
        return cls(name or analysis_result_id, version or f"IDC index {idc.index_version()}", None, locator)

    @classmethod
    def from_store(
        cls,
        uri: str,
        name: str,
        version: str,
        *,
        series_description: str | None = None,
        algorithm_name: str | None = None,
        include_own: bool = False,
        timeout: float | None = None,
        token_env: str | None = None,
    ) -> PrecomputedSegmentation:
        """SEGs in a DICOMweb server (or a folder or GCS store): see :class:`StoreSegLocator` for the filters."""
        locator = StoreSegLocator(uri, series_description=series_description, algorithm_name=algorithm_name,
                                  include_own=include_own, timeout=timeout, token_env=token_env)
        return cls(name, version, None, locator)

    def __repr__(self) -> str:
        return f"PrecomputedSegmentation({self.name!r}, {self.version!r}, label_set={self.label_set_name!r})"

    @property
    def vocabulary(self) -> frozenset[str]:
        """The schema structures this source can label (recorded in its SEGs); empty for SEG results, which carry their own."""
        return load_label_set(self.label_set_name).emitted() if self.label_set_name is not None else frozenset()

    def load(self) -> None:
        if self.label_set_name is not None and self._label_set is None:
            self._label_set = load_label_set(self.label_set_name)

    def locate(self, ct: CTSeries) -> Located:
        """The result for ``ct``; its UIDs are validated first, so none can escape a folder or a URL."""
        validate_uid(ct.series_instance_uid, f"series UID for precomputed source {self.name!r}")
        validate_uid(ct.study_instance_uid, f"study UID for precomputed source {self.name!r}")
        found = self._locate(ct)
        if isinstance(found, list):
            return found
        path = Path(found)
        if not path.is_file():
            raise PrecomputedNotFoundError(
                f"{self.name}: no precomputed segmentation for series {ct.series_instance_uid} (looked for {path})"
            )
        return path

    def predict(self, ct: CTSeries) -> Prediction:
        self.load()
        found = self.locate(ct)
        if isinstance(found, Path) and self._is_label_image(found):
            if self._label_set is None:
                raise ValueError(f"{self.name}: {found} is a label image, so the source needs a native label set")
            return Prediction(read_label_image(found), self._label_set)
        if self._label_set is not None:
            raise ValueError(f"{self.name}: {found} is not a label image ({', '.join(LABEL_IMAGE_SUFFIXES)}); "
                             "DICOM SEG sources take label_set=None")
        return Prediction(decode_seg_series(found if isinstance(found, list) else [found], ct), None)

    @staticmethod
    def _is_label_image(path: Path) -> bool:
        return path.name.lower().endswith(LABEL_IMAGE_SUFFIXES)


class _FolderLocator:
    """``folder / pattern.format(series_uid=...)`` (a class, not a lambda, so the source pickles for Beam)."""

    def __init__(self, folder: Path, pattern: str):
        self.folder, self.pattern = folder, pattern

    def __call__(self, ct: CTSeries) -> Path:
        return self.folder / self.pattern.format(series_uid=ct.series_instance_uid)


class IdcSegLocator:
    """The SEG series of an IDC analysis result that segments a CT series.

    The bundled index lists an analysis result's SEG series per study but not which
    image series each one segments (that is in ``seg_index``, fetched from the internet
    on demand). So every SEG of the result in the CT's study is downloaded into
    ``cache_dir/<SEG series UID>/`` (kept there: a rerun, or the study's other CT
    series, downloads nothing) and the one whose references name the CT series is kept.
    """

    def __init__(self, analysis_result_id: str, cache_dir: str | os.PathLike, *, endpoint_url: str | None = None):
        known = idc.analysis_result_ids()
        if analysis_result_id not in known:
            raise ValueError(f"analysis result {analysis_result_id!r} is not in the IDC index "
                             f"v{idc.index_version()}; it has: {', '.join(known)}")
        self.analysis_result_id = analysis_result_id
        self.cache_dir = Path(cache_dir)
        self.endpoint_url = endpoint_url

    def __call__(self, ct: CTSeries) -> list[SegInstance]:
        where = f"IDC analysis result {self.analysis_result_id!r} (index v{idc.index_version()})"
        candidates = idc.analysis_result_series(ct.study_instance_uid, self.analysis_result_id)
        if not candidates:
            raise PrecomputedNotFoundError(f"no SEG of {where} for CT series {ct.series_instance_uid}: "
                                           f"none in its study {ct.study_instance_uid}")
        headers: list[tuple[Dataset, SegInstance]] = []
        for series in candidates:
            folder = idc.download_series(series, self.cache_dir, endpoint_url=self.endpoint_url)
            headers += [(pydicom.dcmread(path, stop_before_pixels=True), path) for path in sorted(folder.rglob("*.dcm"))]
        return choose_seg_series(headers, ct, f"{where}, {len(candidates)} SEG series in study {ct.study_instance_uid}")


class StoreSegLocator:
    """The SEG series in a store (DICOMweb, folder, GCS) that segments a CT series.

    All SEG instances of the CT's study are listed (QIDO-RS for DICOMweb) and retrieved;
    those that pass the filters and reference the CT series must form one series.
    ``series_description`` / ``algorithm_name`` keep only SEGs with that SeriesDescription /
    a segment with that SegmentAlgorithmName.

    SEGs this project wrote (Manufacturer ``BoneHub Segmentation``) are skipped unless
    ``include_own``: Stage 1 stores its outputs in the same studies, so a store holding
    them would otherwise feed every model's earlier output, and this source's own echo,
    back in as one more "precomputed" vote (or make every series ambiguous).
    ``include_own`` (to read an earlier run on purpose) therefore needs a filter that
    names which earlier output.
    """

    def __init__(
        self,
        uri: str,
        *,
        series_description: str | None = None,
        algorithm_name: str | None = None,
        include_own: bool = False,
        timeout: float | None = None,
        token_env: str | None = None,
    ):
        if include_own and series_description is None and algorithm_name is None:
            raise ValueError("include_own=True needs series_description or algorithm_name: without one, every model's "
                             f"earlier output in {uri} would qualify")
        self.store = open_store(uri, timeout=timeout, token_env=token_env)
        self.series_description = series_description
        self.algorithm_name = algorithm_name
        self.include_own = include_own

    def _wanted(self, seg: Dataset) -> bool:
        if not self.include_own and seg.get("Manufacturer") == MANUFACTURER:
            return False
        if self.series_description is not None and seg.get("SeriesDescription") != self.series_description:
            return False
        return self.algorithm_name is None or any(
            item.get("SegmentAlgorithmName") == self.algorithm_name for item in seg.get("SegmentSequence", []))

    def __call__(self, ct: CTSeries) -> list[SegInstance]:
        refs = self.store.list_instances(modality="SEG", study_uid=ct.study_instance_uid)
        segs = [self.store.get(ref.study_uid, ref.series_uid, ref.sop_uid) for ref in refs]
        wanted = [(seg, seg) for seg in segs if self._wanted(seg)]
        filters = [f"{key}={value!r}" for key, value in (("series_description", self.series_description),
                   ("algorithm_name", self.algorithm_name)) if value is not None]
        if not self.include_own:
            filters.append(f"not written by {MANUFACTURER}")
        where = (f"store {self.store.uri}, {len({s.SeriesInstanceUID for s, _ in wanted})} of "
                 f"{len({ref.series_uid for ref in refs})} SEG series in study {ct.study_instance_uid} "
                 f"passing the filters ({'; '.join(filters)})")
        return choose_seg_series(wanted, ct, where)


def choose_seg_series(candidates: Sequence[tuple[Dataset, SegInstance]], ct: CTSeries, where: str) -> list[SegInstance]:
    """The instances of the one SEG series among ``candidates`` (header, instance) that references ``ct``.

    None raises :class:`PrecomputedNotFoundError`, several series :class:`PrecomputedAmbiguousError`;
    ``where`` says what was searched.
    """
    matching: dict[str, list[tuple[Dataset, SegInstance]]] = {}
    for header, instance in candidates:
        if references_series(header, ct):
            matching.setdefault(str(header.SeriesInstanceUID), []).append((header, instance))
    if not matching:
        raise PrecomputedNotFoundError(f"no SEG references CT series {ct.series_instance_uid} ({where})")
    if len(matching) > 1:
        listed = "; ".join(f"{uid} ({found[0][0].get('SeriesDescription', '')!r})" for uid, found in sorted(matching.items()))
        raise PrecomputedAmbiguousError(f"{len(matching)} SEG series reference CT series {ct.series_instance_uid} "
                                        f"({where}): {listed}; narrow the source with a filter")
    return [instance for _, instance in next(iter(matching.values()))]


def references_series(seg: Dataset, ct: CTSeries) -> bool:
    """Whether ``seg`` segments ``ct``: its ReferencedSeriesSequence names the series, or, when it has
    none, a frame's source image is one of the series' instances."""
    series = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    if series:
        return ct.series_instance_uid in series
    instances = {str(ds.SOPInstanceUID) for ds in ct.datasets}
    groups = [*seg.get("SharedFunctionalGroupsSequence", []), *seg.get("PerFrameFunctionalGroupsSequence", [])]
    return any(str(source.ReferencedSOPInstanceUID) in instances
               for group in groups
               for derivation in group.get("DerivationImageSequence", [])
               for source in derivation.get("SourceImageSequence", []))


def decode_seg_series(instances: Sequence[SegInstance], ct: CTSeries) -> hd.Volume:
    """The schema map of one SEG series on the CT grid; a series stored as several instances is merged."""
    volumes = [read_seg(instance, ct).volume for instance in instances]
    merged = volumes[0].array.copy()
    for instance, volume in zip(instances[1:], volumes[1:]):
        clash = (merged != 0) & (volume.array != 0) & (merged != volume.array)
        if clash.any():
            uid = instance.SOPInstanceUID if isinstance(instance, Dataset) else instance
            raise SegOverlapError(f"SEG instance {uid} labels {int(clash.sum())} voxels of CT series "
                                  f"{ct.series_instance_uid} that another instance of its series labels differently")
        np.copyto(merged, volume.array, where=volume.array != 0)
    return volumes[0].with_array(merged)
