"""Left and right from the anatomy: side-agnostic ventricle classes -> FreeSurfer's left/right labels.

nnU-Net predicts lateral and inferior lateral ventricles without a side (so that it may train with
mirroring). The sides come from the mid-sagittal plane: through the 3rd ventricle, a thin midline slit,
with its thinnest principal axis as the plane's normal; when the 3rd ventricle is missing or not
slit-like, the sagittal plane (RAS x) through the centre of the lateral ventricles. Each connected
component lying (90 %) on one side takes that side; a component across the plane (left and right
lateral ventricles touching at the septum) is cut along it.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# side-agnostic class -> (left, right) FreeSurfer ids; single-sided classes -> their id
PAIRED = {1: (4, 43), 2: (5, 44)}
MIDLINE = {3: 14, 4: 15}
MIN_THIRD_VOXELS = 20
ONE_SIDE = 0.9


def world(indices: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(N, 3) voxel indices -> (N, 3) RAS mm."""
    return indices @ affine[:3, :3].T + affine[:3, 3]


def midsagittal_plane(classes: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(point, unit normal pointing to the right) of the plane between the hemispheres, in RAS mm."""
    third = np.argwhere(classes == 3)
    if len(third) >= MIN_THIRD_VOXELS:
        pts = world(third, affine)
        centre = pts.mean(0)
        _, vectors = np.linalg.eigh(np.cov((pts - centre).T))
        normal = vectors[:, 0]  # smallest spread: across the slit
        if abs(normal[0]) >= 0.8:  # slit-like and roughly sagittal
            return centre, normal * np.sign(normal[0])
    lateral = np.argwhere(np.isin(classes, list(PAIRED)))
    centre = world(lateral, affine).mean(0) if len(lateral) else world(np.array(classes.shape)[None] / 2, affine)[0]
    return centre, np.array([1.0, 0.0, 0.0])


def assign_sides(classes: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """nnU-Net classes (0 background, 1 lateral, 2 inferior lateral, 3 3rd, 4 4th) -> FreeSurfer labels."""
    labels = np.zeros(classes.shape, np.int16)
    for cls, fs in MIDLINE.items():
        labels[classes == cls] = fs
    point, normal = midsagittal_plane(classes, affine)
    for cls, (left, right) in PAIRED.items():
        idx = np.argwhere(classes == cls)
        if not len(idx):
            continue
        components, n = ndimage.label(classes == cls, structure=np.ones((3, 3, 3)))
        comp = components[tuple(idx.T)]
        is_right = (world(idx, affine) - point) @ normal > 0
        share = np.bincount(comp, weights=is_right, minlength=n + 1) / np.maximum(np.bincount(comp, minlength=n + 1), 1)
        side = np.where(share[comp] >= ONE_SIDE, True, np.where(share[comp] <= 1 - ONE_SIDE, False, is_right))
        labels[tuple(idx.T)] = np.where(side, right, left)
    return labels
