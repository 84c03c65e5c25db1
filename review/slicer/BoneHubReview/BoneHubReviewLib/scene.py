"""Scene work of the BoneHubReview module: an item's nodes in the Slicer scene, handed over and exported.

Loading an item's ROI CT and start mask (from the exported NRRDs or a DICOMweb store), selecting its
segment for SlicerNNInteractive and exporting the reviewer's correction all call Slicer, so they live
here rather than in the Slicer-free modules beside this one: only ``BoneHubReview.py`` imports this
module (``slicer``, ``vtk`` and ``DICOMLib`` exist only inside Slicer); every decision it needs comes
from ``logic``. Slicer calls were checked in their sources, not run (see ``BoneHubReview.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from . import logic as bhr

# The module's name, not its title "nnInteractive": SlicerNNInteractive.py selects itself by this name.
NNINTERACTIVE_MODULE = "SlicerNNInteractive"
# Segment Editor and SlicerNNInteractive both edit through the scene's vtkMRMLSegmentEditorNode with this
# singleton tag (SegmentEditor.py; SlicerNNInteractive.py setup()), so setting it here hands over the segment.
SEGMENT_EDITOR_TAG = "SegmentEditor"


@dataclass
class LoadedItem:
    """The scene nodes of the item under review, and where its correction goes."""

    folder: Path
    item: dict
    ct: object  # vtkMRMLScalarVolumeNode
    segmentation: object  # vtkMRMLSegmentationNode
    segment_id: str


class BoneHubReviewLogic(ScriptedLoadableModuleLogic):
    """Scene work for one item: load it, hand its segment to nnInteractive, export the correction."""

    def load(self, folder: Path, item: dict, plan: bhr.LoadPlan) -> LoadedItem:
        """ROI CT + one segment holding the start mask, shown in the slice views."""
        name = bhr.bone_label(item)
        if plan.source == "files":
            ct = slicer.util.loadVolume(str(plan.ct_path), {"name": f"{name} ROI CT", "singleFile": True})
            segmentation = self._segmentation_from_labelmap(plan.mask_path, ct, name)
        else:
            ct, segmentation = self._load_from_dicomweb(plan.request, name)
        segment_id = self._bone_segment(segmentation, name)
        slicer.util.setSliceViewerLayers(background=ct, fit=True)
        return LoadedItem(folder, item, ct, segmentation, segment_id)

    def unload(self, loaded: LoadedItem) -> None:
        """Drop an item's nodes so that a long worklist does not fill the scene."""
        for node in (loaded.segmentation, loaded.ct):
            if node.GetScene() is not None:
                slicer.mrmlScene.RemoveNode(node)

    def _new_segmentation(self, ct, name: str):
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(ct)
        return segmentation

    def _segmentation_from_labelmap(self, path: Path, ct, name: str):
        labelmap = slicer.util.loadLabelVolume(
            str(path), {"name": f"{name} start mask", "singleFile": True, "show": False})
        segmentation = self._new_segmentation(ct, name)
        try:
            if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation):
                raise RuntimeError(f"Slicer could not turn {path.name} into a segment")
        finally:
            slicer.mrmlScene.RemoveNode(labelmap)
        return segmentation

    def _load_from_dicomweb(self, request: bhr.DicomWebRequest, name: str):
        """Retrieve the ROI CT (and ROI SEG, if the export wrote one) into Slicer's DICOM database, then load them."""
        from DICOMLib import DICOMUtils

        for ref in [request.ct] + ([request.seg] if request.seg else []):
            # Returns the series UIDs it imported (or found already imported); errors are shown by Slicer itself.
            imported = DICOMUtils.importFromDICOMWeb(
                dicomWebEndpoint=request.endpoint, studyInstanceUID=ref.study_uid,
                seriesInstanceUID=ref.series_uid, accessToken=request.access_token)
            if ref.series_uid not in imported:
                raise bhr.ReviewError(f"series {ref.series_uid} was not retrieved from {request.endpoint}")
        ct = self._loaded_node(DICOMUtils.loadSeriesByUID([request.ct.series_uid]), "vtkMRMLScalarVolumeNode", "ROI CT")
        ct.SetName(f"{name} ROI CT")
        if request.seg is None:  # the export had no start mask: the reviewer starts from an empty segment
            return ct, self._new_segmentation(ct, name)
        segmentation = self._loaded_node(
            DICOMUtils.loadSeriesByUID([request.seg.series_uid]), "vtkMRMLSegmentationNode",
            "ROI SEG (DICOM SEG loading needs Slicer 5.12+ or the QuantitativeReporting extension)")
        return ct, segmentation

    @staticmethod
    def _loaded_node(node_ids, class_name: str, what: str):
        for node_id in node_ids:
            node = slicer.mrmlScene.GetNodeByID(node_id)
            if node is not None and node.IsA(class_name):
                return node
        raise bhr.ReviewError(f"the {what} did not load")

    @staticmethod
    def _bone_segment(segmentation, name: str) -> str:
        """The one segment of the start mask, named after the bone (an empty mask gives an empty segment)."""
        segments = segmentation.GetSegmentation()
        count = segments.GetNumberOfSegments()
        if count == 0:
            return segments.AddEmptySegment("", name)
        if count > 1:
            raise bhr.ReviewError(f"the start mask holds {count} segments; an item is one bone")
        segment_id = segments.GetNthSegmentID(0)
        segments.GetSegment(segment_id).SetName(name)
        return segment_id

    @staticmethod
    def _segment_editor_node():
        """The scene's shared segment editor node, created the way Segment Editor creates it."""
        node = slicer.mrmlScene.GetSingletonNode(SEGMENT_EDITOR_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag(SEGMENT_EDITOR_TAG)
            node = slicer.mrmlScene.AddNode(node)
        return node

    def hand_over(self, loaded: LoadedItem) -> None:
        """Select the item's CT and bone segment in the shared editor node and open SlicerNNInteractive.

        SlicerNNInteractive prompts act on the selected segment and seed the session with its current
        mask (SlicerNNInteractive.py: get_volume_node, get_current_segment_id, _build_segment_seed).
        """
        if slicer.app.moduleManager().module(NNINTERACTIVE_MODULE) is None:
            raise bhr.ReviewError("SlicerNNInteractive is not installed: install the 'nnInteractive' extension "
                                  "from the Extensions Manager and restart Slicer (or edit with Segment Editor)")
        editor = self._segment_editor_node()
        editor.SetAndObserveSegmentationNode(loaded.segmentation)
        editor.SetAndObserveSourceVolumeNode(loaded.ct)
        editor.SetSelectedSegmentID(loaded.segment_id)
        slicer.util.selectModule(NNINTERACTIVE_MODULE)

    def export_correction(self, loaded: LoadedItem, reviewer: str, method: str) -> Path:
        """Save the bone segment on the ROI grid, check it, and write the correction files.

        The reference geometry is ct_roi.nrrd's grid (or item.json's ROI when only DICOM was exported), built
        here rather than taken from the loaded CT node: a CT loaded from DICOM may run its slices the other
        way. With a reference volume, ExportSegmentsToLabelmapNode uses that volume's full extent and matrix
        (vtkSlicerSegmentationsModuleLogic.cxx: GenerateMergedLabelmapInReferenceGeometry).
        """
        if loaded.segmentation.GetSegmentation().GetSegment(loaded.segment_id) is None:
            raise bhr.ReviewError("the bone segment was deleted; Load the item again")
        grid = bhr.reference_grid(loaded.folder, loaded.item)
        reference = slicer.util.addVolumeFromArray(  # Slicer arrays are indexed (K, J, I)
            np.zeros(grid.shape[::-1], np.uint8), bhr.ijk_to_ras(grid), "BoneHub ROI grid", "vtkMRMLLabelMapVolumeNode")
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "BoneHub correction")
        partial = loaded.folder / bhr.PARTIAL_FILE
        try:
            segment_ids = vtk.vtkStringArray()
            segment_ids.InsertNextValue(loaded.segment_id)
            logic = slicer.modules.segmentations.logic()
            if not logic.ExportSegmentsToLabelmapNode(loaded.segmentation, segment_ids, labelmap, reference):
                raise RuntimeError("Slicer could not export the segment as a label map")
            if not slicer.util.saveNode(labelmap, str(partial)):
                raise RuntimeError(f"Slicer could not save {partial}")
            return bhr.finalize_correction(loaded.folder, loaded.item, partial, reviewer, method)
        finally:
            partial.unlink(missing_ok=True)
            slicer.mrmlScene.RemoveNode(labelmap)
            slicer.mrmlScene.RemoveNode(reference)
