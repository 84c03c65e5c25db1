"""Where each series came from (IDC collection and licence from idc-index, BoneHub dataset, local), and the
export's file writer: unchanged bytes keep their file, a failed series leaves nothing, stale files go."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataset.errors import ExportInputError
from dataset.files import ExportFiles
from dataset.inputs import series_inputs, with_collections
from results.manifest import ManifestRow, to_frame
from tests.conftest import REPO_ROOT

NLST = (REPO_ROOT / "tests/data/idc/nlst_review_series.csv").read_text().split()[1]
LOCAL, BONEHUB = "1.2.3.4", "1.2.3.5"


def row(series: str, kind: str, **subject: str) -> ManifestRow:
    return ManifestRow(series, "1.2.3", "TotalSegmentator total", "2", "none", "labelmap", "1.2.9", "1.2.10", "", "written",
                       ct_kind=kind, ct_location="s3://bucket/x/*" if kind == "idc" else "/ct", **subject)


def test_collections_come_from_idc_index_the_bonehub_ids_or_nothing():
    manifest = to_frame([row(NLST, "idc"), row(LOCAL, "local"), row(BONEHUB, "local", bonehub_dataset="001",
                                                                     bonehub_subject="001_000001")])
    inputs = series_inputs(manifest).set_index("series_uid")
    assert inputs.loc[NLST, "collection"] == "nlst" and inputs.loc[NLST, "licence"]
    assert inputs.loc[BONEHUB, "collection"] == "BoneHub-Dataset_001" and inputs.loc[LOCAL, "collection"] == ""
    provenance = to_frame([]).assign(series_uid=[NLST, LOCAL, "1.2.3.6"])[["series_uid"]]
    assert list(with_collections(provenance, manifest)["collection"]) == ["nlst", "", ""]


def test_files_are_written_only_when_their_bytes_change(tmp_path: Path):
    files = ExportFiles(tmp_path)
    assert files.put_bytes("a/x.txt", b"one") and not ExportFiles(tmp_path).put_bytes("a/x.txt", b"one")
    before = (tmp_path / "a" / "x.txt").stat().st_mtime_ns
    again = ExportFiles(tmp_path)
    assert not again.put_bytes("a/x.txt", b"one") and (tmp_path / "a" / "x.txt").stat().st_mtime_ns == before
    assert again.changed == [] and set(again.digests) == {"a/x.txt"}

    with pytest.raises(RuntimeError), again.item():  # a series that fails half way leaves nothing of it
        again.put_bytes("b/y.txt", b"new")
        raise RuntimeError("the SR could not be made")
    assert not (tmp_path / "b" / "y.txt").exists() and not list((tmp_path / "b").iterdir())

    assert again.remove_stale(["a/x.txt", "c/d/old.txt"]) == ["c/d/old.txt"]
    with pytest.raises(ExportInputError, match="would leave the export folder"):
        again.put_bytes("../outside.txt", b"")
