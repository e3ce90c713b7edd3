"""Every setting ventkit reads from the environment, in one place (as nnU-Net's `paths.py`).

| variable | what it points to | default |
|---|---|---|
| `VENTKIT_DATA` | folder of whole-brain label maps (FreeSurfer ids) | `../shared/data/synthseg/label_maps` beside the working directory or the repository |
| `VENTKIT_MODELS` | folder of the shipped models | `Resources/Models` beside the package |
| `VENTKIT_HOME` | ventkit's own installs (SAMSEG's environment) | `~/.ventkit` |
| `VENTKIT_SYNTHSEG` | FreeSurfer's `mri_synthseg` | found on PATH |
| `VENTKIT_SAMSEG` | FreeSurfer's `run_samseg` | PATH, then `VENTKIT_HOME/samseg-venv` |
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV, MODELS_ENV, HOME_ENV = "VENTKIT_DATA", "VENTKIT_MODELS", "VENTKIT_HOME"
SYNTHSEG_ENV, SAMSEG_ENV = "VENTKIT_SYNTHSEG", "VENTKIT_SAMSEG"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the repository, or the extension's scripted-modules folder


def label_maps_dir() -> Path | None:
    """`$VENTKIT_DATA`, else the shared SynthSeg label maps beside the working directory or the repository."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    for base in (Path.cwd(), PACKAGE_ROOT):
        cand = base.parent / "shared" / "data" / "synthseg" / "label_maps"
        if cand.is_dir():
            return cand
    return None


def models_dir() -> Path:
    """`$VENTKIT_MODELS`, else `Resources/Models` of this repository or extension."""
    return Path(os.environ[MODELS_ENV]) if os.environ.get(MODELS_ENV) else PACKAGE_ROOT / "Resources" / "Models"


def home_dir() -> Path:
    """`$VENTKIT_HOME`, else `~/.ventkit`."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".ventkit")


def explicit_command(name: str) -> str | None:
    """The command a variable (SYNTHSEG_ENV, SAMSEG_ENV) names, or None when it is not set."""
    return os.environ.get(name) or None
