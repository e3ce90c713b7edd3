"""ventkit stays a pure-Python package: no Slicer/Qt import, and a light volumetry import."""
import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ventkit"


def test_no_slicer_or_qt_imports():
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                assert n.split(".")[0] not in {"slicer", "qt", "ctk", "vtk", "PythonQt"}, f"{path}: imports {n}"


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by `path` (relative imports resolved against the package)."""
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level] if node.level else ()
            out.append(".".join([*base, node.module or ""]).rstrip("."))
    return out


def test_segmentation_never_imports_synthesis():
    for path in (PKG / "segmentation").rglob("*.py"):
        assert not [m for m in _imports(path) if m.startswith("ventkit.synthesis")], path


def test_volumetry_does_not_import_torch():
    code = "import ventkit.volumetry, ventkit.cli, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
