"""VentSegment: Slicer module stub for segmenting and measuring the brain's ventricles.

The science lives in the pure-Python package `ventkit`; this module only wraps it.
The real GUI arrives in a later release.
"""
import qt
import slicer
from slicer.ScriptedLoadableModule import *


#
# VentSegment
#


class VentSegment(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "VentSegment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["VentSynth team"]
        self.parent.helpText = """
Segmentation and volumetry of the brain's ventricles (lateral, inferior lateral, 3rd and 4th),
with left/right asymmetry and Evans' index.
This is a placeholder: the graphical interface arrives in a later release.
The science lives in the pure-Python package <code>ventkit</code>, which can also be used from the
command line (<code>python -m ventkit --help</code>).
"""
        self.parent.acknowledgementText = """
Label ids and names follow SynthSeg 2.0; colours follow FreeSurfer's FreeSurferColorLUT.txt.
"""


#
# VentSegmentWidget
#


class VentSegmentWidget(ScriptedLoadableModuleWidget):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)

        import ctk

        collapsibleButton = ctk.ctkCollapsibleButton()
        collapsibleButton.text = "VentSegment"
        self.layout.addWidget(collapsibleButton)
        formLayout = qt.QFormLayout(collapsibleButton)

        label = qt.QLabel(
            "The VentSegment interface arrives in a later release.\n"
            "Meanwhile, use the ventkit package (python -m ventkit)."
        )
        label.wordWrap = True
        formLayout.addRow(label)

        self.layout.addStretch(1)


#
# VentSegmentLogic
#


class VentSegmentLogic(ScriptedLoadableModuleLogic):
    """Thin wrapper around `ventkit`, which is imported lazily so that the module loads
    even where ventkit's dependencies (nibabel, scipy, ...) are not installed yet.
    """

    def ventricleVolumes(self, labelmapPath):
        """Volumetry of a SynthSeg/FreeSurfer label map file (NIfTI or NRRD).

        Returns ventkit's volume report as a dict of plain JSON-able values: volumes in ml per
        structure and per ventricle, total ventricular volume, asymmetries and Evans' index.
        Raises ventkit.errors.InputError if the file is not a usable label map.
        """
        import ventkit.io
        import ventkit.volumetry

        labels = ventkit.io.read_volume(labelmapPath, labels=True)
        return ventkit.volumetry.volume_report(labels)


#
# VentSegmentTest
#


class VentSegmentTest(ScriptedLoadableModuleTest):
    """Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_VentSegmentLogicImportsVentkit()

    def test_VentSegmentLogicImportsVentkit(self):
        self.delayDisplay("Checking that the logic imports ventkit")
        import ventkit

        self.assertTrue(ventkit.__version__)
        logic = VentSegmentLogic()
        self.assertTrue(callable(logic.ventricleVolumes))

        # A small synthetic label map (1 mm voxels): 8 ml of left lateral ventricle (label 4).
        try:
            import numpy as np
            import ventkit.io
        except ImportError as exc:  # ventkit's dependencies not installed in Slicer's Python yet
            self.delayDisplay(f"Skipping volumetry check: {exc}")
            return
        import os
        import tempfile

        array = np.zeros((40, 40, 40), dtype=np.int16)
        array[10:30, 10:30, 10:30] = 2  # left cerebral white matter
        array[15:35, 15:25, 15:25] = 4  # left lateral ventricle: 20 x 10 x 10 voxels = 2 ml
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "labels.nii.gz")
            ventkit.io.write_volume(ventkit.io.Volume(array, np.eye(4)), path)
            report = logic.ventricleVolumes(path)
        self.assertAlmostEqual(report["ventricles_ml"]["left_lateral"], 2.0, places=3)
        self.assertAlmostEqual(report["ventricles_ml"]["right_lateral"], 0.0, places=3)
        self.delayDisplay(f"ventkit {ventkit.__version__}: test passed")
