"""The extension's CMake configures against a stub Slicer (Testing/SlicerStub) that checks every listed file."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUB = REPO / "Testing" / "SlicerStub"
MODULES = ("VentSynth", "VentSegment")


def configure(source: Path, build: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["cmake", "-S", str(source), "-B", str(build), f"-DSlicer_DIR={STUB}"],
                          capture_output=True, text=True)


def copy_extension(dst: Path) -> Path:
    dst.mkdir()
    for f in ("CMakeLists.txt", "pyproject.toml"):
        shutil.copy(REPO / f, dst)
    for d in (*MODULES, "ventkit"):
        shutil.copytree(REPO / d, dst / d, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture(scope="module")
def cmake():
    if shutil.which("cmake") is None:
        pytest.fail("cmake is not installed")


def test_extension_configures(cmake, tmp_path):
    proc = configure(REPO, tmp_path / "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "modules VentSynth;VentSegment; python unittests VentSynth.py;VentSegment.py" in proc.stdout


def test_missing_listed_file_fails(cmake, tmp_path):
    src = copy_extension(tmp_path / "src")
    (src / "VentSegment" / "Resources" / "UI" / "VentSegment.ui").unlink()
    proc = configure(src, tmp_path / "build")
    assert proc.returncode != 0 and "listed file Resources/UI/VentSegment.ui does not exist" in proc.stderr


def test_unlisted_module_file_fails(cmake, tmp_path):
    src = copy_extension(tmp_path / "src")
    (src / "VentSynth" / "Resources" / "Icons" / "extra.png").write_bytes(b"")
    proc = configure(src, tmp_path / "build")
    assert proc.returncode != 0 and "Resources/Icons/extra.png is in the module folder but not listed" in proc.stderr
