"""Deterministic synthetic whole-skeleton CT phantom in TotalSegmentator ``total`` (v2) label numbering.

Why: the SEG encoding benchmark needs a label map that looks like a real
``total`` result for what decides SEG time and size (how many structures, how
many slices each spans, how long the runs in a row are) without shipping patient
data or running a model. The 63 bones of ``total`` and a few organs (lungs by
lobe, liver, spleen, kidneys, brain) are simple solids: ellipsoids, shells,
capsules, elliptic cylinders, tube arcs for ribs, cartilages and mandible, thin
triangular plates for the scapulae; sizes and positions are those of a ~175 cm
adult lying with the arms along the body.

Grid: the default 300 x 512 x 512 has 0.9 mm pixels and 5 mm slices, a
460.8 mm x 460.8 mm x 1500 mm field of view from just above the vertex
(z = 1770 mm above the soles) down to mid-shin, so every ``total`` bone from the
skull to the femoral condyles is inside (a 300-slice grid at 2 mm would stop at
the lumbar spine). Another shape keeps this field of view (spacing = FOV / shape)
unless ``spacing`` is given. Coordinates are DICOM patient (LPS: +x patient
left, +y posterior, +z head); array axis 0 runs from head to feet, rows
anterior to posterior, columns patient right to left: a standard axial series in
highdicom's right-handed convention, which ``read_ct_series`` returns unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import highdicom as hd
import numpy as np

from dicom_io.ct_writer import write_ct_series
from labels.label_sets import load_label_set

FIELD_OF_VIEW_MM = (1500.0, 460.8, 460.8)  # slices, rows, columns
DEFAULT_SHAPE = (300, 512, 512)
TOP_Z_MM = 1770.0  # top edge of the field of view, above the vertex (1750 mm)
AIR_HU, SOFT_TISSUE_HU, BONE_HU, CARTILAGE_HU, LUNG_HU = -1000, 40, 700, 150, -850
SIDES = {"left": 1.0, "right": -1.0}  # sign of patient x

CERVICAL = tuple(f"vertebrae_C{i}" for i in range(1, 8))
THORACIC = tuple(f"vertebrae_T{i}" for i in range(1, 13))
LUMBAR = tuple(f"vertebrae_L{i}" for i in range(1, 6))
RIBS = tuple(f"rib_{side}_{i}" for side in SIDES for i in range(1, 13))
PAIRED_BONES = tuple(f"{bone}_{side}" for bone in ("humerus", "scapula", "clavicula", "femur", "hip") for side in SIDES)
BONE_NAMES = (*CERVICAL, *THORACIC, *LUMBAR, "vertebrae_S1", "sacrum", *RIBS, "sternum", "costal_cartilages", "skull", *PAIRED_BONES)
LUNG_LOBES = ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
ORGAN_NAMES = (*LUNG_LOBES, "liver", "spleen", "kidney_left", "kidney_right", "brain")


def total_label(name: str) -> int:
    """Native ``total`` value of a class name, from the project's own mapping table."""
    label = load_label_set("totalsegmentator_total").by_name(name)
    if label is None:
        raise KeyError(f"{name!r} is not a TotalSegmentator total class")
    return label.value


def default_spacing(shape: Sequence[int]) -> tuple[float, float, float]:
    """Spacing (slice, row, column) in mm that keeps the default field of view for ``shape``."""
    return tuple(fov / n for fov, n in zip(FIELD_OF_VIEW_MM, shape))


def make_phantom(
    shape: Sequence[int] = DEFAULT_SHAPE, spacing: Sequence[float] | None = None, seed: int = 0
) -> tuple[hd.Volume, np.ndarray]:
    """CT volume in HU (int16) and the native ``total`` label map (uint8) on the same grid.

    ``seed`` scales the body by up to +-3 % and shifts it by up to +-5 mm in x and y,
    so different seeds give different (but equally plausible) voxelisations.
    """
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in (spacing or default_spacing(shape)))
    rng = np.random.default_rng(seed)
    scale = 1.0 + rng.uniform(-0.03, 0.03)
    shift = np.array([*rng.uniform(-5.0, 5.0, 2), 0.0])
    # World position (x, y, z) of voxel (0, 0, 0): centred in x/y, the top slice just below TOP_Z_MM.
    first = np.array([-(shape[2] - 1) * spacing[2] / 2, -(shape[1] - 1) * spacing[1] / 2, TOP_Z_MM - spacing[0] / 2])
    step = np.array([spacing[2], spacing[1], -spacing[0]])  # x, y, z per column, row, slice index
    canvas = _Canvas(shape, first=(first - shift) / scale, step=step / scale)

    labels = np.zeros(shape, np.uint8)
    for name, part in _anatomy():
        canvas.paint(labels, total_label(name), part)
    body = np.zeros(shape, bool)
    for part in _body():
        canvas.paint(body, True, part, only_empty=False)

    hu = np.full(256, SOFT_TISSUE_HU, np.int16)
    hu[[total_label(n) for n in BONE_NAMES]] = BONE_HU
    hu[total_label("costal_cartilages")] = CARTILAGE_HU
    hu[[total_label(n) for n in LUNG_LOBES]] = LUNG_HU
    ct = np.where(body, np.int16(SOFT_TISSUE_HU), np.int16(AIR_HU))
    labelled = labels > 0
    ct[labelled] = hu[labels[labelled]]
    volume = hd.Volume.from_components(
        ct,
        spacing=spacing,
        direction=[[0, 0, 1], [0, 1, 0], [-1, 0, 0]],  # columns: slices -> -z, rows -> +y, columns -> +x
        position=first.tolist(),
        coordinate_system="PATIENT",
    )
    return volume, labels


class Shape(Protocol):
    """A solid in anatomy coordinates (mm): its bounding box and a vectorised membership test."""

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]: ...

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray: ...


class _Canvas:
    """Rasterises shapes on the grid, evaluating each only inside its bounding box."""

    def __init__(self, shape: tuple[int, ...], first: np.ndarray, step: np.ndarray):
        self.size = np.array(shape[::-1])  # x, y, z
        self.first, self.step = first, step

    def paint(self, array: np.ndarray, value: int | bool, shape: Shape, only_empty: bool = True) -> None:
        """Set ``value`` inside ``shape``; with ``only_empty`` earlier structures keep their voxels (no overlap)."""
        lo, hi = shape.bounds
        ends = np.sort([(lo - self.first) / self.step, (hi - self.first) / self.step], axis=0)
        start = np.clip(np.floor(ends[0]).astype(int), 0, self.size)
        stop = np.clip(np.ceil(ends[1]).astype(int) + 1, 0, self.size)
        if np.any(stop <= start):
            return
        x, y, z = (self.first[a] + self.step[a] * np.arange(start[a], stop[a]) for a in range(3))
        region = array[start[2] : stop[2], start[1] : stop[1], start[0] : stop[0]]
        mask = shape.inside(x[None, None, :], y[None, :, None], z[:, None, None])
        if only_empty:
            mask &= region == 0
        region[mask] = value


def write_phantom_series(volume: hd.Volume, ct_dir, benchmark: str) -> None:
    """The phantom CT as a DICOM series; UIDs derive from the benchmark's name and the grid, so reruns match."""
    from pydicom.uid import generate_uid

    uids = {
        f"{part}_uid": generate_uid(entropy_srcs=[f"bonehub.bench.{benchmark}", part, *map(str, volume.spatial_shape)])
        for part in ("study_instance", "series_instance", "frame_of_reference")
    }
    write_ct_series(volume, ct_dir, **uids, patient_name="Phantom^Skeleton", patient_id="PHANTOM",
                    series_description="skeleton phantom")


def _vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=float)


@dataclass(frozen=True)
class Ellipsoid:
    centre: tuple[float, float, float]
    semi: tuple[float, float, float]

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _vec(*self.centre) - self.semi, _vec(*self.centre) + self.semi

    def inside(self, x, y, z):
        (cx, cy, cz), (ax, ay, az) = self.centre, self.semi
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1


@dataclass(frozen=True)
class EllipticCylinder:
    """Vertical cylinder with an elliptic cross-section, from ``z0`` to ``z1``."""

    centre: tuple[float, float]
    semi: tuple[float, float]
    z0: float
    z1: float

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        (cx, cy), (ax, ay) = self.centre, self.semi
        return _vec(cx - ax, cy - ay, self.z0), _vec(cx + ax, cy + ay, self.z1)

    def inside(self, x, y, z):
        (cx, cy), (ax, ay) = self.centre, self.semi
        return (((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1) & (z >= self.z0) & (z <= self.z1)


@dataclass(frozen=True)
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _vec(*self.lo), _vec(*self.hi)

    def inside(self, x, y, z):
        (x0, y0, z0), (x1, y1, z1) = self.lo, self.hi
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1)


@dataclass(frozen=True)
class Capsule:
    """Points within ``radius`` of the segment ``p0``-``p1`` (long bones, clavicles, pubic rami)."""

    p0: tuple[float, float, float]
    p1: tuple[float, float, float]
    radius: float

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        ends = np.array([self.p0, self.p1])
        return ends.min(0) - self.radius, ends.max(0) + self.radius

    def inside(self, x, y, z):
        p0, d = _vec(*self.p0), _vec(*self.p1) - self.p0
        rx, ry, rz = x - p0[0], y - p0[1], z - p0[2]
        t = np.clip((rx * d[0] + ry * d[1] + rz * d[2]) / (d @ d), 0.0, 1.0)
        return (rx - t * d[0]) ** 2 + (ry - t * d[1]) ** 2 + (rz - t * d[2]) ** 2 <= self.radius**2


@dataclass(frozen=True)
class Minus:
    """``shape`` with ``hole`` cut out (skull shell with a foramen magnum, vertebral arch with a canal)."""

    shape: Shape
    hole: Shape

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.shape.bounds

    def inside(self, x, y, z):
        return self.shape.inside(x, y, z) & ~self.hole.inside(x, y, z)


@dataclass(frozen=True)
class Both:
    """Intersection of two shapes (an iliac wing cut from a bowl, a lung lobe cut by its fissure)."""

    first: Shape
    second: Shape

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        (lo1, hi1), (lo2, hi2) = self.first.bounds, self.second.bounds
        return np.maximum(lo1, lo2), np.minimum(hi1, hi2)

    def inside(self, x, y, z):
        return self.first.inside(x, y, z) & self.second.inside(x, y, z)


@dataclass(frozen=True)
class Below:
    """Half-space under the oblique plane ``z = z0 + slope * (y - y0)``; unbounded, so only for ``Both``."""

    z0: float
    y0: float
    slope: float

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(3, -np.inf), np.full(3, np.inf)

    def inside(self, x, y, z):
        return z < self.z0 + self.slope * (y - self.y0)


@dataclass(frozen=True)
class Arc:
    """Tube along a half-ellipse in the axial plane that descends anteriorly (a rib, its cartilage, the mandible).

    The centre line is ``(side * a * sin(phi), yc + b * cos(phi))`` for ``phi`` (degrees) in
    ``[phi0, phi1]``, 0 = posterior midline, 180 = anterior midline, at height
    ``z0 - drop * (1 - cos(phi)) / 2``; the cross-section is an ellipse of half
    thickness ``radial`` in the plane and ``height`` along z. ``side`` 0 = both sides.
    """

    a: float
    b: float
    yc: float
    z0: float
    drop: float
    phi0: float
    phi1: float
    side: float
    radial: float
    height: float

    def _z(self, phi: float | np.ndarray) -> float | np.ndarray:
        return self.z0 - self.drop * (1 - np.cos(phi)) / 2

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = self.a + self.radial
        x0, x1 = {1.0: (0.0, reach), -1.0: (-reach, 0.0), 0.0: (-reach, reach)}[self.side]
        p0, p1 = np.radians([self.phi0, self.phi1])
        z_lo, z_hi = self._z(p1) - self.height, self._z(p0) + self.height
        return _vec(x0, self.yc - self.b - self.radial, z_lo), _vec(x1, self.yc + self.b + self.radial, z_hi)

    def inside(self, x, y, z):
        u = (np.abs(x) if self.side == 0 else self.side * x) / self.a
        v = (y - self.yc) / self.b
        phi = np.arctan2(u, v)  # in the plane: depends on x and y only
        in_plane = ((np.hypot(u, v) - 1) * np.hypot(self.a * np.sin(phi), self.b * np.cos(phi)) / self.radial) ** 2
        on_arc = (u >= 0) & (phi >= np.radians(self.phi0)) & (phi <= np.radians(self.phi1)) & (in_plane <= 1)
        return on_arc & (((z - self._z(phi)) / self.height) ** 2 <= 1 - in_plane)


@dataclass(frozen=True)
class Plate:
    """Thin triangular plate: triangle ``corners`` in (|x|, z) on one side, mid-surface ``y = y0 + slope * (|x| - x0)``."""

    corners: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    side: float
    y0: float
    x0: float
    slope: float
    half_thickness: float

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        xs, zs = np.array(self.corners).T
        ys = self.y0 + self.slope * (xs - self.x0)
        lo = _vec(xs.min(), ys.min() - self.half_thickness, zs.min())
        hi = _vec(xs.max(), ys.max() + self.half_thickness, zs.max())
        if self.side < 0:
            lo[0], hi[0] = -hi[0], -lo[0]
        return lo, hi

    def inside(self, x, y, z):
        lateral = self.side * x
        (xa, za), (xb, zb), (xc, zc) = self.corners
        edges = [(xb - xa) * (z - za) - (zb - za) * (lateral - xa), (xc - xb) * (z - zb) - (zc - zb) * (lateral - xb), (xa - xc) * (z - zc) - (za - zc) * (lateral - xc)]
        in_triangle = ((edges[0] >= 0) & (edges[1] >= 0) & (edges[2] >= 0)) | ((edges[0] <= 0) & (edges[1] <= 0) & (edges[2] <= 0))
        return in_triangle & (np.abs(y - self.y0 - self.slope * (lateral - self.x0)) <= self.half_thickness)


# Spine: (names, pitch mm, body half-width, body half-depth, canal radius, spinous length, transverse reach).
_SPINE = (
    (CERVICAL, 19.0, 9.0, 7.0, 8.0, 15.0, 25.0),
    (THORACIC, 23.0, 14.0, 12.0, 8.0, 25.0, 32.0),
    (LUMBAR, 34.0, 22.0, 16.0, 9.0, 28.0, 42.0),
    (("vertebrae_S1",), 30.0, 25.0, 17.0, 9.0, 20.0, 48.0),
)
_SPINE_TOP_Z = 1595.0
# Vertebral body centre y (mm) along z: cervical and lumbar lordosis, thoracic kyphosis, sacrum tilted back.
_SPINE_Y = ((900.0, 1000.0, 1100.0, 1195.0, 1330.0, 1471.0, 1590.0), (85.0, 45.0, 22.0, 30.0, 48.0, 20.0, -5.0))
# Ribs 1..12: half-width, half-depth, anterior descent (mm), end of bone and of cartilage (degrees).
_RIB_A = (60, 85, 105, 118, 128, 135, 140, 142, 140, 135, 125, 110)
_RIB_B = (45, 60, 72, 82, 90, 95, 98, 100, 98, 95, 90, 85)
_RIB_DROP = (30, 45, 55, 60, 65, 70, 70, 70, 70, 70, 60, 50)
_RIB_END = (130, 130, 130, 130, 130, 130, 130, 125, 125, 125, 100, 80)
_CARTILAGE_END = (168, 168, 168, 168, 168, 168, 168, 150, 150, 150, None, None)
_RIB_CENTRE_Y = -5.0


def _spine_y(z: float) -> float:
    return float(np.interp(z, *_SPINE_Y))


def _vertebrae() -> Iterator[tuple[str, Shape]]:
    """Body, arch around the canal, spinous and transverse processes; discs (18 % of the pitch) stay empty."""
    top = _SPINE_TOP_Z
    for names, pitch, bx, by, canal, spinous, transverse in _SPINE:
        for name in names:
            z0, z1 = top - pitch * 0.91, top - pitch * 0.09
            yb = _spine_y((z0 + z1) / 2)
            yc = yb + by + canal + 1
            yield name, EllipticCylinder((0, yb), (bx, by), z0, z1)
            ring = EllipticCylinder((0, yc), (canal + 5, canal + 5), z0, z1)
            yield name, Minus(ring, EllipticCylinder((0, yc), (canal, canal), z0, z1))
            yield name, Box((-4, yc + canal, z0), (4, yc + canal + spinous, z1 - pitch * 0.2))
            yield name, Box((-transverse, yc - 5, z0 + pitch * 0.2), (transverse, yc + 5, z1 - pitch * 0.2))
            top -= pitch
    # Sacrum below S1: a wedge that narrows and tilts back, as stacked slabs.
    for z in np.arange(900.0, top, 5.0):
        f = (top - z) / (top - 900.0)
        half_width, yb = 50 - 38 * f, _spine_y(z)
        yield "sacrum", EllipticCylinder((0, yb), (half_width, 18 - 6 * f), z, z + 5)


def _thoracic_z(k: int) -> float:
    """Height of the middle of vertebra T``k``."""
    cervical_pitch, thoracic_pitch = _SPINE[0][1], _SPINE[1][1]
    return _SPINE_TOP_Z - 7 * cervical_pitch - (k - 0.5) * thoracic_pitch


def _rib_neck(a: float, b: float, side: float, z: float) -> Shape:
    """Rib head and neck: from the arc's posterior end to the side of its own vertebra's arch, where ribs articulate."""
    phi = np.radians(18.0)
    canal, half_depth = _SPINE[1][4], _SPINE[1][3]
    arch_y = _spine_y(z) + half_depth + canal + 1
    return Capsule((side * a * np.sin(phi), _RIB_CENTRE_Y + b * np.cos(phi), z), (side * (canal + 8), arch_y, z), 4.0)


def _rib_cage() -> Iterator[tuple[str, Shape]]:
    for side, s in SIDES.items():
        for k in range(1, 13):
            a, b, drop, end, cartilage = _RIB_A[k - 1], _RIB_B[k - 1], _RIB_DROP[k - 1], _RIB_END[k - 1], _CARTILAGE_END[k - 1]
            arc = dict(a=a, b=b, yc=_RIB_CENTRE_Y, z0=_thoracic_z(k), drop=drop, side=s, radial=4.0, height=6.0)
            yield f"rib_{side}_{k}", Arc(phi0=18, phi1=end, **arc)
            yield f"rib_{side}_{k}", _rib_neck(a, b, s, arc["z0"])
            if cartilage is not None:
                yield "costal_cartilages", Arc(phi0=end, phi1=cartilage, **arc)
    for z in np.arange(1250.0, 1440.0, 5.0):  # sternum: slanted slab, manubrium wider
        f = (z - 1250.0) / 190.0
        yield "sternum", EllipticCylinder((0, -105 + 50 * f), (12 + 10 * f, 5), z, z + 5)


def _limbs() -> Iterator[tuple[str, Shape]]:
    for side, s in SIDES.items():
        yield f"scapula_{side}", Plate(((95, 1440), (100, 1285), (160, 1425)), s, y0=100, x0=95, slope=-0.55, half_thickness=5)
        yield f"scapula_{side}", Ellipsoid((s * 158, 58, 1410), (10, 16, 20))  # glenoid
        yield f"scapula_{side}", Capsule((s * 110, 95, 1436), (s * 170, 62, 1455), 8)  # spine (on the blade) and acromion
        yield f"clavicula_{side}", Capsule((s * 22, -62, 1448), (s * 150, 40, 1466), 7)
        yield f"humerus_{side}", Ellipsoid((s * 182, 45, 1400), (23, 23, 23))
        yield f"humerus_{side}", Capsule((s * 185, 42, 1390), (s * 195, 30, 1115), 11)
        yield f"humerus_{side}", Ellipsoid((s * 195, 32, 1100), (28, 13, 16))
        yield f"femur_{side}", Ellipsoid((s * 92, 10, 905), (24, 24, 24))
        yield f"femur_{side}", Capsule((s * 92, 10, 905), (s * 120, 15, 875), 15)
        yield f"femur_{side}", Ellipsoid((s * 128, 20, 880), (14, 18, 22))  # greater trochanter
        yield f"femur_{side}", Capsule((s * 120, 15, 870), (s * 85, 5, 520), 14)
        yield f"femur_{side}", Ellipsoid((s * 85, 10, 500), (40, 30, 25))  # condyles
        bowl = Minus(Ellipsoid((s * 30, 0, 990), (120, 90, 80)), Ellipsoid((s * 30, 0, 990), (114, 84, 74)))
        lateral = (55, 160) if s > 0 else (-160, -55)
        yield f"hip_{side}", Both(bowl, Box((lateral[0], -40, 960), (lateral[1], 100, 1075)))  # iliac wing
        yield f"hip_{side}", Ellipsoid((s * 88, 15, 950), (20, 20, 40))  # body of the ilium
        yield f"hip_{side}", Capsule((s * 88, 15, 975), (s * 100, 72, 1000), 10)  # joins the body to the wing behind
        yield f"hip_{side}", Ellipsoid((s * 90, 10, 905), (32, 32, 34))  # acetabulum around the femoral head
        yield f"hip_{side}", Ellipsoid((s * 75, 30, 860), (18, 20, 35))  # ischium
        yield f"hip_{side}", Capsule((s * 80, -20, 890), (s * 14, -55, 880), 11)  # pubis, symphysis gap at x = 0


def _head() -> Iterator[tuple[str, Shape]]:
    shell = Minus(Ellipsoid((0, 8, 1672), (74, 94, 82)), Ellipsoid((0, 8, 1672), (67, 87, 75)))
    yield "skull", Minus(shell, EllipticCylinder((0, 5), (16, 18), 1500, 1610))  # foramen magnum
    yield "skull", Arc(a=45, b=60, yc=-20, z0=1575, drop=0, phi0=70, phi1=180, side=0, radial=5, height=12)  # mandible


def _organs() -> Iterator[tuple[str, Shape]]:
    for side, s in SIDES.items():
        lung = Ellipsoid((s * 75, 10, 1330), (55, 75, 120))
        lower = Both(lung, Below(z0=1330, y0=10, slope=0.9))  # oblique fissure: lower lobe posterior-inferior
        yield f"lung_lower_lobe_{side}", lower
        if side == "right":
            yield "lung_middle_lobe_right", Minus(Minus(lung, lower), Box((-500, -500, 1320), (500, 500, 2000)))
        yield f"lung_upper_lobe_{side}", lung
    yield "liver", Ellipsoid((-65, -5, 1170), (80, 80, 70))
    yield "spleen", Ellipsoid((95, 45, 1180), (30, 45, 55))
    yield "kidney_left", Ellipsoid((65, 55, 1110), (28, 22, 55))
    yield "kidney_right", Ellipsoid((-65, 55, 1085), (28, 22, 55))
    yield "brain", Ellipsoid((0, 8, 1672), (60, 80, 68))


def _anatomy() -> Iterator[tuple[str, Shape]]:
    """Every labelled part, in painting order: earlier parts win where solids touch."""
    yield from _vertebrae()
    yield from _limbs()
    yield from _rib_cage()
    yield from _head()
    yield from _organs()


def _body() -> Iterator[Shape]:
    """Soft-tissue outline: head, face, neck, trunk, shoulders, arms, pelvis and legs."""
    yield Ellipsoid((0, 8, 1672), (84, 104, 94))
    yield Ellipsoid((0, -35, 1590), (58, 62, 50))
    yield EllipticCylinder((0, 10), (60, 60), 1440, 1620)
    yield EllipticCylinder((0, 0), (170, 130), 880, 1470)
    yield Ellipsoid((0, 20, 1450), (200, 110, 50))
    yield Ellipsoid((0, 10, 900), (175, 120, 80))
    for s in SIDES.values():
        yield Capsule((s * 185, 40, 1420), (s * 200, 30, 900), 42)
        yield Capsule((s * 95, 10, 880), (s * 85, 5, 480), 80)
        yield Capsule((s * 85, 5, 480), (s * 85, 10, 150), 55)
