"""Field of view of a training image: the whole head, or what real inputs often are instead.

Users bring skull-stripped scans (the brain masked, with or without a rim of CSF), defaced scans (face
removed) and scans cropped to a smaller field of view. A segmenter trained on whole heads only has never
seen a brain beside zeros. `apply_fov` zeroes an acquired image outside such a region, computed from the
case's generation labels on its own grid (any RAS-aligned grid; the brain need not be centred).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import (binary_closing, binary_fill_holes, distance_transform_edt, generate_binary_structure,
                           label)

from ..errors import InputError
from ..labels import VENTRICLE_IDS, to_segmentation
from .render import smooth_random_field

FOVS = ("head", "stripped", "stripped_csf", "defaced", "cropped")
# how often each appears in a "mixed" corpus: whole heads stay the most common input
MIXED_WEIGHTS = {"head": 0.35, "stripped": 0.2, "stripped_csf": 0.15, "defaced": 0.15, "cropped": 0.15}
EXTRA_CEREBRAL_CSF = 24


def check_fov(name: str) -> None:
    if name not in FOVS + ("mixed",):
        raise InputError("fov", f"unknown field of view '{name}' (choose from {', '.join(FOVS + ('mixed',))})")


def draw_fov(name: str, rng: np.random.Generator) -> str:
    """`name` itself, or for "mixed" one of FOVS drawn with MIXED_WEIGHTS."""
    check_fov(name)
    if name != "mixed":
        return name
    return str(rng.choice(list(MIXED_WEIGHTS), p=list(MIXED_WEIGHTS.values())))


def _ras_coordinates(affine: np.ndarray, shape) -> list[np.ndarray]:
    """RAS x, y, z (mm) of every voxel, as three broadcastable arrays (an axis-aligned grid)."""
    axes = [np.arange(n) for n in shape]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    return [sum(affine[r, c] * grids[c] for c in range(3)) + affine[r, 3] for r in range(3)]


def brain_mask(segmentation: np.ndarray, spacing, rng: np.random.Generator, with_csf: bool) -> np.ndarray:
    """A skull-stripping mask as brain-extraction tools draw it: the brain labels (with the extra-cerebral
    CSF when `with_csf`), closed over the sulci and the cisterns (3 mm with the CSF, 6 mm without it, so that
    no pocket of zeros is left beside the 3rd ventricle), holes filled, its edge moved in or out by a smooth
    random margin (mean -1 to +1 mm without the CSF, 0 to 3 mm with it, SD 1 mm)."""
    spacing = np.asarray(spacing, float)
    brain = segmentation != 0
    if not with_csf:
        brain &= segmentation != EXTRA_CEREBRAL_CSF
    radius = max(1, int(round((3.0 if with_csf else 6.0) / spacing.min())))
    brain = binary_closing(brain, generate_binary_structure(3, 1), iterations=radius)
    brain = binary_fill_holes(brain)
    outside = distance_transform_edt(~brain, sampling=spacing)
    inside = distance_transform_edt(brain, sampling=spacing)
    signed = np.where(brain, -inside, outside)
    mean = rng.uniform(0.0, 3.0) if with_csf else rng.uniform(-1.0, 1.0)
    margin = mean + smooth_random_field(segmentation.shape, rng, 1.0, lattice=6)
    parts, n = label(signed <= margin)
    if n <= 1:
        return parts > 0
    return parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))  # one piece, as a brain mask is


def apply_fov(image: np.ndarray, generation: np.ndarray, affine: np.ndarray, fov: str,
              rng: np.random.Generator) -> np.ndarray:
    """`image` with zeros outside the field of view `fov` (one of FOVS); the ventricles always stay inside."""
    if fov == "head":
        return image
    seg = to_segmentation(generation)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    if fov in ("stripped", "stripped_csf"):
        keep = brain_mask(seg, spacing, rng, with_csf=fov == "stripped_csf")
    else:
        x, y, z = _ras_coordinates(affine, seg.shape)
        brain = seg != 0
        idx = np.argwhere(brain)
        lo, hi = idx.min(0), idx.max(0)
        corners = affine[:3, :3] @ np.stack([lo, hi], 1) + affine[:3, 3:4]
        (x0, x1), (y0, y1), (z0, z1) = np.sort(corners, axis=1)
        vent = np.argwhere(np.isin(seg, VENTRICLE_IDS))
        vent_z = (affine[:3, :3] @ vent.T + affine[:3, 3:4])[2] if len(vent) else np.array([z0 + 40.0])
        if fov == "defaced":
            # everything in front of the brain and below its frontal pole, outside a margin around the brain,
            # behind a plane tilted forward as defacing tools cut
            margin = distance_transform_edt(~brain, sampling=spacing) <= rng.uniform(3.0, 12.0)
            tilt = np.tan(np.radians(rng.uniform(20.0, 50.0)))
            face = (y - (y1 - rng.uniform(10.0, 40.0))) > tilt * (z - (z0 + rng.uniform(20.0, 50.0)))
            keep = margin | ~face
        else:  # cropped: a field of view cut below, and at times above, in front and behind
            keep = z >= min(rng.uniform(z0 - 20.0, z0 + 25.0), vent_z.min() - 10.0)
            if rng.random() < 0.4:
                keep &= z <= rng.uniform(z1 - 10.0, z1 + 15.0)
            if rng.random() < 0.4:
                keep &= (y <= y1 + rng.uniform(0.0, 15.0)) & (y >= y0 - rng.uniform(0.0, 15.0))
            if rng.random() < 0.3:
                keep &= np.abs(x - (x0 + x1) / 2) <= (x1 - x0) / 2 + rng.uniform(0.0, 15.0)
    keep = np.broadcast_to(keep, image.shape) | np.isin(seg, VENTRICLE_IDS)
    return np.where(keep, image, 0).astype(image.dtype)
