"""The stored data of one series that export and import read: its CT, its sources' label maps, a stored SEG.

Several worklist items usually belong to one series; ``SeriesLoader`` reads the
CT and decodes the sources' SEGs once for all of them (the last series only:
items come sorted by priority, not by series, but a series' items cluster).
"""

from __future__ import annotations

import numpy as np

from dicom_io.stores import open_store
from review.state import ReviewInputError, ReviewPlace, SegRef


class SeriesLoader:
    def __init__(self, place: ReviewPlace):
        self.place = place
        self.store = open_store(place.store_uri)
        self._series: str | None = None
        self._ct = None
        self._members: tuple[list, list[np.ndarray]] | None = None

    def _segs(self, series_uid: str):
        from results.manifest import read_manifest
        from results.members import stored_segs

        return stored_segs(read_manifest(self.place.manifest_uri), [series_uid])

    def ct(self, series_uid: str, study_uid: str):
        """The CT series, from where the manifest says (or the place's CT folder)."""
        if self._series != series_uid:
            from results.members import read_stored_ct
            from results.series_ref import LOCAL, SeriesRef

            segs = self._segs(series_uid)
            override = SeriesRef(series_uid, study_uid, LOCAL, self.place.ct_folder) if self.place.ct_folder else None
            if not segs and override is None:
                raise ReviewInputError(f"series {series_uid}: the manifest {self.place.manifest_uri} lists no SEG of it")
            self._series, self._members = None, None
            self._ct = read_stored_ct(series_uid, segs, self.place.cache_dir, ct_override=override,
                                      idc_endpoint_url=self.place.idc_endpoint_url)
            self._series = series_uid
        return self._ct

    def members(self, series_uid: str, study_uid: str) -> tuple[list, list[np.ndarray]]:
        """(members, schema label maps on the CT grid) of every usable Stage 1 SEG of the series."""
        ct = self.ct(series_uid, study_uid)
        if self._members is None:
            from results.members import decode_members

            members, label_maps, _ = decode_members(self._segs(series_uid), ct, self.store)
            self._members = (members, label_maps)
        return self._members

    def label_map(self, ref: SegRef, ct) -> np.ndarray:
        """A stored SEG (the consensus or a corrected one) as a schema label map on the CT grid; never cached."""
        from dicom_io.seg_reader import read_seg

        return read_seg(self.store.get(ref.study_uid, ref.series_uid, ref.sop_uid), ct, strict=True).volume.array
