"""Model grids, coordinate grids and label-map resampling through chains of spatial transforms.

A transform is any callable mapping RAS points (3, N) in mm of the output space to RAS points of
the space it samples from; a chain is applied in order, output first, source last.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.ndimage import map_coordinates

from ..io import Volume

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Grid:
    """An axis-aligned RAS grid: voxel counts and spacing in mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def extent_mm(self) -> np.ndarray:
        return np.array(self.shape) * np.array(self.spacing)

    def affine(self, center_ras: Sequence[float]) -> np.ndarray:
        """Voxel-to-RAS affine of this grid with its centre at `center_ras`."""
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = np.asarray(center_ras, float) - (np.array(self.shape) - 1) / 2 * np.array(self.spacing)
        return aff


# "paper": the crop of Ruschke et al. (96x112x96 at 1.67x1.75x1.67 mm, 160x196x160 mm).
# "mask": the same field of view at half resolution, the grid the mask diffusion model trains on
# (COMPUTE.md: the paper's grid does not train on a 2-core CPU, this one does).
GRIDS: dict[str, Grid] = {
    "paper": Grid((96, 112, 96), (1.67, 1.75, 1.67)),
    "mask": Grid((48, 64, 48), (10 / 3, 3.0625, 10 / 3)),
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


def sample_labels(source: Volume, affine: np.ndarray, shape: Sequence[int],
                  transforms: Sequence[Transform] = (), antialias: bool | None = None) -> np.ndarray:
    """Resample an integer label map onto a grid through `transforms`.

    Nearest neighbour by default; with `antialias` (default: when the grid is at least 1.5x coarser
    than the source) each label's indicator is interpolated linearly and the argmax is kept, which
    preserves structure volumes when downsampling.
    """
    vox = to_voxels(source.affine, apply_chain(grid_points(affine, shape), transforms))
    if antialias is None:
        ratio = np.sqrt((affine[:3, :3] ** 2).sum(0)).min() / source.spacing.min()
        antialias = ratio >= 1.5
    src = source.array
    if not antialias:
        return map_coordinates(src, vox, order=0, mode="constant", cval=0).reshape(shape)
    best = np.zeros(vox.shape[1], np.float32)
    out = np.zeros(vox.shape[1], src.dtype)
    for value in np.unique(src):
        frac = map_coordinates((src == value).astype(np.float32), vox, order=1, mode="constant",
                               cval=float(value == 0), prefilter=False)
        better = frac > best
        best[better], out[better] = frac[better], value
    return out.reshape(shape)


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
