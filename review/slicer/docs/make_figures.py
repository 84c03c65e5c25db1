"""Figures of the reviewer's guide (review/slicer/README.md), drawn with matplotlib; no Slicer involved.

    .venv/bin/python review/slicer/docs/make_figures.py

review_loop.png: the review loop and which file each step reads or writes.
roi_example.png: a real ROI from the bundled sample (CT + TotalSegmentator L1 mask), cut the way
``bonehub review export`` cuts it (bounding box + margin), shown as three orthogonal slices.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parents[2] / "sample" / "ts_abdomen_3mm"
L1 = 31  # vertebrae_L1 in TotalSegmentator v2 "total" (labels/mappings/totalsegmentator_total.csv)
MARGIN_MM = 10.0

BATCH, SLICER, SERVER = "#dbe9f6", "#e6f2e1", "#fbe8d3"


def _box(ax, x: float, y: float, w: float, h: float, title: str, body: str, color: str) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01,rounding_size=0.015",
                                facecolor=color, edgecolor="#444444", linewidth=1))
    ax.text(x + w / 2, y + h - 0.025, title, ha="center", va="top", fontsize=9, weight="bold")
    ax.text(x + w / 2, y + h - 0.075, body, ha="center", va="top", fontsize=7.5, family="monospace",
            linespacing=1.35)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str = "", both: bool = False,
           side: str = "above") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="<|-|>" if both else "-|>", mutation_scale=12,
                                 color="#333333", linewidth=1.1))
    if label:
        x, y = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        if side == "right":
            ax.text(x + 0.01, y, label, ha="left", va="center", fontsize=7, style="italic")
        else:
            ax.text(x, y + 0.015, label, ha="center", va="bottom", fontsize=7, style="italic")


def review_loop(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(11, 5.4), dpi=100)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.text(0.01, 0.98, "bonehub (command line)", fontsize=10, weight="bold", color="#1f4e79", va="top")
    ax.text(0.38, 0.98, "3D Slicer: BoneHub Review module", fontsize=10, weight="bold", color="#2e6b1f", va="top")

    _box(ax, 0.01, 0.70, 0.28, 0.21, "bonehub review worklist",
         "QC: bones with status 'review'\n-> EXPORT/worklist.json\n(priority 1 = first)", BATCH)
    _box(ax, 0.01, 0.36, 0.28, 0.28, "bonehub review export",
         "EXPORT/<series>/<bone>/\n  item.json\n  ct_roi.nrrd, mask_roi.nrrd\n  dicom/ct/*.dcm\n"
         "  dicom/roi_seg.dcm\n(+ sent to a DICOMweb store)", BATCH)
    _box(ax, 0.01, 0.04, 0.28, 0.24, "bonehub review import",
         "EXPORT/<series>/<bone>\n-> corrected SEG that\n   references the original\n-> revised QC SR", BATCH)

    _box(ax, 0.38, 0.70, 0.26, 0.21, "1. Open worklist",
         "export folder (+ DICOMweb\nURL, token): the items,\npending/exported/corrected", SLICER)
    _box(ax, 0.38, 0.36, 0.26, 0.28, "2. Load",
         "ROI CT + start mask as one\nsegment named after the bone:\nct_roi.nrrd + mask_roi.nrrd,\n"
         "or the ROI CT series and\nROI SEG from DICOMweb", SLICER)
    _box(ax, 0.71, 0.36, 0.28, 0.28, "3. Correct with nnInteractive",
         "SlicerNNInteractive module:\npoint, box, scribble, lasso\nprompts on the selected\n"
         "segment (or Segment Editor)", SLICER)
    _box(ax, 0.71, 0.70, 0.28, 0.21, "nnInteractive server (GPU)",
         "nninteractive-server\nhttp://host:1527 + API key\n(or local inference)", SERVER)
    _box(ax, 0.38, 0.04, 0.61, 0.24, "4. Accept  (Skip writes nothing)",
         "bone segment -> label map on the ROI grid\n"
         "checked: the ROI grid within 1e-3 mm, exactly one label\n"
         "-> EXPORT/<series>/<bone>/corrected.nrrd\n"
         "-> EXPORT/<series>/<bone>/correction.json (reviewer, method, tool, saved_at)", SLICER)

    _arrow(ax, (0.15, 0.70), (0.15, 0.64))
    _arrow(ax, (0.29, 0.80), (0.38, 0.80), "worklist.json")
    _arrow(ax, (0.29, 0.50), (0.38, 0.50), "files or DICOM")
    _arrow(ax, (0.51, 0.70), (0.51, 0.64))
    _arrow(ax, (0.64, 0.50), (0.71, 0.50), "segment")
    _arrow(ax, (0.85, 0.64), (0.85, 0.70), "prompts, masks", both=True, side="right")
    _arrow(ax, (0.85, 0.36), (0.85, 0.28))
    _arrow(ax, (0.38, 0.12), (0.29, 0.12), "the two files")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _read_ct() -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(SAMPLE / "ct")))
    return reader.Execute()


def roi_example(path: Path) -> None:
    ct = _read_ct()
    labels = sitk.Resample(sitk.ReadImage(str(SAMPLE / "seg_totalsegmentator_v2_full.nii.gz")), ct,
                           sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    hu = sitk.GetArrayFromImage(ct).astype(float)  # (z, y, x)
    bone = sitk.GetArrayFromImage(labels) == L1
    spacing = np.array(ct.GetSpacing())[::-1]  # (z, y, x) mm
    found = np.argwhere(bone)
    margin = np.ceil(MARGIN_MM / spacing).astype(int)
    start = np.maximum(found.min(axis=0) - margin, 0)
    stop = np.minimum(found.max(axis=0) + 1 + margin, bone.shape)
    box = tuple(slice(a, b) for a, b in zip(start, stop))
    roi, mask = hu[box], bone[box]
    centre = np.round(np.argwhere(mask).mean(axis=0)).astype(int)

    views = [("axial", roi[centre[0]], mask[centre[0]], spacing[1] / spacing[2], False),
             ("coronal", roi[:, centre[1]], mask[:, centre[1]], spacing[0] / spacing[2], True),
             ("sagittal", roi[:, :, centre[2]], mask[:, :, centre[2]], spacing[0] / spacing[1], True)]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.9), dpi=100)
    for ax, (name, image, outline, aspect, flip) in zip(axes, views):
        if flip:  # DICOM z runs feet to head; put the head up
            image, outline = image[::-1], outline[::-1]
        ax.imshow(np.clip(image, -450, 1050), cmap="gray", vmin=-450, vmax=1050, aspect=aspect, interpolation="nearest")
        ax.contour(outline.astype(float), levels=[0.5], colors="#ff7f0e", linewidths=1.4)
        ax.set_title(f"{name}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    size = "x".join(str(n) for n in roi.shape[::-1])
    fig.suptitle(f"ROI of the bundled sample CT around L1: {size} voxels (3 mm), bone window; orange: the start mask "
                 "(TotalSegmentator v2 'total')", fontsize=9)
    fig.text(0.5, 0.02, "Rendered with matplotlib from sample/ts_abdomen_3mm, not a Slicer screenshot. "
             "In Slicer the same data appear as the ROI CT volume and one segment named after the bone.",
             ha="center", fontsize=8, style="italic")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    review_loop(HERE / "review_loop.png")
    roi_example(HERE / "roi_example.png")
    for name in ("review_loop.png", "roi_example.png"):
        print(HERE / name, (HERE / name).stat().st_size // 1024, "KiB")
