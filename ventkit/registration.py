"""Rigid registration of one scan of a head to another (SimpleITK), and resampling onto the other's grid.

Used by the follow-up comparison: the follow-up scan is brought into the baseline's space so that both
visits are shown on matched slices and the brains can be checked to be the same. Volumes need no
registration (a rigid transform keeps them); the check does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .io import LPS_TO_RAS, Volume

# below this `edge_match` of the registered scans, the two are not the same head or the registration failed
# (measured on renders of shared maps: the same head rendered again and turned 0.85-0.89, other heads 0.23-0.35)
MIN_MATCH = 0.55
MATCH_SCALE_MM = 2.0
MATCH_DEPTH_MM = 15.0
LEVELS_MM = (6.0, 3.0)  # voxel sizes of the two resolution levels


@dataclass
class RigidResult:
    transform: object  # SimpleITK Euler3DTransform: baseline (fixed) LPS points -> follow-up (moving) points
    match: float  # `edge_match` of the baseline and the registered follow-up
    rotation_deg: float
    translation_mm: float


def _to_sitk(volume: Volume):
    import SimpleITK as sitk

    lps = LPS_TO_RAS @ volume.affine
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(0))
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.astype(np.float32).transpose(2, 1, 0)))
    img.SetSpacing(spacing.tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    img.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    return img


def _normalised(volume: Volume) -> Volume:
    top = float(np.percentile(volume.array, 99.5)) or 1.0
    return volume.with_array(np.clip(volume.array / top, 0, 1.5).astype(np.float32))


def register_rigid(fixed: Volume, moving: Volume, seed: int = 0) -> RigidResult:
    """Rigid (6-parameter) registration of `moving` onto `fixed`: moments initialisation, Mattes mutual
    information (so another contrast or bias field is fine) at LEVELS_MM; `match` says how well the edges of
    the two then agree (`edge_match`)."""
    import SimpleITK as sitk

    f, m = _to_sitk(_normalised(fixed)), _to_sitk(_normalised(moving))
    initial = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=300,
                                                 relaxationFactor=0.7)
    reg.SetOptimizerScalesFromPhysicalShift()
    finest = float(min(fixed.spacing.min(), moving.spacing.min()))
    reg.SetShrinkFactorsPerLevel([max(1, round(mm / finest)) for mm in LEVELS_MM])
    reg.SetSmoothingSigmasPerLevel([mm / 2 for mm in LEVELS_MM])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    found = reg.Execute(f, m)
    euler = sitk.Euler3DTransform(found.GetNthTransform(0) if hasattr(found, "GetNthTransform") else found)
    match = edge_match(fixed, resample_onto(moving, fixed, euler))
    angles = np.degrees(np.abs(euler.GetParameters()[:3]))
    return RigidResult(euler, match, float(angles.max()), float(np.linalg.norm(euler.GetParameters()[3:])))


def edge_match(a: Volume, b: Volume) -> float:
    """How alike the fine structure of two scans on one grid is, inside the head (its outline ignored): the
    absolute correlation of their Laplacian of Gaussian (MATCH_SCALE_MM) over the voxels deeper than
    MATCH_DEPTH_MM in both heads. The same anatomy has its folds and edges in the same places whatever the
    contrast (its sign) or bias field; another head has them elsewhere."""
    from scipy.ndimage import binary_erosion, gaussian_laplace

    spacing = float(a.spacing.mean())
    x, y = _normalised(a).array, _normalised(b).array
    inside = binary_erosion((x > 0.1) & (y > 0.1), iterations=max(1, round(MATCH_DEPTH_MM / spacing)))
    if inside.sum() < 100:
        return 0.0
    lx, ly = (gaussian_laplace(v, MATCH_SCALE_MM / spacing)[inside] for v in (x, y))
    if lx.std() == 0 or ly.std() == 0:
        return 0.0
    return abs(float(np.corrcoef(lx, ly)[0, 1]))


def resample_onto(moving: Volume, fixed: Volume, transform, labels: bool = False) -> Volume:
    """`moving` resampled onto `fixed`'s grid through `transform` (linear; nearest for label maps)."""
    import SimpleITK as sitk

    out = sitk.Resample(_to_sitk(moving), _to_sitk(fixed), transform,
                        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear, 0.0)
    array = sitk.GetArrayFromImage(out).transpose(2, 1, 0)
    return fixed.with_array(array.astype(moving.array.dtype if labels else np.float32))
