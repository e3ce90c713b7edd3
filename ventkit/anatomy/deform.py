"""Random smooth spatial deformations: an affine part and a diffeomorphic elastic part.

The elastic part is a stationary velocity field with Gaussian random values on a coarse lattice,
upsampled and integrated by scaling and squaring, so it folds no tissue (as in SynthSeg).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates, zoom
from scipy.spatial.transform import Rotation

from .grid import DisplacementField, Grid


def integrate_velocity(velocity: np.ndarray, spacing: float, steps: int = 6) -> np.ndarray:
    """Displacement (mm) of the flow of a stationary velocity field (mm) by scaling and squaring."""
    disp = velocity / (2 ** steps)
    idx = np.indices(velocity.shape[1:], dtype=np.float32)
    for _ in range(steps):
        pos = idx + disp / spacing
        disp = disp + np.stack([map_coordinates(c, pos, order=1, mode="nearest") for c in disp])
    return disp.astype(np.float32)


@dataclass(frozen=True)
class DeformationSpec:
    """Ranges of the random deformation (SynthSeg-like defaults); each part is drawn uniformly in +-range.

    Args:
        rotation_deg: largest rotation about each axis, degrees; >= 0.
        scaling: largest relative scaling along each axis; 0 <= scaling < 1.
        shearing: largest shear coefficient; >= 0.
        translation_mm: largest translation along each axis, mm; >= 0.
        elastic_std_mm: standard deviation of the elastic velocity field, mm; 0 (no elastic part) or more.
        elastic_lattice_mm: spacing of the elastic field's random control points, mm; > 0.
        field_spacing_mm: voxel size of the integrated displacement field, mm; > 0.
    """

    rotation_deg: float = 10.0
    scaling: float = 0.10
    shearing: float = 0.01
    translation_mm: float = 5.0
    elastic_std_mm: float = 3.0
    elastic_lattice_mm: float = 32.0
    field_spacing_mm: float = 4.0

    def __post_init__(self):
        for name in ("rotation_deg", "scaling", "shearing", "translation_mm", "elastic_std_mm",
                     "elastic_lattice_mm", "field_spacing_mm"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if self.scaling >= 1:
            raise ValueError(f"scaling must be below 1 (a scale of 1 +- scaling stays positive), got {self.scaling!r}")
        for name in ("elastic_lattice_mm", "field_spacing_mm"):
            if getattr(self, name) == 0:
                raise ValueError(f"{name} must be above 0, got {getattr(self, name)!r}")


@dataclass
class RandomDeformation:
    """One draw of an affine + elastic deformation about `center` (RAS mm); a Transform."""

    matrix: np.ndarray
    center: np.ndarray
    translation: np.ndarray
    elastic: DisplacementField | None

    @classmethod
    def draw(cls, rng: np.random.Generator, center, extent_mm, spec: DeformationSpec = DeformationSpec()):
        rot = Rotation.from_euler("xyz", rng.uniform(-1, 1, 3) * spec.rotation_deg, degrees=True).as_matrix()
        scale = np.diag(1 + rng.uniform(-1, 1, 3) * spec.scaling)
        shear = np.eye(3) + np.triu(rng.uniform(-1, 1, (3, 3)) * spec.shearing, 1)
        elastic = None
        if spec.elastic_std_mm > 0:
            extent = np.asarray(extent_mm, float) + 2 * spec.field_spacing_mm
            fine = Grid(tuple(int(np.ceil(e / spec.field_spacing_mm)) for e in extent),
                        (spec.field_spacing_mm,) * 3)
            coarse = [max(2, int(round(e / spec.elastic_lattice_mm)) + 1) for e in extent]
            vel = rng.normal(0, spec.elastic_std_mm, (3, *coarse)).astype(np.float32)
            factors = [f / c for f, c in zip(fine.shape, coarse)]
            vel = np.stack([zoom(c, factors, order=3, mode="nearest") for c in vel])
            disp = integrate_velocity(vel, spec.field_spacing_mm)
            elastic = DisplacementField(disp, fine.affine(center))
        return cls(rot @ scale @ shear, np.asarray(center, float),
                   rng.uniform(-1, 1, 3) * spec.translation_mm, elastic)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        if self.elastic is not None:
            points = self.elastic(points)
        c = self.center[:, None]
        return (self.matrix @ (points - c) + c + self.translation[:, None]).astype(np.float32)
