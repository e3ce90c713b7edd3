"""Each module's `.ui` loads with Qt (PySide6, offscreen) and holds every widget its code uses as `self.ui.X`."""
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = ["VentSegment", "VentSynth"]


def referenced_widgets(module: str) -> set[str]:
    return set(re.findall(r"self\.ui\.(\w+)", (REPO / module / f"{module}.py").read_text()))


@pytest.fixture(scope="module")
def loader():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtWidgets
    from PySide6.QtUiTools import QUiLoader

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    yield QUiLoader(), QtWidgets
    del app


@pytest.mark.parametrize("module", MODULES)
def test_ui_loads_and_has_every_referenced_widget(module, loader, tmp_path):
    ui_loader, QtWidgets = loader
    ui_file = REPO / module / "Resources" / "UI" / f"{module}.ui"
    # Slicer's own widgets (ctk*, qMRML*) are not in PySide6: load them as the Qt class they extend.
    tree = ET.parse(ui_file)
    extends = {c.findtext("class"): c.findtext("extends") for c in tree.iter("customwidget")}
    for w in tree.iter("widget"):
        base = extends.get(w.get("class"))
        while base in extends:
            base = extends[base]
        if base:
            w.set("class", base)
    tree.getroot().remove(tree.getroot().find("customwidgets"))
    plain = tmp_path / ui_file.name
    tree.write(plain)
    widget = ui_loader.load(str(plain))
    assert widget is not None, ui_loader.errorString()
    names = {w.objectName() for w in widget.findChildren(QtWidgets.QWidget)}
    missing = referenced_widgets(module) - names
    assert not missing, f"{module}.py uses widgets missing from {ui_file.name}: {sorted(missing)}"
    assert referenced_widgets(module), "the module references no widgets: the check would be vacuous"
