"""Reference segmenters shown beside VentSegment: FreeSurfer's `mri_synthseg` when installed.

`mri_synthseg` (FreeSurfer 7.3+) or the SynthSeg package's `SynthSeg_predict.py` writes a whole-brain
label map at 1 mm; it is read back, resampled to the scan's grid (per-label interpolation when the
scan is coarser, see `anatomy.grid.sample_labels`) and reduced to the ventricle labels. When neither
is installed, `--model synthseg` uses ventkit's SynthSeg-recipe baseline instead and says so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..anatomy.grid import sample_labels
from ..errors import VentkitError
from ..io import Volume, read_volume, write_volume
from ..labels import VENTRICLE_IDS

SYNTHSEG_COMMANDS = ("mri_synthseg", "SynthSeg_predict.py")


def find_synthseg() -> str | None:
    """Path of an installed SynthSeg command (`$VENTKIT_SYNTHSEG` first), or None."""
    explicit = os.environ.get("VENTKIT_SYNTHSEG")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for cmd in SYNTHSEG_COMMANDS:
        found = shutil.which(cmd)
        if found:
            return found
    return None


def only_ventricles(labels: Volume) -> Volume:
    return labels.with_array(np.where(np.isin(labels.array, VENTRICLE_IDS), labels.array, 0).astype(np.int16))


class InstalledSynthSeg:
    """The official SynthSeg, run as an external command on a temporary copy of the scan."""

    name = "synthseg"
    description = "SynthSeg (installed: {command})"

    def __init__(self, command: str):
        self.command = command
        self.description = self.description.format(command=command)

    def segment(self, volume: Volume) -> Volume:
        with tempfile.TemporaryDirectory(prefix="ventkit_synthseg_") as tmp:
            src, dst = Path(tmp) / "scan.nii.gz", Path(tmp) / "synthseg.nii.gz"
            write_volume(volume, src, dtype=np.float32)
            proc = subprocess.run([self.command, "--i", str(src), "--o", str(dst), "--cpu"],
                                  capture_output=True, text=True)
            if proc.returncode != 0 or not dst.is_file():
                raise VentkitError(f"{self.command} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
            labels = read_volume(dst, labels=True)
        return only_ventricles(volume.with_array(
            sample_labels(labels, volume.affine, volume.array.shape).astype(np.int16)))
