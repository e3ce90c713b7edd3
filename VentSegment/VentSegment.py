"""VentSegment: segment the brain's ventricles of a loaded scan and show their volumes beside SynthSeg's.

The science lives in the pure-Python package `ventkit`. Segmentation runs as `python -m ventkit segment`
in a separate process (the GUI stays responsive, Cancel kills it, ventkit writes its files atomically),
and the results come back as a segmentation node and a table node.
"""
import json
import logging
import os
import shutil
import sys
import tempfile

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

MODELS = ("augmented", "real", "synthetic")
# references: FreeSurfer's SynthSeg and SAMSEG where installed; ventkit's SynthSeg-recipe baseline only on request
REFERENCES = ("none", "synthseg", "samseg", "synthseg_recipe")
DEVICES = ("auto", "cpu", "cuda")
PARAMETER_DEFAULTS = {"Model": "augmented", "Reference": "none", "Device": "auto", "ThresholdPercent": "10",
                      "Uncertainty": "false"}
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
RESEARCH_ONLY = "<p><b>For research use only</b>: not a medical device; do not base clinical decisions on it.</p>"
# SNOMED CT codes (Slicer's terminology format) for the ventricles; laterality as anatomic region modifier
TERMINOLOGY_FILE = os.path.join(os.path.dirname(__file__), "Resources", "Terminology",
                                "SegmentationCategoryTypeModifier-VentSegment.term.json")
# FreeSurfer label -> (type, modifier) of TERMINOLOGY_FILE, whose codes are SNOMED CT where Slicer's
# anatomy list has them (the inferior lateral ventricle has a private 99VENTKIT code)
TERMINOLOGY_TYPES = {4: ("Lateral ventricle", "Left"), 43: ("Lateral ventricle", "Right"),
                     5: ("Inferior lateral ventricle", "Left"), 44: ("Inferior lateral ventricle", "Right"),
                     14: ("Third ventricle", None), 15: ("Fourth ventricle", None)}


def terminologyEntries():
    """FreeSurfer label -> Slicer terminology entry string (context~category~type~modifier~~~) from
    TERMINOLOGY_FILE."""
    with open(TERMINOLOGY_FILE, encoding="utf-8") as fh:
        terminology = json.load(fh)
    code = lambda c: f"{c['CodingSchemeDesignator']}^{c['CodeValue']}^{c['CodeMeaning']}"  # noqa: E731
    category = terminology["SegmentationCodes"]["Category"][0]
    types = {t["CodeMeaning"]: t for t in category["Type"]}
    entries = {}
    for label, (typeName, modifierName) in TERMINOLOGY_TYPES.items():
        t = types[typeName]
        modifier = next((m for m in t.get("Modifier", []) if m["CodeMeaning"] == modifierName), None)
        entries[label] = (f"{terminology['SegmentationCategoryTypeContextName']}~{code(category)}~{code(t)}~"
                          + (code(modifier) if modifier else "^^") + "~~^^~^^")
    return entries


#
# VentSegment
#


class VentSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "VentSegment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["VentSynth team"]
        self.parent.helpText = """
Segments the ventricles of a brain MRI (left/right lateral, inferior lateral, 3rd, 4th) with nnU-Net and
reports their volumes in mL, left/right asymmetry and Evans' index, next to SynthSeg's volumes for the
same scan (or SAMSEG's), with a warning where the two disagree.
"""
        self.parent.helpText += RESEARCH_ONLY
        try:
            from ventkit.requirements import check_python

            check_python()
        except RuntimeError as exc:
            self.parent.helpText += f"<p><b>{exc}</b></p>"
            logging.error(str(exc))
        self.parent.acknowledgementText = """
Method after Ruschke et al., Guided Synthesis of Labeled Brain MRI Data Using Latent Diffusion Models for
Segmentation of Enlarged Ventricles. Segmentation by nnU-Net v2 (Isensee et al.). Label names and colours
follow FreeSurfer and SynthSeg.
"""


#
# VentSegmentWidget
#


class VentSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.job = None
        self.timer = None
        self._updatingGUI = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VentSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = VentSegmentLogic()
        slicer.modules.terminologies.logic().LoadTerminologyFromFile(TERMINOLOGY_FILE)
        for combo, items in ((self.ui.modelComboBox, self.logic.availableModels()),
                             (self.ui.referenceComboBox, self.logic.availableReferences()),
                             (self.ui.deviceComboBox, DEVICES)):
            combo.clear()
            combo.addItems(list(items))
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.exportTableButton.connect("clicked(bool)", self.onExportTable)
        self.ui.exportSegmentationButton.connect("clicked(bool)", self.onExportSegmentation)
        self.ui.remeasureButton.connect("clicked(bool)", self.onRemeasure)
        self.ui.batchButton.connect("clicked(bool)", self.onBatch)
        self.ui.compareButton.connect("clicked(bool)", self.onCompare)
        self.ui.baselinesCheckBox.connect("toggled(bool)", self.onBaselinesToggled)
        self.ui.installSamsegButton.connect("clicked(bool)", self.onInstallSamseg)
        for widget, signal in ((self.ui.inputVolumeSelector, "currentNodeChanged(vtkMRMLNode*)"),
                               (self.ui.modelComboBox, "currentTextChanged(QString)"),
                               (self.ui.referenceComboBox, "currentTextChanged(QString)"),
                               (self.ui.deviceComboBox, "currentTextChanged(QString)"),
                               (self.ui.thresholdSpinBox, "valueChanged(double)"),
                               (self.ui.uncertaintyCheckBox, "toggled(bool)")):
            widget.connect(signal, self.updateParameterNodeFromGUI)
        self.timer = qt.QTimer()
        self.timer.setInterval(500)
        self.timer.connect("timeout()", self.onPoll)
        # a running job ends with the scene it would add to, and with Slicer
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, lambda *a: self.onCancel())
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, lambda *a: self.updateGUIFromParameterNode())
        slicer.app.connect("aboutToQuit()", self.onCancel)
        self.updateGUIFromParameterNode()

    def cleanup(self):
        self.onCancel()
        self.removeObservers()

    def updateGUIFromParameterNode(self, *args):
        p = self.logic.getParameterNode()
        self._updatingGUI = True  # the widgets' change signals must not write half-updated values back
        try:
            self.ui.inputVolumeSelector.setCurrentNode(p.GetNodeReference("InputVolume"))
            self.ui.modelComboBox.currentText = p.GetParameter("Model")
            self.ui.referenceComboBox.currentText = p.GetParameter("Reference")
            self.ui.deviceComboBox.currentText = p.GetParameter("Device")
            self.ui.thresholdSpinBox.value = float(p.GetParameter("ThresholdPercent"))
            self.ui.uncertaintyCheckBox.checked = p.GetParameter("Uncertainty") == "true"
        finally:
            self._updatingGUI = False
        running = self.job is not None
        self.ui.installSamsegButton.visible = "samseg" not in self.logic.availableReferences()
        self.ui.installSamsegButton.enabled = not running
        self.ui.segmentButton.enabled = not running and p.GetNodeReference("InputVolume") is not None
        self.ui.cancelButton.enabled = running
        self.ui.resultsTableView.setMRMLTableNode(p.GetNodeReference("OutputTable"))

    def updateParameterNodeFromGUI(self, *args):
        if self._updatingGUI:
            return
        p = self.logic.getParameterNode()
        node = self.ui.inputVolumeSelector.currentNode()
        p.SetNodeReferenceID("InputVolume", node.GetID() if node else None)
        p.SetParameter("Model", self.ui.modelComboBox.currentText)
        p.SetParameter("Reference", self.ui.referenceComboBox.currentText)
        p.SetParameter("Device", self.ui.deviceComboBox.currentText)
        p.SetParameter("ThresholdPercent", str(self.ui.thresholdSpinBox.value))
        p.SetParameter("Uncertainty", "true" if self.ui.uncertaintyCheckBox.checked else "false")
        self.ui.segmentButton.enabled = self.job is None and node is not None

    def ensureDependencies(self):
        missing = self.logic.missingPackages()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                "VentSegment needs these Python packages: " + ", ".join(missing) + ".\nInstall them now?"):
            return False
        try:
            with slicer.util.WaitCursor():
                self.logic.installPackages(missing)
        except Exception as exc:
            slicer.util.errorDisplay("Installing the packages failed. Without internet access, install them "
                                     f"from local wheels with slicer.util.pip_install.\n\n{exc}")
            return False
        return True

    def onBaselinesToggled(self, shown):
        """Offer the synthetic-only baseline (or not); the default model stays selected where it was."""
        current = self.ui.modelComboBox.currentText
        self.ui.modelComboBox.clear()
        self.ui.modelComboBox.addItems(self.logic.availableModels(baselines=shown))
        models = [self.ui.modelComboBox.itemText(i) for i in range(self.ui.modelComboBox.count)]
        self.ui.modelComboBox.currentText = current if current in models else self.logic.defaultModel()

    def onSegment(self):
        if not self.ensureDependencies():
            return
        p = self.logic.getParameterNode()
        try:
            self.job = self.logic.startSegmentation(p.GetNodeReference("InputVolume"), p.GetParameter("Model"),
                                                    p.GetParameter("Reference"), p.GetParameter("Device"),
                                                    p.GetParameter("Uncertainty") == "true")
        except Exception as exc:
            slicer.util.errorDisplay(f"Could not start the segmentation: {exc}")
            return
        self.follow("Segmenting...")

    def follow(self, status, steps=0):
        """Show the job just started in `self.job` and poll it: busy, or a bar of `steps` steps."""
        self.ui.progressBar.setRange(0, steps)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = status
        self.ui.warningLabel.text = ""
        self.ui.logTextEdit.setPlainText("")
        self.timer.start()
        self.updateGUIFromParameterNode()

    def onPoll(self):
        if self.job is None:
            return
        running = self.job.running()
        self.ui.logTextEdit.setPlainText(self.job.tail())
        if running:
            if getattr(self.job, "batch", False):
                self.ui.progressBar.value = self.logic.batchDone(self.job)
            elif self.job.progress():  # the child's own progress line (TTA passes, SAMSEG's steps, ...)
                done, total = self.job.progress()
                self.ui.progressBar.setRange(0, total)
                self.ui.progressBar.value = done
            return
        self.timer.stop()
        job, self.job = self.job, None
        if getattr(job, "batch", False):
            self.finishBatch(job)
            return
        if getattr(job, "change", False):
            self.finishCompare(job)
            return
        if getattr(job, "install", False):
            self.finishInstall(job)
            return
        self.ui.progressBar.setRange(0, 1)
        self.ui.progressBar.value = 1
        try:
            seg, table, warnings = self.logic.loadResults(job, float(self.logic.getParameterNode().GetParameter(
                "ThresholdPercent")))
        except Exception as exc:
            self.ui.statusLabel.text = "Failed"
            slicer.util.errorDisplay(str(exc))
        else:
            p = self.logic.getParameterNode()
            p.SetNodeReferenceID("OutputSegmentation", seg.GetID())
            p.SetNodeReferenceID("OutputTable", table.GetID())
            seg.CreateClosedSurfaceRepresentation()
            notes = table.GetAttribute("VentSegment.Notes")
            self.ui.statusLabel.text = "Done: " + table.GetName() + (f"\n{notes}" if notes else "")
            self.ui.warningLabel.text = "\n".join(warnings)
        finally:
            job.cleanup()
        self.updateGUIFromParameterNode()

    def onCompare(self):
        if not self.ensureDependencies():
            return
        p = self.logic.getParameterNode()
        try:
            self.job = self.logic.startChange(self.ui.baselineVolumeSelector.currentNode(),
                                              self.ui.followupVolumeSelector.currentNode(), p.GetParameter("Model"),
                                              p.GetParameter("Device"))
        except Exception as exc:
            slicer.util.errorDisplay(f"Could not start the comparison: {exc}")
            return
        self.follow("Segmenting both visits and registering them...")

    def finishCompare(self, job):
        self.ui.progressBar.setRange(0, 1)
        self.ui.progressBar.value = 1
        try:
            table, warnings = self.logic.loadChange(job)
        except Exception as exc:
            self.ui.statusLabel.text = "Failed"
            slicer.util.errorDisplay(str(exc))
        else:
            self.logic.getParameterNode().SetNodeReferenceID("OutputTable", table.GetID())
            self.ui.statusLabel.text = "Done: " + table.GetName()
            self.ui.warningLabel.text = "\n".join(warnings)
        finally:
            job.cleanup()
        self.updateGUIFromParameterNode()

    def onInstallSamseg(self):
        if not self.ensureDependencies():
            return
        self.job = self.logic.startSamsegInstall()
        self.follow("Installing SAMSEG (several minutes; needs the package index)...")

    def finishInstall(self, job):
        self.ui.progressBar.setRange(0, 1)
        self.ui.progressBar.value = int(job.succeeded())
        if job.succeeded():
            self.ui.referenceComboBox.clear()
            self.ui.referenceComboBox.addItems(self.logic.availableReferences())
            self.ui.statusLabel.text = "SAMSEG installed: choose it as the reference"
        else:
            self.ui.statusLabel.text = "Failed"
            slicer.util.errorDisplay(f"Installing SAMSEG failed (offline?):\n{job.output()[-2000:]}")
        job.cleanup()
        self.updateGUIFromParameterNode()

    def finishBatch(self, job):
        self.ui.progressBar.value = self.logic.batchDone(job)
        if job.succeeded():
            self.ui.statusLabel.text = f"Wrote the volumes of {job.expected} scans to {job.csvPath}"
        else:
            self.ui.statusLabel.text = "Failed"
            slicer.util.errorDisplay(f"ventkit batch failed:\n{job.output()[-2000:]}")
        job.cleanup()
        self.updateGUIFromParameterNode()

    def onCancel(self):
        if self.job is not None:
            self.timer.stop()
            self.job.cancel()
            self.job.cleanup()
            self.job = None
            self.ui.statusLabel.text = "Cancelled: nothing was added to the scene"
            self.ui.progressBar.setRange(0, 1)
            self.ui.progressBar.value = 0
        self.updateGUIFromParameterNode()

    def onExportTable(self):
        table = self.logic.getParameterNode().GetNodeReference("OutputTable")
        path = qt.QFileDialog.getSaveFileName(None, "Export volumes", "ventricle_volumes.csv", "CSV (*.csv)")
        if table and path:
            self.logic.exportTable(table, path)

    def onRemeasure(self):
        p = self.logic.getParameterNode()
        seg, table = p.GetNodeReference("OutputSegmentation"), p.GetNodeReference("OutputTable")
        if seg and table:
            report = self.logic.remeasure(seg, p.GetNodeReference("InputVolume"), table)
            self.ui.statusLabel.text = f"Re-measured the edited segmentation: {report.total_ml:.1f} mL in all"
            self.ui.warningLabel.text = ""

    def onExportSegmentation(self):
        p = self.logic.getParameterNode()
        seg, ref = p.GetNodeReference("OutputSegmentation"), p.GetNodeReference("InputVolume")
        path = qt.QFileDialog.getSaveFileName(None, "Export segmentation", "ventricles.nii.gz",
                                              "NIfTI (*.nii.gz);;Slicer segmentation (*.seg.nrrd)")
        if seg and path:
            self.logic.exportSegmentation(seg, ref, path)

    def onBatch(self):
        if not self.ensureDependencies():
            return
        folder, csvPath = self.ui.batchInputDirectory.directory, self.ui.batchOutputPath.currentPath
        p = self.logic.getParameterNode()
        try:
            self.job = self.logic.startBatch(folder, csvPath, p.GetParameter("Model"), p.GetParameter("Device"))
        except Exception as exc:
            slicer.util.errorDisplay(f"Could not start the batch: {exc}")
            return
        self.follow(f"Segmenting every scan in {folder}...", self.job.expected)


#
# VentSegmentLogic
#


def volumeFromNode(volumeNode):
    """A scalar volume node as a ventkit Volume (IJK array, RAS affine)."""
    import numpy as np
    from ventkit.io import Volume

    m = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(m)
    affine = np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])
    array = slicer.util.arrayFromVolume(volumeNode).transpose(2, 1, 0)  # Slicer arrays are K, J, I
    return Volume(np.ascontiguousarray(array), affine, volumeNode.GetName())


def nodeGeometryFromAffine(node, affine):
    m = vtk.vtkMatrix4x4()
    for i in range(4):
        for j in range(4):
            m.SetElement(i, j, float(affine[i][j]))
    node.SetIJKToRASMatrix(m)


class VentSegmentLogic(ScriptedLoadableModuleLogic):
    """Builds MRML nodes from ventkit's results; runs ventkit out of process."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.pythonExecutable = shutil.which("PythonSlicer") or sys.executable
        self.modelDir = None  # an nnU-Net model folder instead of the shipped models (tests)

    def getParameterNode(self):
        node = ScriptedLoadableModuleLogic.getParameterNode(self)
        for key, value in PARAMETER_DEFAULTS.items():
            if not node.GetParameter(key):
                node.SetParameter(key, {"Model": self.defaultModel, "Reference": self.defaultReference}.get(
                    key, lambda: value)())
        return node

    @staticmethod
    def availableReferences():
        """`none`, the installed references (SynthSeg, SAMSEG), and ventkit's SynthSeg-recipe baseline."""
        try:
            from ventkit.segmentation.references import find_samseg, find_synthseg
        except ImportError:
            return list(REFERENCES)
        installed = {"synthseg": find_synthseg(), "samseg": find_samseg()}
        return [r for r in REFERENCES if installed.get(r, True)]

    @classmethod
    def defaultReference(cls):
        """SynthSeg, else SAMSEG, where installed; else none (the recipe baseline is not SynthSeg)."""
        return next((r for r in ("synthseg", "samseg") if r in cls.availableReferences()), "none")

    @staticmethod
    def defaultModel():
        return PARAMETER_DEFAULTS["Model"]

    @staticmethod
    def availableModels(baselines=False):
        """The shipped models of MODELS (all of them until the dependencies are installed); the paper's
        synthetic-only baseline only with `baselines` (its card: not for measuring patients)."""
        try:
            from ventkit.segmentation.segment import shipped_models
        except ImportError:
            return [m for m in MODELS if baselines or m != "synthetic"]
        return [m for m in MODELS if m in shipped_models(baselines)] or list(MODELS)

    # dependencies: ventkit's own list (pyproject.toml, read by ventkit.requirements)
    def missingPackages(self):
        from ventkit.requirements import missing

        return missing()

    def installPackages(self, packages):
        """Install what is missing into Slicer's Python: torch first, through the PyTorch extension when it
        is installed (it picks the build for this computer's GPU), else the CPU build; then ventkit's other
        requirements; then nnU-Net without its dependencies (they would replace torch)."""
        from ventkit.requirements import pip_commands, requirements

        torch = requirements()["torch"]
        if torch and any(p.startswith("torch") for p in packages):
            self.installTorch(torch[0])
        for command in pip_commands():
            slicer.util.pip_install(command)

    @staticmethod
    def installTorch(spec):
        try:
            import PyTorchUtils
        except ImportError:
            cpu = [] if sys.platform == "darwin" else ["--index-url", PYTORCH_CPU_INDEX]
            slicer.util.pip_install([spec, *cpu])
            return
        logic = PyTorchUtils.PyTorchUtilsLogic()
        if logic.installTorch(askConfirmation=True, torchVersionRequirement=spec.removeprefix("torch")) is None:
            raise RuntimeError("PyTorch was not installed")

    # running ventkit
    def segmentCommand(self, inputPath, outDir, model, device, uncertainty=False):
        from ventkit.jobs import ventkit_command

        cmd = ventkit_command("segment", inputPath, "--out", outDir, "--device", device, python=self.pythonExecutable)
        cmd += ["--uncertainty"] if uncertainty else []
        return cmd + (["--model-dir", self.modelDir] if self.modelDir and model in MODELS else ["--model", model])

    def startSegmentation(self, volumeNode, model=None, reference="synthseg", device="auto", uncertainty=False):
        """Write the volume to a temporary NIfTI and start ventkit on it (and the reference, if any);
        `model` None is the default model (augmented, or the best shipped one); `uncertainty` gives
        VentSegment's volumes an SD."""
        from ventkit.io import write_volume
        from ventkit.jobs import ChildJob

        if volumeNode is None:
            raise ValueError("select an input volume")
        workDir = tempfile.mkdtemp(prefix="VentSegment_")
        inputPath = os.path.join(workDir, "scan.nii.gz")
        write_volume(volumeFromNode(volumeNode), inputPath)
        commands = [self.segmentCommand(inputPath, os.path.join(workDir, "model"), model or self.defaultModel(),
                                        device, uncertainty)]
        if reference != "none":
            commands.append(self.segmentCommand(inputPath, os.path.join(workDir, "reference"), reference, device))
        job = ChildJob(commands, workDir)
        job.volumeNode = volumeNode
        return job

    def loadResults(self, job, thresholdPercent=10.0):
        """Segmentation node + table node from a finished job; raises with ventkit's message on failure."""
        from ventkit.io import read_volume
        from ventkit.volumetry import VolumeReport

        if not job.succeeded():
            raise RuntimeError(f"ventkit segment failed:\n{job.output()[-2000:]}")
        reports = []
        for sub in ("model", "reference")[: len(job.commands)]:
            with open(os.path.join(job.work_dir, sub, "scan_volumes.json")) as fh:
                reports.append(VolumeReport.from_dict(json.load(fh)))
        name = job.volumeNode.GetName()
        segs = []
        for sub, report in zip(("model", "reference"), reports):
            labels = read_volume(os.path.join(job.work_dir, sub, "scan_ventricles.nii.gz"), labels=True)
            title = f"{name} ventricles" + ("" if sub == "model" else f" ({report.model})")
            segs.append(self.labelsToSegmentation(labels, job.volumeNode, title))
        if len(segs) > 1:  # the reference beside ours, outlined only, so that both can be seen
            segs[1].GetDisplayNode().SetVisibility2DFill(False)
            segs[1].GetDisplayNode().SetOpacity3D(0.4)
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} ventricle volumes")
        warnings = self.fillVolumesTable(table, reports[0], reports[1] if len(reports) > 1 else None,
                                         thresholdPercent)
        job.referenceSegmentation = segs[1] if len(segs) > 1 else None
        return segs[0], table, reports[0].warnings + warnings

    def segmentAndLoad(self, volumeNode, model=None, reference="synthseg", device="auto",
                       thresholdPercent=10.0, uncertainty=False):
        """Synchronous version of start/load (scripts, tests)."""
        job = self.startSegmentation(volumeNode, model, reference, device, uncertainty)
        try:
            job.wait()
            return self.loadResults(job, thresholdPercent)
        finally:
            job.cleanup()

    # MRML
    def labelsToSegmentation(self, labels, referenceVolumeNode, name, ids=None):
        """A segmentation node with one named, coloured segment per label of `ids` present (default: ventricles)."""
        import numpy as np
        from ventkit.labels import LABEL_BY_ID, VENTRICLE_IDS

        ids = sorted(VENTRICLE_IDS if ids is None else ids)
        array = np.where(np.isin(labels.array, ids), labels.array, 0).astype("int16")
        present = [v for v in ids if v != 0 and (array == v).any()]
        scene = slicer.mrmlScene
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        try:
            nodeGeometryFromAffine(labelmap, labels.affine)
            slicer.util.updateVolumeFromArray(labelmap, array.transpose(2, 1, 0))
            seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
            seg.CreateDefaultDisplayNodes()
            if referenceVolumeNode is not None:
                seg.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
            if present and not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, seg):
                raise RuntimeError("importing the label map failed")
        finally:
            scene.RemoveNode(labelmap)
        segmentation = seg.GetSegmentation()
        entries = terminologyEntries()
        for i, value in enumerate(sorted(present)):  # the import makes one segment per value, in order
            segment = segmentation.GetNthSegment(i)
            label = LABEL_BY_ID[value]
            segment.SetName(label.name.capitalize())
            segment.SetColor(*[c / 255 for c in label.rgb])
            segment.SetLabelValue(value)
            if value in entries:
                segment.SetTag("TerminologyEntry", entries[value])
        return seg

    def fillVolumesTable(self, table, report, reference=None, thresholdPercent=10.0):
        """Structure | VentSegment (mL) | its SD (mL, with an uncertainty) | reference (mL) | difference, from
        two `VolumeReport`s (see its `compare`); returns the disagreement warnings."""
        rows, warnings = report.compare(reference, thresholdPercent)
        refName = (reference.model or "reference") if reference else "reference"
        sd = report.ventricles_sd_ml is not None
        columns = [("Structure", "structure"), ("VentSegment (mL)", "ours"), *([("VentSegment SD (mL)", "sd")] if sd else []),
                   (f"{refName} (mL)", "theirs"), ("Difference (mL)", "difference_ml"), ("Difference (%)", "difference_percent")]
        table.RemoveAllColumns()
        for title, key in columns:  # numbers as numbers (sortable, exported as they are); blank cells are NaN
            a = vtk.vtkStringArray() if key == "structure" else vtk.vtkDoubleArray()
            a.SetName(title)
            for r in rows:
                value = r[key]
                a.InsertNextValue(value if key == "structure" else float("nan") if value is None else round(value, 4))
            table.AddColumn(a)
        refEvans = reference.evans_index if reference else None
        table.SetAttribute("VentSegment.Notes", "" if report.evans_index is not None else (
            "Evans index: not measured by VentSegment, which segments the ventricles only (the index needs the "
            "thalami, for the frontal horns' level)" + ("; the reference's is in the table" if refEvans is not None
                                                        else "")))
        return warnings

    # export and batch
    def exportTable(self, table, path):
        import csv

        from ventkit.io import atomic_path

        t = table.GetTable()
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([t.GetColumn(c).GetName() for c in range(t.GetNumberOfColumns())])
            for r in range(t.GetNumberOfRows()):
                w.writerow([t.GetValue(r, c).ToString() for c in range(t.GetNumberOfColumns())])
        return path

    def exportSegmentation(self, seg, referenceVolumeNode, path):
        """NIfTI label map on the reference volume's grid (FreeSurfer label values), or `.seg.nrrd`."""
        from ventkit.io import Volume, write_volume

        if path.endswith(".seg.nrrd"):
            storage = slicer.vtkMRMLSegmentationStorageNode()
            storage.SetFileName(path)
            if not storage.WriteData(seg):
                raise RuntimeError(f"could not write {path}")
            return path
        labels = self.segmentationLabels(seg, referenceVolumeNode)
        write_volume(Volume(labels.array, labels.affine, path), path)
        return path

    def segmentationLabels(self, seg, referenceVolumeNode):
        """The segmentation as it is now (after any editing) as a FreeSurfer label map on the volume's grid."""
        import numpy as np
        from ventkit.io import Volume

        ref = volumeFromNode(referenceVolumeNode)
        out = np.zeros(ref.array.shape, np.int16)
        segmentation = seg.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(i)
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg, segmentId, referenceVolumeNode)
            out[mask.transpose(2, 1, 0) > 0] = segmentation.GetSegment(segmentId).GetLabelValue()
        return Volume(out, ref.affine, referenceVolumeNode.GetName())

    def remeasure(self, seg, referenceVolumeNode, table):
        """Refill `table` with the volumes of the segmentation as edited (no reference, no SD: those were of
        the segmentation as drawn); returns the new report."""
        from ventkit.volumetry import volume_report

        report = volume_report(self.segmentationLabels(seg, referenceVolumeNode), structures=False)
        report.model = "VentSegment, edited"
        self.fillVolumesTable(table, report)
        return report

    def startBatch(self, folder, csvPath, model=None, device="auto"):
        """Start `ventkit batch` on every scan of `folder` in a child process: label maps and reports go to
        `VentSegment_labels` beside the CSV; `batchDone(job)` counts the scans done so far."""
        from ventkit.io import suffix_of
        from ventkit.jobs import ChildJob, ventkit_command
        from ventkit.segmentation.segment import SCAN_SUFFIXES

        scans = [f for f in os.listdir(folder) if suffix_of(f) in SCAN_SUFFIXES]
        if not scans:
            raise ValueError(f"{folder} holds no NIfTI, NRRD or MGZ scans")
        outDir = os.path.join(os.path.dirname(os.path.abspath(csvPath)), "VentSegment_labels")
        command = ventkit_command("batch", folder, "--out", outDir, "--csv", csvPath, "--device", device,
                                  python=self.pythonExecutable)
        model = model or self.defaultModel()
        command += ["--model-dir", self.modelDir] if self.modelDir and model in MODELS else ["--model", model]
        job = ChildJob([command], tempfile.mkdtemp(prefix="VentSegment_"))
        job.batch, job.expected, job.outDir, job.csvPath = True, len(scans), outDir, csvPath
        return job

    def startSamsegInstall(self):
        """Start `ventkit install-samseg` in a child process (Cancel stops it; a partial install is removed)."""
        from ventkit.jobs import ChildJob, ventkit_command

        job = ChildJob([ventkit_command("install-samseg", python=self.pythonExecutable)],
                       tempfile.mkdtemp(prefix="VentSegment_"))
        job.install = True
        return job

    def startChange(self, baselineNode, followupNode, model=None, device="auto"):
        """Start `ventkit change` on two loaded visits in a child process (`loadChange` reads the result)."""
        from ventkit.io import write_volume
        from ventkit.jobs import ChildJob, ventkit_command

        if baselineNode is None or followupNode is None or baselineNode is followupNode:
            raise ValueError("select two different scans: the earlier and the later visit")
        workDir = tempfile.mkdtemp(prefix="VentSegment_")
        paths = [os.path.join(workDir, f"{visit}.nii.gz") for visit in ("baseline", "followup")]
        for node, path in zip((baselineNode, followupNode), paths):
            write_volume(volumeFromNode(node), path)
        command = ventkit_command("change", *paths, "--out", os.path.join(workDir, "change"), "--device", device,
                                  python=self.pythonExecutable)
        model = model or self.defaultModel()
        command += ["--model-dir", self.modelDir] if self.modelDir and model in MODELS else ["--model", model]
        job = ChildJob([command], workDir)
        job.change, job.nodes = True, (baselineNode, followupNode)
        return job

    def loadChange(self, job):
        """Both visits' segmentations and a table of the change per structure from a finished change job;
        returns (table node, warnings: the job's own and each structure beyond repeat-scan variation)."""
        from ventkit.io import read_volume

        if not job.succeeded():
            raise RuntimeError(f"ventkit change failed:\n{job.output()[-2000:]}")
        folder = os.path.join(job.work_dir, "change")
        with open(os.path.join(folder, "baseline_change.json")) as fh:
            result = json.load(fh)
        for node, key in zip(job.nodes, ("baseline_labels", "followup_labels")):
            labels = read_volume(os.path.join(folder, result["files"][key]), labels=True)
            self.labelsToSegmentation(labels, node, f"{node.GetName()} ventricles")
        names = [n.GetName() for n in job.nodes]
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"Change {names[0]} -> {names[1]}")
        columns = [("Structure", "structure"), (f"{names[0]} (mL)", "baseline_ml"), ("SD (mL)", "baseline_sd_ml"),
                   (f"{names[1]} (mL)", "followup_ml"), ("SD (mL) ", "followup_sd_ml"), ("Change (mL)", "change_ml"),
                   ("Change (%)", "change_percent"), ("95 % low (mL)", "change_low_ml"),
                   ("95 % high (mL)", "change_high_ml")]
        for title, key in columns:
            a = vtk.vtkStringArray() if key == "structure" else vtk.vtkDoubleArray()
            a.SetName(title)
            for row in result["structures"]:
                value = row[key]
                a.InsertNextValue(value.replace("_", " ").capitalize() if key == "structure" else round(value, 4))
            table.AddColumn(a)
        changed = [f"{r['structure'].replace('_', ' ').capitalize()}: {r['change_ml']:+.1f} mL, beyond repeat-scan "
                   f"variation" for r in result["structures"] if r["changed"]]
        return table, result["warnings"] + changed

    @staticmethod
    def batchDone(job):
        """Scans of a batch job segmented so far (their reports are written last)."""
        return len([f for f in os.listdir(job.outDir) if f.endswith("_volumes.json")]) if os.path.isdir(job.outDir) \
            else 0


#
# VentSegmentTest
#


class VentSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_LabelsBecomeNamedSegments()
        self.setUp()
        self.test_TableVolumesAndWarnings()
        self.setUp()
        self.test_TableShowsUncertainty()

    def _labels(self):
        import numpy as np
        from ventkit.io import Volume

        a = np.zeros((30, 30, 30), np.int16)
        a[5:15, 5:15, 5:15] = 4  # 1000 voxels
        a[16:26, 5:15, 5:15] = 43
        a[14:16, 20:24, 10:14] = 14
        return Volume(a, np.diag([1.0, 1.2, 1.5, 1.0]), "test")

    def test_LabelsBecomeNamedSegments(self):
        labels = self._labels()
        seg = VentSegmentLogic().labelsToSegmentation(labels, None, "test ventricles")
        s = seg.GetSegmentation()
        names = sorted(s.GetNthSegment(i).GetName() for i in range(s.GetNumberOfSegments()))
        self.assertEqual(names, ["3rd ventricle", "Left lateral ventricle", "Right lateral ventricle"])
        entries = {}
        for i in range(s.GetNumberOfSegments()):
            entry = vtk.reference("")
            self.assertTrue(s.GetNthSegment(i).GetTag("TerminologyEntry", entry))
            entries[s.GetNthSegment(i).GetName()] = str(entry)
        self.assertIn("~SCT^66720007^Lateral ventricle~SCT^7771000^Left~", entries["Left lateral ventricle"])
        self.assertIn("~SCT^49653007^Third ventricle~^^~", entries["3rd ventricle"])
        self.assertTrue(all(e.startswith("Segmentation category and type - VentSegment ventricles~")
                            for e in entries.values()))

    def test_TableVolumesAndWarnings(self):
        from ventkit.volumetry import VolumeReport, volume_report

        report = volume_report(self._labels())
        reference = VolumeReport.from_dict(json.loads(json.dumps(report.to_dict())))
        reference.model = "SynthSeg"
        reference.ventricles_ml["total"] *= 1.5
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode")
        warnings = VentSegmentLogic().fillVolumesTable(table, report, reference, 10.0)
        self.assertAlmostEqual(table.GetTable().GetValue(0, 1).ToDouble(), 1.8)
        self.assertEqual(len(warnings), 1)
        self.assertIn("Total", warnings[0])

    def test_TableShowsUncertainty(self):
        from ventkit.volumetry import volume_report

        report = volume_report(self._labels())
        report.ventricles_sd_ml = {k: 0.25 for k in report.ventricles_ml}
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode")
        VentSegmentLogic().fillVolumesTable(table, report)
        self.assertEqual(table.GetTable().GetColumn(2).GetName(), "VentSegment SD (mL)")
        self.assertAlmostEqual(table.GetTable().GetValue(0, 2).ToDouble(), 0.25)
