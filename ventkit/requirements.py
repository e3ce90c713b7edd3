"""What ventkit needs installed, read from its own package metadata: one list for install.sh and the panels.

`pyproject.toml` is the one place: `[project] dependencies` and the `models` extra (with torch), and
`[tool.ventkit] no-deps`, the packages installed without their dependencies (nnU-Net v2's chain timm ->
torchvision would replace a CPU torch with a multi-GB CUDA build). The file sits beside the package in
this repository and in the Slicer extension (CMakeLists.txt installs it there); an installed ventkit
without it falls back to the installed distribution's metadata.

    python -m ventkit.requirements [--missing] [--install [--torch SPEC]]

Standard library only: this runs in a Python that has nothing else yet (Slicer's, on first use).
"""
from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
EXTRAS = ("models",)
MIN_PYTHON = (3, 11)  # tomllib reads pyproject.toml (nnU-Net v2 needs 3.10); Slicer 5.8 and later ship 3.12


def _project() -> dict:
    import tomllib

    return tomllib.loads(PYPROJECT.read_text())


def requirements(extras: tuple[str, ...] = EXTRAS) -> dict[str, list[str]]:
    """{"torch": [spec], "plain": [...], "no_deps": [...]}: torch apart (the PyTorch extension, or a CPU
    build, installs it), the rest with their dependencies, then the no-deps packages."""
    if PYPROJECT.is_file():
        project = _project()
        specs = list(project["project"]["dependencies"])
        for extra in extras:
            specs += project["project"]["optional-dependencies"][extra]
        no_deps = list(project.get("tool", {}).get("ventkit", {}).get("no-deps", []))
    else:
        specs = [r.split(";")[0].strip() for r in metadata.requires("ventkit") or []
                 if ";" not in r or any(f'extra == "{e}"' in r for e in extras)]
        no_deps = []
    torch = [s for s in specs if _name(s) == "torch"]
    return {"torch": torch, "plain": [s for s in specs if _name(s) != "torch"], "no_deps": no_deps}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _satisfied(spec: str) -> bool:
    """Whether an installed distribution meets `spec` (name, and version bounds where `packaging` is found)."""
    try:
        version = metadata.version(_name(spec))
    except metadata.PackageNotFoundError:
        return False
    try:
        from packaging.requirements import Requirement
    except ImportError:  # Slicer's Python has pip, which vendors packaging
        try:
            from pip._vendor.packaging.requirements import Requirement
        except ImportError:
            return True
    return Requirement(spec.split(";")[0]).specifier.contains(version, prereleases=True)


def missing(extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """Every requirement (torch included) that is not installed at a fitting version."""
    reqs = requirements(extras)
    return [s for group in ("torch", "plain", "no_deps") for s in reqs[group] if not _satisfied(s)]


def pip_commands(torch_spec: str | None = None) -> list[list[str]]:
    """The `pip install` argument lists of a complete install, in order: torch (`torch_spec`, e.g. the CPU
    build `torch==2.13.0`; None when torch comes from elsewhere), the rest, the no-deps packages."""
    reqs = requirements()
    commands = [[torch_spec]] if torch_spec else []
    commands.append(reqs["plain"])
    if reqs["no_deps"]:
        commands.append(["--no-deps", *reqs["no_deps"]])
    return commands


def check_python() -> None:
    if sys.version_info < MIN_PYTHON:
        raise RuntimeError(f"ventkit needs Python {'.'.join(map(str, MIN_PYTHON))} or later; this is "
                           f"{sys.version.split()[0]}: use Slicer 5.8 or later")


def main() -> None:
    ap = argparse.ArgumentParser(description="ventkit's requirements: list, check or install them")
    ap.add_argument("--missing", action="store_true", help="list only those not installed (exit 1 if any)")
    ap.add_argument("--install", action="store_true", help="pip install everything into this Python")
    ap.add_argument("--torch", help="torch requirement to install first (e.g. torch==2.13.0, a CPU build)")
    args = ap.parse_args()
    check_python()
    if args.install:
        for command in pip_commands(args.torch):
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", *command], check=True)
        return
    found = missing() if args.missing else [s for group in requirements().values() for s in group]
    print("\n".join(found))
    sys.exit(1 if args.missing and found else 0)


if __name__ == "__main__":
    main()
