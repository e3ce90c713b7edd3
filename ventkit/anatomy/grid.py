"""Model grids, coordinate grids and label-map resampling through chains of spatial transforms.

A transform is any callable mapping RAS points (3, N) in mm of the output space to RAS points of
the space it samples from; a chain is applied in order, output first, source last.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.ndimage import map_coordinates

from ..io import Volume

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Grid:
    """An axis-aligned RAS grid.

    Args:
        shape: voxel counts along R, A, S; three integers >= 1.
        spacing: voxel size along R, A, S, mm; three finite numbers > 0.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def __post_init__(self):
        if np.shape(self.shape) != (3,) or not all(isinstance(n, numbers.Integral) and n >= 1 for n in self.shape):
            raise ValueError(f"shape must be three integers >= 1, got {self.shape!r}")
        if np.shape(self.spacing) != (3,) or not all(isinstance(s, numbers.Real) and np.isfinite(s) and s > 0
                                                      for s in self.spacing):
            raise ValueError(f"spacing must be three finite numbers > 0 (mm), got {self.spacing!r}")

    @property
    def extent_mm(self) -> np.ndarray:
        return np.array(self.shape) * np.array(self.spacing)

    def matches(self, other: "Grid") -> bool:
        """The same voxel counts and (to 1e-6 mm) the same voxel size."""
        return tuple(self.shape) == tuple(other.shape) and np.allclose(self.spacing, other.spacing, rtol=0, atol=1e-6)

    def affine(self, center_ras: Sequence[float]) -> np.ndarray:
        """Voxel-to-RAS affine of this grid with its centre at `center_ras`."""
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = np.asarray(center_ras, float) - (np.array(self.shape) - 1) / 2 * np.array(self.spacing)
        return aff


# "paper": the crop of Ruschke et al. (96x112x96 at 1.67x1.75x1.67 mm, 160x196x160 mm).
# "mask": the same field of view at half resolution, the grid the mask diffusion model trains on
# (the paper's grid is too fine to train the diffusion models on a 2-core CPU; this one is not).
# "fine": the mask grid at twice its resolution (at most the paper's 1.67 mm, sides divisible by 32 so that
# an autoencoder compressing x8 gives the mask grid's latent size).
GRIDS: dict[str, Grid] = {
    "paper": Grid((96, 112, 96), (1.67, 1.75, 1.67)),
    "mask": Grid((48, 64, 48), (10 / 3, 3.0625, 10 / 3)),
    "fine": Grid((96, 128, 96), (10 / 6, 1.53125, 10 / 6)),
    "seg2mm": Grid((96, 112, 96), (2.0, 2.0, 2.0)),
}


def grid_points(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """RAS coordinates (3, N) of every voxel centre of a grid, in C order."""
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).astype(np.float32)


def to_voxels(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(affine)
    return (inv[:3, :3] @ points + inv[:3, 3:4]).astype(np.float32)


def apply_chain(points: np.ndarray, transforms: Sequence[Transform]) -> np.ndarray:
    for t in transforms:
        points = t(points)
    return points


def _bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for axis in range(mask.ndim):
        hit = np.nonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))[0]
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return np.array(lo), np.array(hi)


def argmax_labels(src: np.ndarray, vox: np.ndarray) -> np.ndarray:
    """Label of largest linearly interpolated indicator at voxel coordinates `vox` (3, N) of `src`.

    Each label is evaluated only at points inside its bounding box, on a crop of the source around
    the points, so the cost follows the structures' sizes rather than the label count.
    """
    lo = np.clip(np.floor(vox.min(1)).astype(int) - 1, 0, src.shape)
    hi = np.clip(np.ceil(vox.max(1)).astype(int) + 2, 0, src.shape)
    crop = src[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    vox = vox - lo[:, None].astype(np.float32)
    best = np.zeros(vox.shape[1], np.float32)
    out = np.zeros(vox.shape[1], src.dtype)
    if crop.size == 0:
        return out
    for value in np.unique(crop):
        mask = crop == value
        if value == 0:
            b0, b1, sel = np.zeros(3, int), np.array(crop.shape), slice(None)
        else:
            b0, b1 = _bounding_box(mask)
            b0, b1 = np.maximum(b0 - 1, 0), np.minimum(b1 + 1, crop.shape)  # keep the label's edges interior
            inside = np.all((vox > b0[:, None] - 1) & (vox < b1[:, None]), axis=0)
            sel = np.nonzero(inside)[0]
            if sel.size == 0:
                continue
        sub = mask[b0[0]:b1[0], b0[1]:b1[1], b0[2]:b1[2]].astype(np.float32)
        frac = map_coordinates(sub, vox[:, sel] - b0[:, None].astype(np.float32), order=1, mode="constant",
                               cval=float(value == 0), prefilter=False)
        better = frac > best[sel]
        idx = np.arange(vox.shape[1])[sel][better] if value != 0 else np.nonzero(better)[0]
        best[idx], out[idx] = frac[better], value
    return out


def sample_labels(source: Volume, affine: np.ndarray, shape: Sequence[int],
                  transforms: Sequence[Transform] = (), antialias: bool | None = None) -> np.ndarray:
    """Resample an integer label map onto a grid through `transforms`.

    Nearest neighbour by default; with `antialias` (default: when the grid is at least 1.5x coarser
    than the source) each label's indicator is interpolated linearly and the argmax is kept, which
    preserves structure volumes when downsampling.
    """
    vox = to_voxels(source.affine, apply_chain(grid_points(affine, shape), transforms))
    if antialias is None:
        antialias = needs_antialias(source, affine)
    if not antialias:
        return map_coordinates(source.array, vox, order=0, mode="constant", cval=0).reshape(shape)
    return argmax_labels(source.array, vox).reshape(shape)


def needs_antialias(source: Volume, affine: np.ndarray) -> bool:
    return np.sqrt((affine[:3, :3] ** 2).sum(0)).min() / source.spacing.min() >= 1.5


def sample_image(source: Volume, affine: np.ndarray, shape: Sequence[int],
                 transforms: Sequence[Transform] = (), order: int = 1) -> np.ndarray:
    """Resample an intensity image onto a grid through `transforms` (linear by default)."""
    vox = to_voxels(source.affine, apply_chain(grid_points(affine, shape), transforms))
    return map_coordinates(source.array.astype(np.float32), vox, order=order, mode="constant",
                           cval=0.0).reshape(shape)


@dataclass
class DisplacementField:
    """A displacement (mm) sampled on a grid: maps RAS point p to p + d(p)."""

    data: np.ndarray  # (3, X, Y, Z) float32, mm
    affine: np.ndarray  # voxel-to-RAS of the grid it is sampled on

    def displacement(self, points: np.ndarray) -> np.ndarray:
        vox = to_voxels(self.affine, points)
        return np.stack([map_coordinates(c, vox, order=1, mode="nearest") for c in self.data])

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return points + self.displacement(points)
