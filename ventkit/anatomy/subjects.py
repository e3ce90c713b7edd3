"""The real label maps the corpus is built from: where they are, and the fixed subject split."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..paths import DATA_ENV, label_maps_dir
from ..io import NIFTI_SUFFIXES, NRRD_SUFFIXES, Volume, read_volume, reorient_to_ras, stem_of, suffix_of

# Subjects of the shared SynthSeg label maps that no model ever trains on (25 %, spanning
# 13-51 mL of natural ventricle volume); they are inflated to 100-300 mL for testing.
HOLDOUT_SUBJECTS = ("training_seg_03", "training_seg_12", "training_seg_15", "training_seg_19")
HOLDOUT_FRACTION = 0.25


def default_label_dir() -> Path:
    """`paths.label_maps_dir()`: `$VENTKIT_DATA`, else the shared label maps; a clear error without either."""
    found = label_maps_dir()
    if found is not None:
        return found
    raise InputError(DATA_ENV, "no label maps found: set $VENTKIT_DATA or pass --labels DIR "
                               "(e.g. SynthSeg's data/training_label_maps, or FreeSurfer aseg maps)")


def default_priors_dir(label_dir: str | Path | None = None) -> Path | None:
    """SynthSeg's `priors` folder beside the label maps, when it is there."""
    cand = Path(label_dir or default_label_dir()).parent / "priors"
    return cand if (cand / "generation_classes.npy").is_file() else None


def list_subjects(label_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Subject id (file stem) -> path of every NIfTI/NRRD label map in `label_dir`."""
    label_dir = Path(label_dir) if label_dir else default_label_dir()
    if not label_dir.is_dir():
        raise InputError(label_dir, "label-map folder not found")
    found = {stem_of(p): p for p in sorted(label_dir.iterdir())
             if suffix_of(p) in NIFTI_SUFFIXES + NRRD_SUFFIXES and not p.name.startswith(".")}
    if not found:
        raise InputError(label_dir, "no .nii, .nii.gz or .nrrd label maps in folder")
    return found


def is_holdout(subject: str, all_subjects) -> bool:
    """Fixed hold-out: the listed SynthSeg subjects, or a stable 25 % hash split for other data."""
    if any(s in HOLDOUT_SUBJECTS for s in all_subjects):
        return subject in HOLDOUT_SUBJECTS
    digest = hashlib.sha256(subject.encode()).digest()
    return digest[0] < 256 * HOLDOUT_FRACTION


def split_subjects(label_dir=None) -> dict[str, list[str]]:
    subjects = list_subjects(label_dir)
    holdout = [s for s in subjects if is_holdout(s, subjects)]
    return {"train": [s for s in subjects if s not in holdout], "holdout": holdout}


@lru_cache(maxsize=4)
def load_subject(path: str) -> Volume:
    """Read a label map, validate it, reorient it to RAS and store it as int16."""
    vol = reorient_to_ras(read_volume(path, labels=True))
    return Volume(vol.array.astype(np.int16), vol.affine, vol.source)
