"""The 33 SynthSeg/FreeSurfer segmentation labels, ventricle groups and label-map conversions.

One label table for the whole project: ids and names follow SynthSeg 2.0 (`labels_table.txt`),
colours follow FreeSurfer's `FreeSurferColorLUT.txt`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Label:
    id: int
    name: str
    rgb: tuple[int, int, int]


SEGMENTATION_LABELS: tuple[Label, ...] = (
    Label(0, "background", (0, 0, 0)),
    Label(2, "left cerebral white matter", (245, 245, 245)),
    Label(3, "left cerebral cortex", (205, 62, 78)),
    Label(4, "left lateral ventricle", (120, 18, 134)),
    Label(5, "left inferior lateral ventricle", (196, 58, 250)),
    Label(7, "left cerebellum white matter", (220, 248, 164)),
    Label(8, "left cerebellum cortex", (230, 148, 34)),
    Label(10, "left thalamus", (0, 118, 14)),
    Label(11, "left caudate", (122, 186, 220)),
    Label(12, "left putamen", (236, 13, 176)),
    Label(13, "left pallidum", (12, 48, 255)),
    Label(14, "3rd ventricle", (204, 182, 142)),
    Label(15, "4th ventricle", (42, 204, 164)),
    Label(16, "brain-stem", (119, 159, 176)),
    Label(17, "left hippocampus", (220, 216, 20)),
    Label(18, "left amygdala", (103, 255, 255)),
    Label(24, "CSF", (60, 60, 60)),
    Label(26, "left accumbens area", (255, 165, 0)),
    Label(28, "left ventral DC", (165, 42, 42)),
    Label(41, "right cerebral white matter", (245, 245, 245)),
    Label(42, "right cerebral cortex", (205, 62, 78)),
    Label(43, "right lateral ventricle", (120, 18, 134)),
    Label(44, "right inferior lateral ventricle", (196, 58, 250)),
    Label(46, "right cerebellum white matter", (220, 248, 164)),
    Label(47, "right cerebellum cortex", (230, 148, 34)),
    Label(49, "right thalamus", (0, 118, 14)),
    Label(50, "right caudate", (122, 186, 220)),
    Label(51, "right putamen", (236, 13, 176)),
    Label(52, "right pallidum", (13, 48, 255)),
    Label(53, "right hippocampus", (220, 216, 20)),
    Label(54, "right amygdala", (103, 255, 255)),
    Label(58, "right accumbens area", (255, 165, 0)),
    Label(60, "right ventral DC", (165, 42, 42)),
)
SEGMENTATION_IDS: tuple[int, ...] = tuple(lab.id for lab in SEGMENTATION_LABELS)
LABEL_BY_ID: dict[int, Label] = {lab.id: lab for lab in SEGMENTATION_LABELS}
LEFT_IDS = frozenset(lab.id for lab in SEGMENTATION_LABELS if lab.name.startswith("left"))
RIGHT_IDS = frozenset(lab.id for lab in SEGMENTATION_LABELS if lab.name.startswith("right"))
# Each label's counterpart on the other side (midline labels map to themselves).
_ID_BY_NAME = {lab.name: lab.id for lab in SEGMENTATION_LABELS}
MIRROR_ID: dict[int, int] = {
    lab.id: _ID_BY_NAME.get(lab.name.replace("left ", "right ", 1) if lab.id in LEFT_IDS
                            else lab.name.replace("right ", "left ", 1), lab.id)
    for lab in SEGMENTATION_LABELS}

# Ventricle structures in the order VentSegment reports them; their FreeSurfer ids.
VENTRICLES: dict[str, tuple[int, ...]] = {
    "left_lateral": (4,),
    "right_lateral": (43,),
    "left_inferior_lateral": (5,),
    "right_inferior_lateral": (44,),
    "third": (14,),
    "fourth": (15,),
}
VENTRICLE_GROUPS: dict[str, tuple[int, ...]] = {
    "lateral": (4, 43),
    "inferior_lateral": (5, 44),
    "third": (14,),
    "fourth": (15,),
    "total": (4, 5, 14, 15, 43, 44),
}
VENTRICLE_IDS: tuple[int, ...] = VENTRICLE_GROUPS["total"]

# Consecutive classes for nnU-Net (which needs labels 0..K-1): FreeSurfer id -> class. The classes are
# side-agnostic, so that nnU-Net's mirroring augmentation stays valid (a mirrored left ventricle is a
# right one); `ventkit.segmentation.sides` assigns left and right from the anatomy after prediction.
NNUNET_VENTRICLE_CLASSES: dict[int, int] = {4: 1, 43: 1, 5: 2, 44: 2, 14: 3, 15: 4}
NNUNET_CLASS_NAMES: dict[str, int] = {
    "background": 0,
    "lateral_ventricle": 1,
    "inferior_lateral_ventricle": 2,
    "third_ventricle": 3,
    "fourth_ventricle": 4,
}
# nnU-Net's ignore label (it must be the highest): voxels that carry no loss in training
# (`anatomy.nnunet.uncertain_boundary`); never an output class
NNUNET_IGNORE = len(NNUNET_CLASS_NAMES)

# SynthSeg's generation labels (its `generation_labels.npy`, 54 ids): the 33 segmentation labels plus
# extra-cerebral and sub-structure labels used only to render heads. Those that are not segmentation
# labels map as SynthSeg's `synthseg_segmentation_labels_2.0.npy` maps them.
EXTRA_CEREBRAL_IDS: tuple[int, ...] = (72, 85, 502, 506, 507, 508, 509, 511, 512, 514, 515, 516, 530)
GENERATION_TO_SEGMENTATION: dict[int, int] = {
    **{i: 0 for i in EXTRA_CEREBRAL_IDS},
    25: 2, 57: 41,  # lesions -> white matter
    30: 0, 62: 0,  # vessels -> background
    136: 4, 137: 5, 163: 43, 164: 44,  # sub-labels of the lateral / inferior lateral ventricles
}
# Extra labels of FreeSurfer aseg maps, so that users can bring their own `aseg.mgz`-style maps.
# -1 means "take the nearest segmentation label" (structures that straddle the midline).
ASEG_TO_SEGMENTATION: dict[int, int] = {
    31: 4, 63: 43,  # choroid plexus -> lateral ventricles
    77: -1, 78: 2, 79: 41, 80: -1, 81: -1, 82: -1,  # white-matter / non-WM hypointensities
    251: -1, 252: -1, 253: -1, 254: -1, 255: -1,  # corpus callosum
    1: 0, 6: 0, 9: 10, 19: 0, 20: 0, 27: 0, 40: 0, 45: 0, 48: 49, 55: 0, 56: 0, 59: 0, 61: 0,
}
TO_SEGMENTATION: dict[int, int] = {
    **{i: i for i in SEGMENTATION_IDS},
    **GENERATION_TO_SEGMENTATION,
    **ASEG_TO_SEGMENTATION,
}
KNOWN_IDS = frozenset(TO_SEGMENTATION)


def mirror_labels(labels: np.ndarray, axis: int = 0) -> np.ndarray:
    """The left-right mirror image of a 33-label map whose `axis` runs left-right: flipped, with every
    left label exchanged for its right counterpart, so that left structures stay on the left."""
    lut = np.arange(max(SEGMENTATION_IDS) + 1, dtype=labels.dtype)
    lut[list(MIRROR_ID)] = list(MIRROR_ID.values())
    return lut[np.flip(labels, axis)]


def unknown_labels(labels: np.ndarray) -> list[int]:
    """Label values in `labels` that ventkit cannot map to the 33 segmentation labels."""
    return sorted(int(v) for v in np.unique(labels) if int(v) not in KNOWN_IDS)


def to_segmentation(labels: np.ndarray) -> np.ndarray:
    """Map a generation, aseg or segmentation label map to the 33 segmentation labels (int16).

    Raises ValueError naming unknown labels. Midline labels (corpus callosum, hypointensities)
    take the value of the nearest voxel with a segmentation label.
    """
    bad = unknown_labels(labels)
    if bad:
        raise ValueError(f"unknown label values {bad[:10]}{'...' if len(bad) > 10 else ''}")
    values, inverse = np.unique(labels, return_inverse=True)
    mapped = np.array([TO_SEGMENTATION[int(v)] for v in values], dtype=np.int16)
    out = mapped[inverse].reshape(labels.shape)
    if (out < 0).any():
        from scipy.ndimage import distance_transform_edt

        _, idx = distance_transform_edt(out < 0, return_indices=True)
        out = out[tuple(idx)]
    return out


def colour_table_lines() -> list[str]:
    """The 33 labels as a Slicer/FreeSurfer colour table: `id name r g b a` per line."""
    return [f"{lab.id} {lab.name.replace(' ', '_')} {lab.rgb[0]} {lab.rgb[1]} {lab.rgb[2]} "
            f"{0 if lab.id == 0 else 255}" for lab in SEGMENTATION_LABELS]
