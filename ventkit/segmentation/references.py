"""Reference segmenters shown beside VentSegment: FreeSurfer's SynthSeg and SAMSEG, when installed.

Both run as external commands on a temporary copy of the scan and write a whole-brain aseg-style label
map; it is read back, resampled to the scan's grid (per-label interpolation when the scan is coarser,
see `anatomy.grid.sample_labels`) and reduced to the ventricle labels, whose FreeSurfer numbers are ours.
- SynthSeg: `mri_synthseg` (FreeSurfer 7.3+) or the SynthSeg package's `SynthSeg_predict.py`. When
  neither is installed, `--model synthseg` uses ventkit's SynthSeg-recipe baseline and says so.
- SAMSEG: `run_samseg` from PyPI's `samseg` (MIT, ships its atlas). It pins numpy<2, so
  `ventkit install-samseg` puts it in a virtual environment of its own (`samseg_venv()`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..anatomy.grid import sample_labels
from ..errors import VentkitError
from ..io import Volume, read_volume, write_volume
from ..labels import VENTRICLE_IDS
from ..paths import SAMSEG_ENV, SYNTHSEG_ENV, explicit_command, home_dir

SYNTHSEG_COMMANDS = ("mri_synthseg", "SynthSeg_predict.py")
SAMSEG_REQUIREMENT = "samseg==0.4a0"


def find_synthseg() -> str | None:
    """Path of an installed SynthSeg command (`$VENTKIT_SYNTHSEG` first), or None."""
    explicit = explicit_command(SYNTHSEG_ENV)
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for cmd in SYNTHSEG_COMMANDS:
        found = shutil.which(cmd)
        if found:
            return found
    return None


def only_ventricles(labels: Volume) -> Volume:
    return labels.with_array(np.where(np.isin(labels.array, VENTRICLE_IDS), labels.array, 0).astype(np.int16))


class ExternalSegmenter:
    """A whole-brain segmenter run as a command on a temporary copy of the scan; ventricles come back."""

    description = "{command}"

    def __init__(self, command: str):
        self.command = command
        self.description = self.description.format(command=command)

    def argv(self, scan: Path, out: Path) -> list[str]:
        raise NotImplementedError

    def output(self, out: Path) -> Path:
        raise NotImplementedError

    def whole_brain(self, volume: Volume) -> Volume:
        """The command's whole label map, read back as int16 on its own grid (labels not ours included)."""
        with tempfile.TemporaryDirectory(prefix=f"ventkit_{self.name}_") as tmp:
            scan, out = Path(tmp) / "scan.nii.gz", Path(tmp) / "out"
            out.mkdir()
            write_volume(volume, scan, dtype=np.float32)
            proc = subprocess.run(self.argv(scan, out), capture_output=True, text=True)
            result = self.output(out)
            if proc.returncode != 0 or not result.is_file():
                tail = (proc.stderr.strip() or proc.stdout.strip())[-500:]
                raise VentkitError(f"{self.command} failed (exit {proc.returncode}): {tail}")
            found = read_volume(result)
        return found.with_array(np.rint(found.array).astype(np.int16))

    def segment(self, volume: Volume) -> Volume:
        """The ventricles on the scan's grid (their maps hold labels that are not ours, e.g. SAMSEG's
        skull 165, head 258, eyes 259; only the ventricles are kept)."""
        ventricles = only_ventricles(self.whole_brain(volume))
        return volume.with_array(sample_labels(ventricles, volume.affine, volume.array.shape).astype(np.int16))


class InstalledSynthSeg(ExternalSegmenter):
    """The official SynthSeg (`mri_synthseg --i scan --o labels --cpu`)."""

    name = "synthseg"
    description = "SynthSeg (installed: {command})"

    def argv(self, scan: Path, out: Path) -> list[str]:
        return [self.command, "--i", str(scan), "--o", str(self.output(out)), "--cpu"]

    def output(self, out: Path) -> Path:
        return out / "synthseg.nii.gz"


VENV_SCRIPTS = "Scripts" if os.name == "nt" else "bin"  # where a virtual environment keeps its programs


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, e.g. under `taskset`), else all of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class InstalledSamseg(ExternalSegmenter):
    """FreeSurfer's SAMSEG (`run_samseg -i scan -o dir`, labels in `dir/seg.mgz`): slow, atlas-based."""

    name = "samseg"
    description = "SAMSEG (installed: {command})"

    def argv(self, scan: Path, out: Path) -> list[str]:
        return [self.command, "-i", str(scan), "-o", str(out), "--threads", str(usable_cpus())]

    def output(self, out: Path) -> Path:
        return out / "seg.mgz"


def samseg_venv() -> Path:
    """Where `ventkit install-samseg` puts SAMSEG: `$VENTKIT_HOME/samseg-venv` (default ~/.ventkit)."""
    return home_dir() / "samseg-venv"


def find_samseg() -> str | None:
    """Path of `run_samseg`: `$VENTKIT_SAMSEG`, then PATH, then ventkit's own SAMSEG environment."""
    explicit = explicit_command(SAMSEG_ENV)
    if explicit:
        return explicit if Path(explicit).is_file() else None
    own = samseg_venv() / VENV_SCRIPTS / "run_samseg"
    return shutil.which("run_samseg") or (str(own) if own.is_file() else None)


def install_samseg(python: str = sys.executable, requirement: str = SAMSEG_REQUIREMENT) -> Path:
    """Create SAMSEG's own virtual environment (it needs numpy<2) and return its `run_samseg`."""
    venv = samseg_venv()
    for argv in ([python, "-m", "venv", str(venv)],
                 [str(venv / VENV_SCRIPTS / "python"), "-m", "pip", "install", requirement, "numpy<2"]):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)  # no half-made environment left behind
            raise VentkitError(f"installing SAMSEG failed ({' '.join(argv[:4])}...): {proc.stderr.strip()[-500:]}")
    return venv / VENV_SCRIPTS / "run_samseg"
