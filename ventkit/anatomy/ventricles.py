"""Resize the ventricles of a label map to a target total volume by a smooth deformation.

The ventricles grow (or shrink) along the flow of a potential field: on a coarse grid the ventricles
are a source and the rest of the intracranial tissue a sink spread over it (extra-cerebral CSF,
label 24, gives way more readily, as sulci efface in hydrocephalus), with no flow through the skull.
Integrating many small steps of this flow gives a diffeomorphism, so tissue is pushed outward or
pulled in, never relabelled, and every structure keeps its topology. The final amount of flow is
calibrated on the output grid until the measured ventricle volume is within tolerance.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.fft import dctn, idctn
from scipy.ndimage import distance_transform_edt, gaussian_filter, map_coordinates

from ..io import Volume
from ..labels import TO_SEGMENTATION, VENTRICLE_IDS
from .grid import DisplacementField, Grid, Transform, grid_points, to_voxels

CSF_ID = 24
CSF_SINK_WEIGHT = 4.0
MIN_ML, MAX_ML = 5.0, 300.0
# The source sits mostly deeper than SOURCE_DEPTH_MM inside the ventricles, so that the tissue lining
# them (caudate, thalamus) is compressed rather than blurred into the source by the coarse grid; a
# THIN_SOURCE share over the whole ventricles lets thin parts (temporal horns, 3rd ventricle) grow too.
SOURCE_DEPTH_MM = 1.5
THIN_SOURCE = 0.2


def ids_mapping_to(targets: Sequence[int]) -> list[int]:
    """Label ids (generation, aseg or segmentation) whose segmentation label is in `targets`."""
    return [i for i, s in TO_SEGMENTATION.items() if s in targets]


def _fraction_on_grid(mask: np.ndarray, src_affine: np.ndarray, affine: np.ndarray, shape) -> np.ndarray:
    """Fraction of each coarse voxel covered by `mask` (smoothed indicator, linear sampling)."""
    src_spacing = np.sqrt((src_affine[:3, :3] ** 2).sum(0))
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    smooth = gaussian_filter(mask.astype(np.float32), sigma=0.4 * spacing / src_spacing)
    vox = to_voxels(src_affine, grid_points(affine, shape))
    return map_coordinates(smooth, vox, order=1, mode="constant", cval=0.0).reshape(shape)


def _solve_poisson_neumann(f: np.ndarray, h: float) -> np.ndarray:
    """Solve lap(p) = f on a box with zero-flux boundaries (f must have zero mean)."""
    F = dctn(f, type=2, norm="ortho")
    eig = np.zeros(f.shape, np.float64)
    for axis, n in enumerate(f.shape):
        k = np.arange(n).reshape([-1 if a == axis else 1 for a in range(f.ndim)])
        eig = eig + (2 * np.cos(np.pi * k / n) - 2) / h ** 2
    eig[(0,) * f.ndim] = 1.0
    F = F / eig
    F[(0,) * f.ndim] = 0.0
    return idctn(F, type=2, norm="ortho")


@dataclass
class VentricleFlow:
    """The ventricle-resizing flow of one label map, integrated on a coarse grid on demand."""

    labels: Volume
    spacing_mm: float = 3.0
    step_mm: float = 1.0
    max_steps: int = 400
    affine: np.ndarray = field(init=False)
    volumes: list[float] = field(init=False, default_factory=list)  # coarse ventricle mL per step
    fields: list[np.ndarray] = field(init=False, default_factory=list)  # displacement (3,X,Y,Z) mm
    direction: int = field(init=False, default=0)

    def __post_init__(self):
        lab = self.labels.array
        vent = np.isin(lab, ids_mapping_to(VENTRICLE_IDS))
        brain_ids = [i for i, s in TO_SEGMENTATION.items() if s != 0]
        intracranial = np.isin(lab, brain_ids)
        if not vent.any():
            raise ValueError(f"{self.labels.source}: no ventricle labels to resize")
        nz = np.argwhere(intracranial)
        lo = self.labels.affine[:3, :3] @ nz.min(0) + self.labels.affine[:3, 3]
        hi = self.labels.affine[:3, :3] @ nz.max(0) + self.labels.affine[:3, 3]
        lo, hi = np.minimum(lo, hi) - 15.0, np.maximum(lo, hi) + 15.0
        h = self.spacing_mm
        self.shape = tuple(int(np.ceil((b - a) / h)) + 1 for a, b in zip(lo, hi))
        self.affine = Grid(self.shape, (h,) * 3).affine((lo + hi) / 2)
        args = (self.labels.affine, self.affine, self.shape)
        self._vent = _fraction_on_grid(vent, *args)
        depth = distance_transform_edt(vent, sampling=self.labels.spacing)
        self._source = _fraction_on_grid(depth > SOURCE_DEPTH_MM, *args) + THIN_SOURCE * self._vent
        parenchyma = _fraction_on_grid(intracranial & ~vent, *args)
        csf = _fraction_on_grid(np.isin(lab, ids_mapping_to([CSF_ID])), *args)
        self._sink = parenchyma + (CSF_SINK_WEIGHT - 1.0) * csf
        self._inside = np.clip(gaussian_filter(_fraction_on_grid(intracranial, *args), 1.0) * 2 - 1, 0, 1)
        self._idx = np.indices(self.shape, dtype=np.float32)
        self.fields = [np.zeros((3, *self.shape), np.float32)]
        self.volumes = [float(self._vent.sum()) * h ** 3 / 1000]

    def _warp(self, img: np.ndarray, disp: np.ndarray) -> np.ndarray:
        return map_coordinates(img, self._idx + disp / self.spacing_mm, order=1, mode="nearest")

    def _step(self) -> None:
        h, disp = self.spacing_mm, self.fields[-1]
        sink = self._warp(self._sink, disp)
        src = self._warp(self._source, disp)
        f = src - sink * (src.sum() / max(sink.sum(), 1e-6))
        p = _solve_poisson_neumann(f, h)
        u = np.stack(np.gradient(p, h)).astype(np.float32) * self._warp(self._inside, disp)[None]
        u *= self.direction * self.step_mm / max(float(np.sqrt((u ** 2).sum(0)).max()), 1e-12)
        # phi_new(x) = phi(x - u(x)): content moves forward along u.
        shifted = self._idx - u / h
        new = -u + np.stack([map_coordinates(c, shifted, order=1, mode="nearest") for c in disp])
        self.fields.append(new.astype(np.float32))
        self.volumes.append(float(self._warp(self._vent, new).sum()) * h ** 3 / 1000)

    def extend_to(self, coarse_ml: float) -> None:
        """Integrate further until the coarse volume passes `coarse_ml` (or raise)."""
        if self.direction == 0:
            self.direction = 1 if coarse_ml > self.volumes[0] else -1
        while (self.volumes[-1] - coarse_ml) * self.direction < 0:
            if len(self.fields) > self.max_steps:
                raise ValueError(f"{self.labels.source}: ventricle volume stalled at "
                                 f"{self.volumes[-1]:.1f} mL before reaching {coarse_ml:.1f} mL")
            before = self.volumes[-1]
            self._step()
            if abs(self.volumes[-1] - before) < 1e-3:
                raise ValueError(f"{self.labels.source}: ventricle volume stalled at {before:.1f} mL")

    def time_for(self, coarse_ml: float) -> float:
        """Fractional step count at which the coarse volume equals `coarse_ml`."""
        self.extend_to(coarse_ml)
        v = np.array(self.volumes) * self.direction
        k = int(np.argmax(v >= coarse_ml * self.direction))
        if k == 0:
            return 0.0
        a, b = v[k - 1], v[k]
        return k - 1 + float((coarse_ml * self.direction - a) / max(b - a, 1e-12))

    def volume_at(self, t: float) -> float:
        k = min(int(np.floor(t)), len(self.volumes) - 2) if len(self.volumes) > 1 else 0
        if len(self.volumes) == 1:
            return self.volumes[0]
        a = t - k
        return (1 - a) * self.volumes[k] + a * self.volumes[k + 1]

    def transform(self, t: float) -> Transform:
        """Transform (output RAS -> source RAS) after `t` steps of flow (linear between steps)."""
        if t <= 0 or len(self.fields) == 1:
            return lambda p: p
        k = min(int(np.floor(t)), len(self.fields) - 2)
        a = t - k
        disp = (1 - a) * self.fields[k] + a * self.fields[k + 1]
        return DisplacementField(disp.astype(np.float32), self.affine)


class SubjectFlows:
    """The growing and the shrinking flow of one label map, each integrated when first needed."""

    def __init__(self, labels: Volume):
        self.labels = labels
        self._flows: dict[int, VentricleFlow] = {}

    def get(self, direction: int) -> VentricleFlow:
        if direction not in self._flows:
            flow = VentricleFlow(self.labels)
            flow.direction = direction
            self._flows[direction] = flow
        return self._flows[direction]


def resize_transform(flows: SubjectFlows, target_ml: float, measure: Callable[[Transform], float],
                     tol: float = 0.01) -> tuple[Transform, float]:
    """Transform that brings the measured ventricle volume to `target_ml`, growing or shrinking."""
    if not MIN_ML <= target_ml <= MAX_ML:
        raise ValueError(f"target ventricle volume {target_ml:g} mL is outside {MIN_ML:g}-{MAX_ML:g} mL")
    identity = lambda p: p  # noqa: E731
    start = measure(identity)
    if abs(start - target_ml) <= tol * target_ml:
        return identity, start
    return calibrate(flows.get(1 if target_ml > start else -1), target_ml, measure, tol)


def calibrate(flow: VentricleFlow, target_ml: float, measure: Callable[[Transform], float],
              tol: float = 0.01, max_iter: int = 8) -> tuple[Transform, float]:
    """Find the amount of flow whose measured output volume is within `tol` of `target_ml`.

    `measure(transform)` returns the ventricle volume on the output grid after that transform.
    The ratio between measured and coarse volumes corrects the coarse target, then a secant
    search on the flow time finishes the job.
    """
    t = flow.time_for(target_ml)
    tr = flow.transform(t)
    got = measure(tr)
    history = [(t, got)]
    for _ in range(max_iter):
        if abs(got - target_ml) <= tol * target_ml:
            return tr, got
        if len(history) == 1:
            ratio = got / max(flow.volume_at(t), 1e-6)
            t_new = flow.time_for(target_ml / ratio)
        else:
            (t0, v0), (t1, v1) = history[-2], history[-1]
            t_new = t1 + (target_ml - v1) * (t1 - t0) / (v1 - v0) if v1 != v0 else t1 + 0.5
            t_new = max(t_new, 0.0)
            while t_new > len(flow.fields) - 1.5:
                flow.extend_to(flow.volumes[-1] + flow.direction * max(1.0, 0.05 * target_ml))
        if abs(t_new - t) < 1e-4:
            break
        t = t_new
        tr = flow.transform(t)
        got = measure(tr)
        history.append((t, got))
    if abs(got - target_ml) > tol * target_ml * 2:
        warnings.warn(f"{flow.labels.source}: ventricles reached {got:.1f} mL for a target of {target_ml:.1f} mL")
    return tr, got
