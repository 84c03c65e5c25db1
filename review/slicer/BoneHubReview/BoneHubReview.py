"""BoneHub Review: the 3D Slicer module of BoneHub's Stage 3 (human review of the bones QC doubts).

The reviewer opens the folder ``bonehub review export`` wrote, loads one item (ROI CT + start mask,
from the exported NRRDs or from a DICOMweb store), corrects the bone with SlicerNNInteractive, and
Accept correction saves ``corrected.nrrd`` + ``correction.json`` for ``bonehub review import``; Accept as is,
Reject (with a reason) and Missing (a bone no source labelled) save ``verdict.json`` instead. Every decision
lives in ``BoneHubReviewLib`` (no Slicer there, tested by pytest; this file calls it through
``BoneHubReviewLib.logic``); the scene work (``BoneHubReviewLogic``: load, hand over, export) is in
``BoneHubReviewLib/scene.py``, the one Lib module that uses Slicer; this file is the module, UI and self-test.

Slicer calls here and in ``scene.py`` were checked in their sources, not run (BoneHub's CI has no Slicer):
Slicer ``Modules/Scripted/DICOMLib/DICOMUtils.py`` (importFromDICOMWeb, loadSeriesByUID; v5.6.0 and main),
``Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h``,
``Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.{h,cxx}``, ``Base/Python/slicer/util.py``,
``Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx`` (puts this folder on the Python path), and
coendevente/SlicerNNInteractive ``slicer_plugin/SlicerNNInteractive/SlicerNNInteractive.py``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import ctk
import numpy as np
import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

from BoneHubReviewLib import logic as bhr
from BoneHubReviewLib.scene import BoneHubReviewLogic, LoadedItem  # Slicer looks for <Module>Logic in this file

SETTINGS = "BoneHubReview/"


class BoneHubReview(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "BoneHub Review"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []  # SlicerNNInteractive is optional: checked when the reviewer asks for it
        self.parent.contributors = ["BoneHub Segmentation"]
        self.parent.helpText = (
            "Review the bones BoneHub's QC doubts: open the folder written by 'bonehub review export', "
            "load an item, correct it with nnInteractive (or the Segment Editor), then Accept correction; or "
            "Accept as is, Reject (with a reason), or mark a bone no source labelled as Missing. "
            "Each writes into the item's folder for 'bonehub review import'. "
            "See review/slicer/README.md in the BoneHub repository."
        )
        self.parent.acknowledgementText = (
            "Uses SlicerNNInteractive (de Vente et al., arXiv:2504.07991) and nnInteractive "
            "(Isensee et al., arXiv:2503.08373)."
        )


class BoneHubReviewWidget(ScriptedLoadableModuleWidget):
    """Export folder, store, worklist table and the Load / Correct / Accept / Skip and verdict buttons."""

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = BoneHubReviewLogic()
        self.statuses: list[bhr.ItemStatus] = []
        self.skipped: set[str] = set()
        self.loaded: LoadedItem | None = None
        settings = qt.QSettings()

        source = ctk.ctkCollapsibleButton()
        source.text = "Export folder and store"
        self.layout.addWidget(source)
        form = qt.QFormLayout(source)
        self.exportPath = ctk.ctkPathLineEdit()
        self.exportPath.filters = ctk.ctkPathLineEdit.Dirs
        self.exportPath.settingKey = SETTINGS + "ExportFolder"
        self.exportPath.toolTip = "The folder 'bonehub review export' wrote (it holds worklist.json)"
        form.addRow("Export folder:", self.exportPath)
        self.urlEdit = qt.QLineEdit(str(settings.value(SETTINGS + "DicomWebUrl", "") or ""))
        self.urlEdit.placeholderText = "optional, e.g. https://host/dicom-web (empty: load the exported files)"
        form.addRow("DICOMweb URL:", self.urlEdit)
        self.tokenEdit = qt.QLineEdit()
        self.tokenEdit.echoMode = qt.QLineEdit.Password
        self.tokenEdit.placeholderText = "optional access token (kept for this session only)"
        form.addRow("Access token:", self.tokenEdit)
        self.reviewerEdit = qt.QLineEdit(str(settings.value(SETTINGS + "Reviewer", "") or ""))
        self.reviewerEdit.placeholderText = "your name, saved in correction.json"
        form.addRow("Reviewer:", self.reviewerEdit)
        row = qt.QHBoxLayout()
        self.openButton = qt.QPushButton("Open worklist")
        self.checkButton = qt.QPushButton("Check store")
        self.checkButton.toolTip = "Ask the DICOMweb store for one study with the URL and token above"
        row.addWidget(self.openButton)
        row.addWidget(self.checkButton)
        form.addRow(row)

        worklist = ctk.ctkCollapsibleButton()
        worklist.text = "Worklist"
        self.layout.addWidget(worklist)
        box = qt.QVBoxLayout(worklist)
        self.table = qt.QTableWidget(0, len(bhr.TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(bhr.TABLE_COLUMNS))
        self.table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(qt.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(220)
        box.addWidget(self.table)

        review = ctk.ctkCollapsibleButton()
        review.text = "Review"
        self.layout.addWidget(review)
        form = qt.QFormLayout(review)
        self.methodCombo = qt.QComboBox()
        for method in bhr.TOOL_BY_METHOD:
            self.methodCombo.addItem(method)
        self.methodCombo.toolTip = "semiautomatic: corrected with nnInteractive; manual: Segment Editor only"
        form.addRow("Method:", self.methodCombo)
        row = qt.QHBoxLayout()
        self.loadButton = qt.QPushButton("Load")
        self.correctButton = qt.QPushButton("Correct with nnInteractive")
        self.acceptButton = qt.QPushButton("Accept correction")
        self.skipButton = qt.QPushButton("Skip")
        for button in (self.loadButton, self.correctButton, self.acceptButton, self.skipButton):
            row.addWidget(button)
        form.addRow(row)
        row = qt.QHBoxLayout()
        self.acceptAsIsButton = qt.QPushButton("Accept as is")
        self.acceptAsIsButton.toolTip = "QC doubted this bone, but its mask is right: nothing to correct"
        self.rejectButton = qt.QPushButton("Reject...")
        self.rejectButton.toolTip = "The mask is unusable; you are asked why"
        self.missingButton = qt.QPushButton("Missing...")
        self.missingButton.toolTip = "A bone in this series' image that no source labelled; you are asked which"
        for button in (self.acceptAsIsButton, self.rejectButton, self.missingButton):
            row.addWidget(button)
        form.addRow("Verdict:", row)
        self.statusLabel = qt.QLabel("Choose the export folder and press Open worklist.")
        self.statusLabel.wordWrap = True
        form.addRow(self.statusLabel)
        self.layout.addStretch(1)

        self.openButton.connect("clicked(bool)", self.onOpen)
        self.checkButton.connect("clicked(bool)", self.onCheckStore)
        self.loadButton.connect("clicked(bool)", self.onLoad)
        self.table.connect("cellDoubleClicked(int,int)", lambda row, column: self.onLoad())
        self.correctButton.connect("clicked(bool)", self.onCorrect)
        self.acceptButton.connect("clicked(bool)", self.onAccept)
        self.skipButton.connect("clicked(bool)", self.onSkip)
        self.acceptAsIsButton.connect("clicked(bool)", lambda: self.onVerdict(bhr.ACCEPTED))
        self.rejectButton.connect("clicked(bool)", lambda: self.onVerdict(bhr.REJECTED))
        self.missingButton.connect("clicked(bool)", self.onMissing)

    # ------------------------------------------------------------------ worklist table

    def _refresh(self) -> None:
        """Re-read the worklist and item states from disk and redraw the table."""
        _, self.statuses = bhr.list_items(self.exportPath.currentPath)
        self.table.setRowCount(len(self.statuses))
        for row, status in enumerate(self.statuses):
            for column, text in enumerate(bhr.table_row(status, status.entry.item_id in self.skipped)):
                cell = qt.QTableWidgetItem(text)
                cell.setToolTip(text)
                self.table.setItem(row, column, cell)

    def _select(self, item_id: str | None) -> None:
        ids = [status.entry.item_id for status in self.statuses]
        if item_id in ids:
            self.table.selectRow(ids.index(item_id))

    def _selected(self) -> bhr.ItemStatus:
        row = self.table.currentRow()
        if not 0 <= row < len(self.statuses):
            raise bhr.ReviewError("select an item in the worklist")
        return self.statuses[row]

    def _say(self, text: str) -> None:
        self.statusLabel.text = text

    # ------------------------------------------------------------------ buttons

    def onOpen(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not open the worklist.", waitCursor=True):
            self.skipped.clear()
            self._refresh()
            self.exportPath.addCurrentPathToHistory()
            first = bhr.next_item_id(self.statuses, None, self.skipped)
            self._select(first)
            done = sum(status.state == bhr.CORRECTED for status in self.statuses)
            self._say(f"{len(self.statuses)} items, {done} corrected. "
                      + ("Select an item and press Load." if first else "Nothing left to review."))

    def onCheckStore(self) -> None:
        with slicer.util.tryWithErrorDisplay("The DICOMweb store did not answer as expected.", waitCursor=True):
            self._say(bhr.check_dicomweb(self.urlEdit.text, self.tokenEdit.text))
            qt.QSettings().setValue(SETTINGS + "DicomWebUrl", self.urlEdit.text.strip())

    def onLoad(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not load the item.", waitCursor=True):
            status = self._selected()
            item = bhr.read_item(status.folder)
            plan = bhr.plan_load(status.folder, item, self.urlEdit.text, self.tokenEdit.text)
            if self.loaded is not None:
                self.logic.unload(self.loaded)
                self.loaded = None
            self.loaded = self.logic.load(status.folder, item, plan)
            self.methodCombo.currentText = "manual"  # until nnInteractive is used on this item
            where = plan.request.endpoint if plan.request else "the exported files"
            self._say(f"Loaded {bhr.bone_label(item)} of {item['series_uid']} from {where}. "
                      "Press 'Correct with nnInteractive' (or edit in Segment Editor), come back, then Accept.")

    def onCorrect(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not open nnInteractive."):
            if self.loaded is None:
                raise bhr.ReviewError("Load an item first")
            self.methodCombo.currentText = "semiautomatic"
            self.logic.hand_over(self.loaded)

    def onAccept(self) -> None:
        with slicer.util.tryWithErrorDisplay("The correction was not saved.", waitCursor=True):
            if self.loaded is None:
                raise bhr.ReviewError("Load an item first")
            path = self.logic.export_correction(self.loaded, self.reviewerEdit.text, self.methodCombo.currentText)
            qt.QSettings().setValue(SETTINGS + "Reviewer", self.reviewerEdit.text.strip())
            self._refresh()
            following = bhr.next_item_id(self.statuses, self.loaded.item["item_id"], self.skipped)
            self._select(following)
            self._say(f"Saved {bhr.CORRECTED_FILE} and {path.name} in {path.parent}. "
                      + (f"Next: {following}" if following else "No item left to review."))

    def onSkip(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not skip the item."):
            item_id = self._selected().entry.item_id
            self.skipped.add(item_id)
            self._refresh()
            following = bhr.next_item_id(self.statuses, item_id, self.skipped)
            self._select(following)
            self._say(f"Skipped {item_id} for this session (nothing written). "
                      + (f"Next: {following}" if following else "No item left to review."))


    def onVerdict(self, verdict: str) -> None:
        """Accept as is or Reject (asking why) the selected item; writes verdict.json."""
        with slicer.util.tryWithErrorDisplay("The verdict was not saved."):
            status = self._selected()
            item = bhr.read_item(status.folder)
            reason = ""
            if verdict == bhr.REJECTED:
                reason = qt.QInputDialog.getText(slicer.util.mainWindow(), "Reject",
                                                 f"Why is the mask of {bhr.bone_label(item)} unusable?")
                if not reason.strip():
                    self._say("Reject cancelled: a rejection needs a reason.")
                    return
            path = bhr.write_verdict(status.folder, item, verdict, self.reviewerEdit.text, reason)
            qt.QSettings().setValue(SETTINGS + "Reviewer", self.reviewerEdit.text.strip())
            self._refresh()
            following = bhr.next_item_id(self.statuses, item["item_id"], self.skipped)
            self._select(following)
            self._say(f"Saved {path.name} ({verdict}) in {path.parent}. "
                      + (f"Next: {following}" if following else "No item left to review."))

    def onMissing(self) -> None:
        """A bone of the selected item's series that no source labelled; writes its verdict.json."""
        with slicer.util.tryWithErrorDisplay("The missing bone was not saved."):
            status = self._selected()
            name = qt.QInputDialog.getText(slicer.util.mainWindow(), "Missing bone",
                                           "Schema name of the bone in the image that no source labelled "
                                           "(e.g. vertebra_L3):")
            if not name.strip():
                self._say("Missing cancelled: no bone named.")
                return
            export_dir = bhr.find_worklist(self.exportPath.currentPath).parent
            path = bhr.write_missing(export_dir, status.entry.series_uid, name, self.reviewerEdit.text)
            qt.QSettings().setValue(SETTINGS + "Reviewer", self.reviewerEdit.text.strip())
            self._say(f"Saved {path} (missing). 'bonehub review import {path.parent}' records it.")

class BoneHubReviewTest(ScriptedLoadableModuleTest):
    """Slicer self-test: a one-item export made here, loaded, edited and accepted through the module's logic."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_load_edit_accept_from_files()

    def test_load_edit_accept_from_files(self) -> None:
        shape = (6, 7, 8)  # slices, rows, columns
        ijk_to_ras = np.array([[-0.8, 0, 0, 10.0], [0, -0.9, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])
        folder = Path(tempfile.mkdtemp()) / "1.2.826.0.1.3680043.8.498.1" / "vertebra_T12"
        folder.mkdir(parents=True)
        mask = np.zeros(shape, np.uint8)
        mask[1:5, 2:6, 3:7] = 1
        for array, name, node_class in ((np.full(shape, 300, np.int16), "ct_roi.nrrd", "vtkMRMLScalarVolumeNode"),
                                        (mask, "mask_roi.nrrd", "vtkMRMLLabelMapVolumeNode")):
            node = slicer.util.addVolumeFromArray(array, ijk_to_ras, name, node_class)
            self.assertTrue(slicer.util.saveNode(node, str(folder / name)))
        roi_affine = (np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijk_to_ras)[:, [2, 1, 0, 3]]  # LPS, (slice, row, column)
        series = folder.parent.name
        (folder / bhr.ITEM_FILE).write_text(json.dumps({
            "format": bhr.ITEM_FORMAT, "item_id": f"{series}/vertebra_T12", "series_uid": series,
            "study_uid": "1.2.826.0.1.3680043.8.498.2", "bone": "vertebra_T12", "bone_meaning": "T12 vertebra",
            "roi": {"shape": list(shape), "affine": roi_affine.tolist()},
            "files": {"ct": "ct_roi.nrrd", "mask": "mask_roi.nrrd"}}))
        slicer.mrmlScene.Clear()

        logic = BoneHubReviewLogic()
        item = bhr.read_item(folder)
        loaded = logic.load(folder, item, bhr.plan_load(folder, item))
        self.assertEqual(loaded.segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        edited = slicer.util.arrayFromSegmentBinaryLabelmap(loaded.segmentation, loaded.segment_id, loaded.ct)
        self.assertEqual(int(edited.sum()), int(mask.sum()))
        edited[0] = edited[1]  # a reviewer's edit: one more slice
        slicer.util.updateSegmentBinaryLabelmapFromArray(edited, loaded.segmentation, loaded.segment_id, loaded.ct)

        logic.export_correction(loaded, "Self Test", "manual")
        self.assertEqual(bhr.item_state(folder), bhr.CORRECTED)
        _, voxels = bhr.validate_corrected_labelmap(folder / bhr.CORRECTED_FILE, item)
        self.assertEqual(voxels, int(edited.astype(bool).sum()))
        self.delayDisplay("BoneHubReview self-test passed")
