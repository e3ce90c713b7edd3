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


def test_inference_packages_never_import_training():
    """Fitting and calibration live in training/; synthesis and segmentation only load what it wrote."""
    for package in ("synthesis", "segmentation"):
        for path in (PKG / package).rglob("*.py"):
            assert not [m for m in _imports(path) if m.startswith("ventkit.training")], path


def test_labels_io_and_volumetry_load_without_torch():
    code = "import ventkit.labels, ventkit.io, ventkit.volumetry, ventkit.requirements, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_environment_is_read_in_paths_only():
    """Every VENTKIT_* setting is read in ventkit/paths.py (nnU-Net's convention), nowhere else."""
    for path in PKG.rglob("*.py"):
        if path.name == "paths.py":
            continue
        text = path.read_text()
        assert "environ.get(" not in text and "getenv(" not in text, f"{path} reads the environment"


def test_slicer_modules_use_the_public_api_only():
    """The modules call ventkit's public modules, never private names (leading underscore)."""
    for module in ("VentSynth", "VentSegment"):
        path = PKG.parent / module / f"{module}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ventkit"):
                assert not [a.name for a in node.names if a.name.startswith("_")], f"{path}: {node.module}"


def test_the_python_version_checked_at_load_is_the_one_the_package_declares(monkeypatch):
    import tomllib

    import pytest

    from ventkit import requirements

    declared = tomllib.loads((PKG.parent / "pyproject.toml").read_text())["project"]["requires-python"]
    assert declared == ">=" + ".".join(map(str, requirements.MIN_PYTHON))
    requirements.check_python()
    monkeypatch.setattr(requirements, "MIN_PYTHON", (sys.version_info.major, sys.version_info.minor + 1))
    with pytest.raises(RuntimeError, match="use Slicer 5.8 or later"):
        requirements.check_python()
