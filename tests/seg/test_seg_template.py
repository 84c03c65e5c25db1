"""A deflated LABELMAP built from its series' kept layout is highdicom's full build, and reads back exactly."""

import copy
import dataclasses
import io

import numpy as np
import pydicom
import pytest

from dicom_io import seg_template
from dicom_io.provenance import SegmentationSource
from dicom_io.seg_reader import read_seg
from dicom_io.seg_writer import write_seg

FULL = "seg_totalsegmentator_v2_full.nii.gz"
# set at encoding time (highdicom: "now", a new DimensionOrganizationUID per build)
VOLATILE = {"InstanceCreationDate", "InstanceCreationTime", "ContentDate", "ContentTime", "SeriesDate", "SeriesTime"}


def _elements(seg) -> dict[str, object]:
    """Every top-level element as its encoded bytes, DimensionOrganizationUID set to one value.

    (Replacing one build's UID by the other's in the bytes broke the encoded lengths whenever the
    two UIDs differed in length parity: a test that failed at random.)
    """
    out = {}
    for element in seg:
        if element.keyword in VOLATILE:
            continue
        value = element.value
        if element.keyword == "ContributingEquipmentSequence":  # its ContributionDateTime is "now" too
            element = copy.deepcopy(element)
            for item in element.value:
                item.pop("ContributionDateTime", None)
        if element.keyword in ("DimensionOrganizationSequence", "DimensionIndexSequence"):  # a new UID per build
            element = copy.deepcopy(element)
            for item in element.value:
                if "DimensionOrganizationUID" in item:
                    item.DimensionOrganizationUID = "1.2.3"
        if element.VR == "SQ":
            buffer = pydicom.filebase.DicomBytesIO()
            buffer.is_little_endian, buffer.is_implicit_VR = True, False
            pydicom.filewriter.write_data_element(buffer, element)
            value = buffer.getvalue()
        out[element.keyword or str(element.tag)] = value
    return out


def _maps(sample_schema_maps):
    """Two label maps with other segments on the same slices: the full map, and one structure relabelled as another."""
    full = sample_schema_maps[FULL]
    values, counts = np.unique(full[full > 0], return_counts=True)
    relabelled = full.copy()
    relabelled[full == values[np.argmax(counts)]] = values[np.argmin(counts)]
    return full, relabelled


@pytest.fixture
def fresh_layouts():
    seg_template.forget_layouts()
    yield
    seg_template.forget_layouts()


def _write(schema_map, ct, name: str, compression: str | None = None):
    return write_seg(schema_map, ct, SegmentationSource(name, "2"), content_creator="Reviewer^One" if name == "b" else None,
                     compression=compression)


def _highdicoms_build(schema_map, ct, name: str):
    """The reference: highdicom's own build of the whole SEG (an uncompressed one never uses a kept layout)."""
    return _write(schema_map, ct, name, compression="none")


def _assert_highdicoms_build(seg, schema_map, ct, name: str):
    """``seg`` is highdicom's own build of ``schema_map``, element for element and frame table row for row; returns that build."""
    full_build = _highdicoms_build(schema_map, ct, name)
    ours, theirs = _elements(seg), _elements(full_build)
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k] != theirs[k]] == []
    tables = [[list(s._db_con.execute(f"SELECT * FROM {table} ORDER BY FrameNumber")) for table in ("FrameLUT", "FrameReferenceLUT")]
              for s in (seg, full_build)]
    assert tables[0] == tables[1]
    return full_build


def test_a_seg_from_the_kept_layout_is_highdicoms_full_build(fresh_layouts, sample_ct, sample_schema_maps):
    first, second = _maps(sample_schema_maps)
    _write(first, sample_ct, "a")
    from_layout = _write(second, sample_ct, "b")
    full_build = _assert_highdicoms_build(from_layout, second, sample_ct, "b")
    assert ([e for e in from_layout.file_meta if e.keyword != "TransferSyntaxUID"]
            == [e for e in full_build.file_meta if e.keyword != "TransferSyntaxUID"])  # deflated: only at writing


def test_every_seg_of_a_series_reads_back_exactly(fresh_layouts, sample_ct, sample_schema_maps, tmp_path):
    maps = _maps(sample_schema_maps)
    segs = [_write(schema_map, sample_ct, name) for schema_map, name in zip(maps, "ab")]
    for seg, schema_map in zip(segs, maps):
        np.testing.assert_array_equal(read_seg(seg, sample_ct).volume.array, schema_map)  # the object, as returned
        buffer = io.BytesIO()
        seg.save_as(buffer)
        np.testing.assert_array_equal(read_seg(pydicom.dcmread(io.BytesIO(buffer.getvalue())), sample_ct).volume.array, schema_map)
    assert len(segs[0].SegmentSequence) == len(segs[1].SegmentSequence) + 1  # each its own segments, not the first one's


def test_a_kept_layout_belongs_to_its_extent(fresh_layouts, sample_ct, sample_schema_maps):
    """A SEG whose structures lie on other slices gets its own layout."""
    full, _ = _maps(sample_schema_maps)
    lower = full.copy()
    lower[: full.shape[0] // 2] = 0
    _write(full, sample_ct, "a")
    seg = _write(lower, sample_ct, "b")
    assert seg.NumberOfFrames == int(np.count_nonzero(lower.reshape(lower.shape[0], -1).any(axis=1)))
    np.testing.assert_array_equal(read_seg(seg, sample_ct).volume.array, lower)


def test_a_kept_layout_belongs_to_its_series_only(fresh_layouts, sample_ct, sample_schema_maps):
    """A SEG on other slices of the same series is built in full, not from the kept layout."""
    full, _ = _maps(sample_schema_maps)
    _write(full, sample_ct, "a")
    slab = dataclasses.replace(sample_ct, volume=sample_ct.volume[:10], datasets=sample_ct.datasets[:10])
    seg = _write(full[:10], slab, "b")
    assert seg.NumberOfFrames == 10
    np.testing.assert_array_equal(read_seg(seg, slab).volume.array, full[:10])


def test_a_kept_layout_belongs_to_its_geometry(fresh_layouts, sample_ct, sample_dir, sample_schema_maps, tmp_path):
    """The same series re-exported under its UIDs with another origin gets frame positions of its own, not the kept ones."""
    from dicom_io.ct_series import read_ct_series

    full, _ = _maps(sample_schema_maps)
    _write(full, sample_ct, "a")
    for path in (sample_dir / "ct").iterdir():
        moved = pydicom.dcmread(path)
        moved.ImagePositionPatient = [float(v) + 10.0 for v in moved.ImagePositionPatient]
        moved.save_as(tmp_path / path.name)
    moved_ct = read_ct_series(tmp_path)
    seg = _write(full, moved_ct, "b")
    positions = [tuple(float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient)
                 for item in seg.PerFrameFunctionalGroupsSequence]
    expected = {tuple(float(v) for v in ds.ImagePositionPatient) for ds in moved_ct.datasets}
    assert set(positions) <= expected
    np.testing.assert_array_equal(read_seg(seg, moved_ct).volume.array, full)


def test_a_layout_with_a_gap_in_its_slices_gives_each_seg_its_own_pixels(fresh_layouts, sample_ct, sample_schema_maps):
    """Structures on two runs of slices (an empty slice between): every later SEG is the full build, pixels included."""
    first, second = _maps(sample_schema_maps)
    labelled = np.flatnonzero(first.reshape(first.shape[0], -1).any(axis=1))
    gap = labelled[len(labelled) // 2]
    first, second = first.copy(), second.copy()
    first[gap] = second[gap] = 0
    _write(first, sample_ct, "a")
    from_layout = _write(second, sample_ct, "b")
    _assert_highdicoms_build(from_layout, second, sample_ct, "b")
    assert from_layout.NumberOfFrames == len(labelled) - 1
    np.testing.assert_array_equal(read_seg(from_layout, sample_ct).volume.array, second)


@pytest.mark.parametrize("seg_type", ["labelmap", "binary"])
def test_a_seg_encoded_in_a_worker_thread_is_usable_in_any_other(fresh_layouts, sample_ct, sample_schema_maps, seg_type):
    """highdicom binds a SEG's frame table to the building thread; Stage 1 encodes in worker threads, and the
    SEGs (and the layouts kept for later SEGs) are copied, pickled and read elsewhere."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    first, second = _maps(sample_schema_maps)

    def encode(schema_map, name):
        return write_seg(schema_map, sample_ct, SegmentationSource(name, "2"), seg_type=seg_type)

    with ThreadPoolExecutor(1) as worker:
        built = [worker.submit(encode, m, n).result() for m, n in ((first, "a"), (second, "b"))]
    built.append(encode(second, "c"))  # this thread, from the layout the worker kept
    for seg, schema_map in zip(built, (first, second, second)):
        for twin in (copy.deepcopy(seg), pickle.loads(pickle.dumps(seg))):
            np.testing.assert_array_equal(read_seg(twin, sample_ct).volume.array, schema_map)


@pytest.mark.parametrize("cut", ["lower half", "every other slice", "one slice"])
def test_a_seg_on_other_slices_than_the_first_is_highdicoms_full_build(fresh_layouts, sample_ct, sample_schema_maps, cut):
    """One layout per series serves every extent: frames, their numbering, "3D" or not and the frame table as highdicom's."""
    first, second = _maps(sample_schema_maps)
    labelled = np.flatnonzero(second.reshape(second.shape[0], -1).any(axis=1))
    keep = {"lower half": labelled[len(labelled) // 2:], "every other slice": labelled[::2], "one slice": labelled[3:4]}[cut]
    other = np.zeros_like(second)
    other[keep] = second[keep]
    _write(first, sample_ct, "a")
    from_layout = _write(other, sample_ct, "b")
    _assert_highdicoms_build(from_layout, other, sample_ct, "b")
    assert from_layout.NumberOfFrames == len(keep)
    np.testing.assert_array_equal(read_seg(from_layout, sample_ct).volume.array, other)


def test_segs_of_a_series_encoded_side_by_side_build_its_layout_once(fresh_layouts, sample_ct, sample_schema_maps, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    first, second = _maps(sample_schema_maps)
    builds, real = [], seg_template._encode_layout
    monkeypatch.setattr(seg_template, "_encode_layout", lambda seg: builds.append(1) or real(seg))
    with ThreadPoolExecutor(2) as pool:
        segs = list(pool.map(lambda args: _write(*args), [(first, sample_ct, "a"), (second, sample_ct, "b")]))
    assert len(builds) == 1
    for seg, schema_map in zip(segs, (first, second)):
        np.testing.assert_array_equal(read_seg(seg, sample_ct).volume.array, schema_map)
