"""Real T1 appearance: real scans labelled once, then deformed and resized with their labels.

Renders alone teach the image generator piecewise-constant images. Real T1s available offline, the
MNI152 2009a template shipped inside `nilearn` and the single-subject Colin27 brain of Debian's
`mricron-data` (`ch2.nii.gz`), are labelled once by SAMSEG (`label_real_t1s`), and stored as a subject
folder: `<name>.nii.gz` (33 segmentation labels) with `images/<name>.nii.gz` (the T1, RAS). `ventkit
corpus build --labels FOLDER --contrast real` then warps each T1 by the same random deformation and
ventricle flow as its labels, so intensities move with the tissue. fsaverage is never used here: it
is VentSegment's real test image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import Volume, read_volume, reorient_to_ras, write_volume
from ..labels import KNOWN_IDS, VENTRICLE_GROUPS, to_segmentation
from .grid import sample_labels

MRICRON_COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")


# the real T1s that `corpus label-real` takes without arguments, and how each is installed
KNOWN_REAL_T1S = {"mni152_2009a": "pip install -e '.[train]' (nilearn's MNI152 2009a template)",
                  "colin27": "apt install mricron-data (Colin27, ch2.nii.gz)"}


def known_real_t1s() -> dict[str, Path]:
    """Those of KNOWN_REAL_T1S found on this machine: nilearn's MNI152 2009a template, Debian's Colin27."""
    found = {}
    try:
        from importlib.resources import files

        mni = files("nilearn.datasets") / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
        if mni.is_file():
            found["mni152_2009a"] = Path(str(mni))
    except ModuleNotFoundError:
        pass
    if MRICRON_COLIN27.is_file():
        found["colin27"] = MRICRON_COLIN27
    return found


def subject_image(label_path: str | Path) -> Path:
    """The real T1 stored beside a subject's label map (`images/<same name>`)."""
    label_path = Path(label_path)
    return label_path.parent / "images" / label_path.name


def as_segmentation(found: Volume, grid_of: Volume) -> Volume:
    """A whole-brain map with labels ventkit does not know (skull, head, eyes) set to background,
    mapped to the 33 segmentation labels and resampled (nearest) onto the T1's grid."""
    known = np.isin(found.array, list(KNOWN_IDS))
    seg = found.with_array(to_segmentation(np.where(known, found.array, 0)))
    return grid_of.with_array(sample_labels(seg, grid_of.affine, grid_of.array.shape, antialias=False)
                              .astype(np.int16))


def label_real_t1s(images: dict[str, str | Path], out_dir: str | Path, segmenter) -> list[Path]:
    """Label each T1 with `segmenter.whole_brain` (SAMSEG) and write the subject folder; returns the
    label maps. Subjects already written are kept (the labelling takes minutes per scan)."""
    out_dir = Path(out_dir)
    written = []
    for name, path in images.items():
        labels_path = out_dir / f"{name}.nii.gz"
        if not (labels_path.is_file() and subject_image(labels_path).is_file()):
            t1 = reorient_to_ras(read_volume(path))
            seg = as_segmentation(segmenter.whole_brain(t1), t1)
            if not np.isin(seg.array, VENTRICLE_GROUPS["lateral"]).any():
                raise InputError(path, f"{segmenter.description} found no lateral ventricles: not a brain T1?")
            write_volume(t1, subject_image(labels_path), dtype=np.float32)
            write_volume(seg, labels_path, dtype=np.int16)
        written.append(labels_path)
    return written


def load_subject_image(label_path: str | Path) -> Volume:
    """A subject's real T1 (RAS), for `--contrast real`; a clear error when the folder has none."""
    path = subject_image(label_path)
    if not path.is_file():
        raise InputError(path, "no real T1 beside this label map (`--contrast real` needs the subject "
                               "folder written by `ventkit corpus label-real`)")
    return reorient_to_ras(read_volume(path))
