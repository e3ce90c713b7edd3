"""Load a Slicer scripted module under `slicer-core` (Slicer's MRML and logic libraries without Qt).

slicer-core provides scenes, volume, segmentation and table nodes, the segmentations logic and storage
nodes, but not `slicer.app`, `qt`, `ctk`, `slicer.modules` or `slicer.ScriptedLoadableModule`; this
harness supplies minimal stand-ins for those so that a module file imports and its Logic runs for real
against MRML. Widgets are not exercised here (their `.ui` is checked with PySide6 separately).
"""
from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

import slicer

REPO = Path(__file__).resolve().parents[1]


class ParameterNode:
    """Stand-in for vtkMRMLScriptedModuleNode: string parameters and node references by ID."""

    def __init__(self, scene):
        self.scene = scene
        self.parameters: dict[str, str] = {}
        self.references: dict[str, str | None] = {}

    def GetParameter(self, key):
        return self.parameters.get(key, "")

    def SetParameter(self, key, value):
        self.parameters[key] = str(value)

    def SetNodeReferenceID(self, role, node_id):
        self.references[role] = node_id

    def GetNodeReference(self, role):
        node_id = self.references.get(role)
        return self.scene.GetNodeByID(node_id) if node_id else None


def _scripted_loadable_module() -> types.ModuleType:
    mod = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        _parameter_nodes: dict = {}

        def __init__(self, parent=None):
            self.parent = parent

        def getParameterNode(self):
            key = (type(self).__name__, id(slicer.mrmlScene))
            return self._parameter_nodes.setdefault(key, ParameterNode(slicer.mrmlScene))

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(mod, cls.__name__, cls)
    mod.__all__ = [c for c in dir(mod) if c.startswith("Scripted")]
    return mod


def install() -> None:
    """Give the `slicer` namespace a scene, `modules.segmentations.logic()`, and stand-in GUI modules."""
    if getattr(slicer, "mrmlScene", None) is None:
        slicer.mrmlScene = slicer.vtkMRMLScene()
        seg_logic = slicer.vtkSlicerSegmentationsModuleLogic()
        seg_logic.SetMRMLScene(slicer.mrmlScene)
        slicer.modules = types.SimpleNamespace(segmentations=types.SimpleNamespace(logic=lambda: seg_logic))
        slicer.app = types.SimpleNamespace(processEvents=lambda: None)
    for name in ("qt", "ctk"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules.setdefault("slicer.ScriptedLoadableModule", _scripted_loadable_module())


def load_module(name: str):
    """Import `<repo>/<name>/<name>.py` (a Slicer scripted module) under the harness, once.

    Registered in `sys.modules`, and every module folder is on `sys.path` as in Slicer, so that one
    module can import another (VentSynth uses VentSegment's logic).
    """
    install()
    for folder in ("VentSegment", "VentSynth"):
        if str(REPO / folder) not in sys.path:
            sys.path.append(str(REPO / folder))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / name / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
