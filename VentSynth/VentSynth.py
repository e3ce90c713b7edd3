"""VentSynth: synthesize labeled brain MRI (T1 + 33-label map) at a chosen ventricular volume.

The science lives in the pure-Python package `ventkit`. Synthesis runs as `python -m ventkit synth pair`
(or `ventkit synth dataset` for a whole nnU-Net dataset) in a child process: the GUI stays responsive,
Cancel terminates it and ventkit removes what it had not finished. Results come back as a scalar volume
node and a segmentation node with FreeSurfer's names and colours.
"""
import glob
import json
import os
import random
import shutil
import sys
import tempfile

import qt
import slicer
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from VentSegment import VentSegmentLogic, nodeGeometryFromAffine

DEVICES = ("auto", "cpu", "cuda")
PARAMETER_DEFAULTS = {"VolumeMl": "150", "Seed": "0", "RandomSeed": "false", "Count": "1", "Guidance": "3",
                      "Steps": "50", "Device": "auto", "LabelMaps": "", "BatchCount": "100",
                      "BatchVolumes": "uniform:5:300", "BatchFolder": ""}


#
# VentSynth
#


class VentSynth(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "VentSynth"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["VentSegment"]
        self.parent.contributors = ["VentSynth team"]
        self.parent.helpText = """
Synthesizes labeled brain MRI at a chosen ventricular volume (mL): a T1 image and its 33-label
whole-brain segmentation (SynthSeg/FreeSurfer labels), one pair or a whole nnU-Net training dataset with
a chosen distribution of ventricle volumes. The panel says which generator drew each pair.
<p><b>For research use only</b>: synthetic images, not a medical device.</p>
"""
        self.parent.acknowledgementText = """
Method after Ruschke et al., Guided Synthesis of Labeled Brain MRI Data Using Latent Diffusion Models for
Segmentation of Enlarged Ventricles. Anatomy from the SynthSeg training label maps (Apache-2.0); label
names and colours follow FreeSurfer and SynthSeg.
"""


#
# VentSynthWidget
#


class VentSynthWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.job = None
        self.jobKind = None
        self.timer = None
        self._updatingGUI = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VentSynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = VentSynthLogic()
        self.ui.deviceComboBox.clear()
        self.ui.deviceComboBox.addItems(list(DEVICES))
        lo, hi = self.logic.volumeRangeMl()
        for widget in (self.ui.volumeSliderWidget, self.ui.batchMinSpinBox, self.ui.batchMaxSpinBox):
            widget.minimum, widget.maximum = lo, hi
        self.ui.generateButton.connect("clicked(bool)", self.onGenerate)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        for button in (self.ui.cancelButton, self.ui.exportCancelButton):
            button.connect("clicked(bool)", self.onCancel)
        for widget, signal in ((self.ui.volumeSliderWidget, "valueChanged(double)"),
                               (self.ui.seedSpinBox, "valueChanged(int)"),
                               (self.ui.randomSeedCheckBox, "toggled(bool)"),
                               (self.ui.countSpinBox, "valueChanged(int)"),
                               (self.ui.guidanceSpinBox, "valueChanged(double)"),
                               (self.ui.stepsSpinBox, "valueChanged(int)"),
                               (self.ui.deviceComboBox, "currentTextChanged(QString)"),
                               (self.ui.labelMapsDirectory, "directoryChanged(QString)"),
                               (self.ui.batchCountSpinBox, "valueChanged(int)"),
                               (self.ui.batchMinSpinBox, "valueChanged(double)"),
                               (self.ui.batchMaxSpinBox, "valueChanged(double)"),
                               (self.ui.batchListLineEdit, "textChanged(QString)"),
                               (self.ui.batchUniformRadioButton, "toggled(bool)"),
                               (self.ui.batchFolderDirectory, "directoryChanged(QString)")):
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
            self.ui.volumeSliderWidget.value = float(p.GetParameter("VolumeMl"))
            self.ui.seedSpinBox.value = int(p.GetParameter("Seed"))
            self.ui.randomSeedCheckBox.checked = p.GetParameter("RandomSeed") == "true"
            self.ui.countSpinBox.value = int(p.GetParameter("Count"))
            self.ui.guidanceSpinBox.value = float(p.GetParameter("Guidance"))
            self.ui.stepsSpinBox.value = int(p.GetParameter("Steps"))
            self.ui.deviceComboBox.currentText = p.GetParameter("Device")
            self.ui.labelMapsDirectory.directory = p.GetParameter("LabelMaps")
            self.ui.batchCountSpinBox.value = int(p.GetParameter("BatchCount"))
            volumes = p.GetParameter("BatchVolumes")
            uniform = volumes.startswith("uniform:")
            self.ui.batchUniformRadioButton.checked = uniform
            self.ui.batchListRadioButton.checked = not uniform
            if uniform:
                lo, hi = volumes.split(":")[1:3]
                self.ui.batchMinSpinBox.value, self.ui.batchMaxSpinBox.value = float(lo), float(hi)
            else:
                self.ui.batchListLineEdit.text = volumes
            self.ui.batchFolderDirectory.directory = p.GetParameter("BatchFolder")
        finally:
            self._updatingGUI = False
        running = self.job is not None
        diffusion = self.logic.backendIsDiffusion()
        for widget in (self.ui.guidanceSpinBox, self.ui.stepsSpinBox, self.ui.deviceComboBox):
            widget.enabled = diffusion
        self.ui.seedSpinBox.enabled = p.GetParameter("RandomSeed") != "true"
        self.ui.generateButton.enabled = self.ui.exportButton.enabled = not running
        self.ui.cancelButton.enabled = running and self.jobKind == "pairs"
        self.ui.exportCancelButton.enabled = running and self.jobKind == "dataset"

    def updateParameterNodeFromGUI(self, *args):
        if self._updatingGUI:
            return
        p = self.logic.getParameterNode()
        p.SetParameter("VolumeMl", str(self.ui.volumeSliderWidget.value))
        p.SetParameter("Seed", str(self.ui.seedSpinBox.value))
        p.SetParameter("RandomSeed", "true" if self.ui.randomSeedCheckBox.checked else "false")
        p.SetParameter("Count", str(self.ui.countSpinBox.value))
        p.SetParameter("Guidance", str(self.ui.guidanceSpinBox.value))
        p.SetParameter("Steps", str(self.ui.stepsSpinBox.value))
        p.SetParameter("Device", self.ui.deviceComboBox.currentText)
        p.SetParameter("LabelMaps", self.ui.labelMapsDirectory.directory)
        p.SetParameter("BatchCount", str(self.ui.batchCountSpinBox.value))
        if self.ui.batchUniformRadioButton.checked:
            p.SetParameter("BatchVolumes", f"uniform:{self.ui.batchMinSpinBox.value:g}:{self.ui.batchMaxSpinBox.value:g}")
        else:
            p.SetParameter("BatchVolumes", self.ui.batchListLineEdit.text)
        p.SetParameter("BatchFolder", self.ui.batchFolderDirectory.directory)
        self.ui.seedSpinBox.enabled = not self.ui.randomSeedCheckBox.checked

    def _start(self, kind, start):
        if not slicer.util.getModuleWidget("VentSegment").ensureDependencies():  # shared with VentSegment
            return
        try:
            self.job = start()
        except Exception as exc:
            slicer.util.errorDisplay(f"Could not start: {exc}")
            return
        self.jobKind = kind
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.value = 0
        self.timer.start()
        self.updateGUIFromParameterNode()

    def onGenerate(self):
        p = self.logic.getParameterNode()
        seed = random.randrange(2**31) if p.GetParameter("RandomSeed") == "true" else int(p.GetParameter("Seed"))
        self.ui.statusLabel.text = f"Generating (seed {seed})..."
        self._start("pairs", lambda: self.logic.startSynthesis(
            float(p.GetParameter("VolumeMl")), seed, int(p.GetParameter("Count")), p.GetParameter("LabelMaps"),
            p.GetParameter("Device"), float(p.GetParameter("Guidance")), int(p.GetParameter("Steps"))))

    def onExport(self):
        p = self.logic.getParameterNode()
        if not p.GetParameter("BatchFolder"):
            slicer.util.errorDisplay("Choose an output folder for the dataset.")
            return
        self.ui.statusLabel.text = "Writing the dataset..."
        self._start("dataset", lambda: self.logic.startExport(
            p.GetParameter("BatchFolder"), int(p.GetParameter("BatchCount")), p.GetParameter("BatchVolumes"),
            int(p.GetParameter("Seed")), p.GetParameter("LabelMaps"), p.GetParameter("Device"),
            float(p.GetParameter("Guidance")), int(p.GetParameter("Steps"))))

    def onPoll(self):
        if self.job is None:
            return
        self.ui.progressBar.value = int(100 * self.logic.progress(self.job))
        running = self.job.running()
        self.ui.logTextEdit.setPlainText(self.job.tail())
        if running:
            return
        self.timer.stop()
        job, self.job = self.job, None
        try:
            if self.jobKind == "pairs":
                pairs = self.logic.loadPairs(job)
                self.showPair(*pairs[-1][:2])
                self.ui.statusLabel.text = "\n".join(
                    f"{info['name']}: requested {info['requested_ml']:.1f} mL, measured "
                    f"{info['ventricles_ml']['total']:.1f} mL ({info['subject']}, {info['backend']} backend)"
                    for _, _, info in pairs)
            else:
                chart = self.logic.loadExport(job)
                slicer.modules.plots.logic().ShowChartInLayout(chart)
                self.ui.statusLabel.text = f"Wrote {chart.GetAttribute('VentSynth.cases')} cases to {job.datasetDir}"
        except Exception as exc:
            self.ui.statusLabel.text = "Failed"
            slicer.util.errorDisplay(str(exc))
        finally:
            job.cleanup()
            self.jobKind = None
        self.ui.progressBar.value = 100
        self.updateGUIFromParameterNode()

    def showPair(self, volumeNode, segmentationNode):
        slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)
        segmentationNode.CreateClosedSurfaceRepresentation()

    def onCancel(self):
        if self.job is not None:
            self.timer.stop()
            self.job.cleanup()
            self.job = None
            self.jobKind = None
            self.ui.statusLabel.text = "Cancelled: nothing was added; a dataset keeps only its whole cases"
            self.ui.progressBar.value = 0
        self.updateGUIFromParameterNode()


#
# VentSynthLogic
#


class VentSynthLogic(ScriptedLoadableModuleLogic):
    """Runs ventkit's synthesis out of process and turns its files into MRML nodes."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.pythonExecutable = shutil.which("PythonSlicer") or sys.executable
        self.grid = "paper"  # the model grid pairs are drawn on (tests use the coarse "mask" grid)

    def getParameterNode(self):
        node = ScriptedLoadableModuleLogic.getParameterNode(self)
        defaults = self.samplingDefaults()
        for key, value in PARAMETER_DEFAULTS.items():
            if not node.GetParameter(key):
                node.SetParameter(key, {"Guidance": f"{defaults.guidance:g}" if defaults else value,
                                        "Steps": str(defaults.steps) if defaults else value}.get(key, value))
        return node

    def samplingDefaults(self):
        """The shipped mask generator's calibrated guidance, steps and volume range (ventkit's one source of
        them), or None while it is not shipped or the dependencies are not installed."""
        try:
            from ventkit.synthesis.mask_generator import sampling_defaults
        except ImportError:  # dependencies not installed yet
            return None
        return sampling_defaults() if self.backendIsDiffusion() else None

    def volumeRangeMl(self):
        """The ventricle volumes (mL) the synthesizer can draw: the shipped mask generator's trained range,
        or the anatomy backend's."""
        defaults = self.samplingDefaults()
        if defaults is not None:
            return defaults.volume_range_ml
        try:
            from ventkit.anatomy.ventricles import MAX_ML, MIN_ML
        except ImportError:  # before the dependencies are installed, the anatomy backend's range as it stands
            return 5.0, 300.0
        return MIN_ML, MAX_ML

    def backendIsDiffusion(self):
        """The mask diffusion generator is shipped; guidance, steps and device apply to the generators only."""
        try:
            from ventkit.synthesis.pairs import diffusion_available
        except ImportError:  # dependencies not installed yet
            return False
        return diffusion_available()

    def _command(self, *args, labelMaps=""):
        from ventkit.jobs import ventkit_command

        return ventkit_command(*args, *(["--labels", labelMaps] if labelMaps else []), python=self.pythonExecutable)

    def _backendOptions(self, device, guidance, steps):
        """The options of the backend in use: the generators' guidance, steps and device, or the anatomy
        backend's grid (each backend ignores the other's)."""
        if not self.backendIsDiffusion():
            return ["--grid", self.grid]
        return ["--device", device, *(["--guidance", f"{guidance:g}"] if guidance else []),
                *(["--steps", steps] if steps else [])]

    def startSynthesis(self, volumeMl, seed=0, count=1, labelMaps="", device="auto", guidance=None, steps=None):
        """Start `ventkit synth pair` into a temporary folder; returns the job."""
        from ventkit.jobs import ChildJob

        workDir = tempfile.mkdtemp(prefix="VentSynth_")
        command = self._command("synth", "pair", "--volume", f"{volumeMl:g}", "--n", count, "--seed", seed,
                                *self._backendOptions(device, guidance, steps), "--out",
                                os.path.join(workDir, "pairs"), labelMaps=labelMaps)
        job = ChildJob([command], workDir)
        job.expected = count
        job.pattern = os.path.join(workDir, "pairs", "*.json")
        return job

    def startExport(self, datasetDir, count, volumes="uniform:5:300", seed=0, labelMaps="", device="auto",
                    guidance=None, steps=None):
        """Start `ventkit synth dataset` of `count` pairs into `datasetDir` (an nnU-Net raw dataset)."""
        from ventkit.jobs import ChildJob
        from ventkit.synthesis.dataset import check_volume_spec

        check_volume_spec(volumes, self.volumeRangeMl())  # a clear error before anything starts
        command = self._command("synth", "dataset", "--out", datasetDir, "--n", count, "--volumes", volumes,
                                "--seed", seed, *self._backendOptions(device, guidance, steps), labelMaps=labelMaps)
        job = ChildJob([command], tempfile.mkdtemp(prefix="VentSynth_"))
        job.expected = count
        job.pattern = os.path.join(datasetDir, "meta", "*.json")
        job.datasetDir = datasetDir
        return job

    def progress(self, job):
        """Fraction of the job's pairs or cases written so far."""
        return min(len(glob.glob(job.pattern)) / job.expected, 1.0)

    def loadPairs(self, job):
        """[(volume node, segmentation node, info)] of a finished synthesis job."""
        from ventkit.io import read_volume
        from ventkit.labels import LABEL_BY_ID

        if not job.succeeded():
            raise RuntimeError(f"ventkit synth pair failed:\n{job.output()[-2000:]}")
        segmentLogic = VentSegmentLogic()
        pairs = []
        for infoPath in sorted(glob.glob(job.pattern)):
            with open(infoPath) as fh:
                info = json.load(fh)
            folder = os.path.dirname(infoPath)
            name = f"VentSynth {info['requested_ml']:g} mL seed {info['seed']} #{info['index']}"
            info["name"] = name
            image = read_volume(os.path.join(folder, info["files"]["t1"]))
            volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{name} T1")
            nodeGeometryFromAffine(volumeNode, image.affine)
            slicer.util.updateVolumeFromArray(volumeNode, image.array.transpose(2, 1, 0))
            labels = read_volume(os.path.join(folder, info["files"]["labels"]), labels=True)
            seg = segmentLogic.labelsToSegmentation(labels, volumeNode, f"{name} labels", ids=LABEL_BY_ID)
            pairs.append((volumeNode, seg, info))
        return pairs

    def loadExport(self, job):
        """A bar chart node of the written dataset's measured ventricle volumes (its table holds the bins)."""
        if not job.succeeded():
            raise RuntimeError(f"ventkit synth dataset failed:\n{job.output()[-2000:]}")
        return self.volumeHistogram(job.datasetDir)

    def volumeHistogram(self, datasetDir, bins=10):
        """Table + bar chart of the ventricle volumes (mL) of every case in an nnU-Net dataset folder."""
        import numpy as np
        import vtk
        from ventkit.anatomy.nnunet import case_metas

        volumes = [case["measured_ml"] for case in case_metas(datasetDir)]
        if not volumes:
            raise RuntimeError(f"{datasetDir} holds no finished cases")
        counts, edges = np.histogram(volumes, bins=bins)
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "VentSynth dataset volumes")
        for title, values in (("Ventricle volume (mL)", (edges[:-1] + edges[1:]) / 2), ("Cases", counts)):
            column = vtk.vtkDoubleArray()
            column.SetName(title)
            for v in values:
                column.InsertNextValue(float(v))
            table.AddColumn(column)
        series = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", "Cases per volume bin")
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName("Ventricle volume (mL)")
        series.SetYColumnName("Cases")
        series.SetPlotType(series.PlotTypeBar)
        chart = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", "VentSynth dataset volumes")
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
        chart.SetXAxisTitle("Ventricle volume (mL)")
        chart.SetYAxisTitle("Cases")
        chart.SetAttribute("VentSynth.cases", str(len(volumes)))
        return chart

    def synthesizeAndLoad(self, volumeMl, seed=0, count=1, labelMaps="", device="auto", guidance=None, steps=None):
        """Synchronous version of start/load (scripts, tests)."""
        job = self.startSynthesis(volumeMl, seed, count, labelMaps, device, guidance, steps)
        try:
            job.wait()
            return self.loadPairs(job)
        finally:
            job.cleanup()


#
# VentSynthTest
#


class VentSynthTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_HistogramCountsEveryCase()

    def test_HistogramCountsEveryCase(self):
        workDir = tempfile.mkdtemp(prefix="VentSynthTest_")
        try:
            os.makedirs(os.path.join(workDir, "meta"))
            for i, ml in enumerate((12.0, 100.0, 110.0, 290.0)):  # 4 bins of 69.5 mL from 12
                with open(os.path.join(workDir, "meta", f"train_{i:04d}.json"), "w") as fh:
                    json.dump({"measured_ml": ml}, fh)
            chart = VentSynthLogic().volumeHistogram(workDir, bins=4)
            self.assertEqual(chart.GetAttribute("VentSynth.cases"), "4")
            table = chart.GetNthPlotSeriesNode(0).GetTableNode().GetTable()
            counts = [table.GetValue(r, 1).ToDouble() for r in range(table.GetNumberOfRows())]
            self.assertEqual(counts, [1.0, 2.0, 0.0, 1.0])
        finally:
            shutil.rmtree(workDir)
