"""VentSynth: Slicer module stub for synthesising training heads with resized ventricles.

The science lives in the pure-Python package `ventkit`; this module only wraps it.
The real GUI arrives in a later release.
"""
import qt
import slicer
from slicer.ScriptedLoadableModule import *


#
# VentSynth
#


class VentSynth(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "VentSynth"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["VentSynth team"]
        self.parent.helpText = """
Synthesis of training heads with resized brain ventricles (SynthSeg-style label maps and images).
This is a placeholder: the graphical interface arrives in a later release.
The science lives in the pure-Python package <code>ventkit</code>, which can also be used from the
command line (<code>python -m ventkit --help</code>).
"""
        self.parent.acknowledgementText = """
Label ids and names follow SynthSeg 2.0; colours follow FreeSurfer's FreeSurferColorLUT.txt.
"""


#
# VentSynthWidget
#


class VentSynthWidget(ScriptedLoadableModuleWidget):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)

        import ctk

        collapsibleButton = ctk.ctkCollapsibleButton()
        collapsibleButton.text = "VentSynth"
        self.layout.addWidget(collapsibleButton)
        formLayout = qt.QFormLayout(collapsibleButton)

        label = qt.QLabel(
            "The VentSynth interface arrives in a later release.\n"
            "Meanwhile, use the ventkit package (python -m ventkit)."
        )
        label.wordWrap = True
        formLayout.addRow(label)

        self.layout.addStretch(1)


#
# VentSynthLogic
#


class VentSynthLogic(ScriptedLoadableModuleLogic):
    """Thin wrapper around `ventkit`, which is imported lazily so that the module loads
    even where ventkit's dependencies are not installed yet.
    """

    def ventkitVersion(self):
        """The version of the ventkit package that this module uses."""
        import ventkit

        return ventkit.__version__


#
# VentSynthTest
#


class VentSynthTest(ScriptedLoadableModuleTest):
    """Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_VentSynthLogicImportsVentkit()

    def test_VentSynthLogicImportsVentkit(self):
        self.delayDisplay("Checking that the logic imports ventkit")
        version = VentSynthLogic().ventkitVersion()
        self.assertIsInstance(version, str)
        self.assertTrue(version)
        self.delayDisplay(f"ventkit {version}: test passed")
