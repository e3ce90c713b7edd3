"""Left and right from the anatomy: side-agnostic ventricle classes -> FreeSurfer's left/right labels.

nnU-Net predicts lateral and inferior lateral ventricles without a side (so that it may train with
mirroring). The sides come from the mid-sagittal plane of the whole head: the plane across which the
scan is most nearly its own mirror image (`symmetry_plane`, searched over turns of up to 40 degrees,
then refined), checked against the ventricles: the 3rd ventricle (its largest piece, stray islands
ignored) must lie on it and the lateral ventricles on both sides of it. Where the check fails, or
without an image, the plane comes from the ventricles alone (`ventricle_plane`: through the 3rd
ventricle's slit, else through the lateral ventricles) and a `SidesWarning` says that the sides are
uncertain. Each connected component lying (90 %) on one side takes that side; a component across the
plane (left and right lateral ventricles touching at the septum) is cut along it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from ..errors import VentkitWarning
from ..labels import VENTRICLE_GROUPS

# side-agnostic class -> (left, right) FreeSurfer ids; single-sided classes -> their id
PAIRED = {1: VENTRICLE_GROUPS["lateral"], 2: VENTRICLE_GROUPS["inferior_lateral"]}
MIDLINE = {3: 14, 4: 15}
MIN_THIRD_VOXELS = 20
ONE_SIDE = 0.9
SEARCH_STEP_MM = 4.0  # voxel size at which the symmetry plane is searched
SEARCH_POINTS = 20000  # head voxels compared with their mirror images (a quarter in the coarse search)
FOCUS_RADIUS_MM = 65.0  # the brain around the ventricles that is compared with its mirror image
BIAS_SCALE_MM = 8.0  # intensity changes smoother than this are taken for bias, not anatomy
MAX_TURN_DEG = 40.0  # turns of the head about the vertical and the front-back axis that are searched
MIN_SYMMETRY = 0.3  # correlation of a head with its mirror image below which the plane is not trusted
MAX_THIRD_OFFSET_MM = 6.0  # the 3rd ventricle's centre may lie this far from the plane
MIN_LATERAL_SHARE = 0.15  # each side holds at least this share of the lateral ventricles' volume


class SidesWarning(VentkitWarning):
    """Left and right could not be placed with confidence; the report carries this warning."""


@dataclass(frozen=True)
class Plane:
    point: np.ndarray  # RAS mm
    normal: np.ndarray  # unit, pointing to the right (positive RAS x)
    source: str  # "symmetry" or "ventricles"
    symmetry: float | None = None  # correlation of the head with its mirror image across the plane

    def side(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (mm) of (N, 3) RAS points from the plane, positive on the right."""
        return (points - self.point) @ self.normal


def world(indices: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(N, 3) voxel indices -> (N, 3) RAS mm."""
    return indices @ affine[:3, :3].T + affine[:3, 3]


def _normal(yaw_deg: float, roll_deg: float) -> np.ndarray:
    a, b = np.radians(yaw_deg), np.radians(roll_deg)
    return np.array([np.cos(b) * np.cos(a), np.cos(b) * np.sin(a), np.sin(b)])


def block_mean(image: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Mean over blocks of `step` voxels (the last partial blocks dropped)."""
    n = np.array(image.shape) // step
    cropped = image[:n[0] * step[0], :n[1] * step[1], :n[2] * step[2]]
    return cropped.reshape(n[0], step[0], n[1], step[1], n[2], step[2]).mean((1, 3, 5))


def symmetry_plane(image: np.ndarray, affine: np.ndarray, focus: np.ndarray | None = None, rng_seed: int = 0) -> Plane:
    """The plane across which `image` best matches its mirror image (Pearson correlation), searched on a
    ~4 mm copy over turns up to MAX_TURN_DEG about the vertical and front-back axes. With `focus` (RAS mm,
    the ventricles' centre), only the brain around it within FOCUS_RADIUS_MM is compared: a scalp, neck
    or face is less symmetric than the brain, and a field of view may cut it unevenly."""
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    step = np.maximum(1, np.round(SEARCH_STEP_MM / spacing)).astype(int)
    small = block_mean(np.asarray(image, np.float32), step)
    small_affine = affine @ np.diag([*step, 1.0])
    small_affine[:3, 3] = world((step[None] - 1) / 2, affine)[0]  # a block's centre
    finite = np.nan_to_num(small, nan=0.0, posinf=0.0, neginf=0.0)
    top = float(np.percentile(finite, 99)) or 1.0
    small = np.clip(finite / top, 0, 1)
    inside = np.argwhere(small > 0.1)
    # compared: the structure, not the smooth bias field that makes one side of a scan brighter
    small = small - ndimage.gaussian_filter(small, BIAS_SCALE_MM / SEARCH_STEP_MM)
    if focus is not None:
        near = np.linalg.norm(world(inside, small_affine) - focus, axis=1) <= FOCUS_RADIUS_MM
        inside = inside[near] if near.sum() >= 100 else inside
    inside = inside[np.random.default_rng(rng_seed).permutation(len(inside))[:SEARCH_POINTS]]
    all_points = world(inside, small_affine)
    all_values = small[tuple(inside.T)]
    centre = (all_points * all_values[:, None]).sum(0) / max(all_values.sum(), 1e-6) if focus is None else focus
    to_voxel = np.linalg.inv(small_affine)

    def score(params, n: int = SEARCH_POINTS) -> float:
        points, values = all_points[:n], all_values[:n]
        normal = _normal(params[0], params[1])
        offset = (points - centre) @ normal - params[2]
        mirrored = points - 2 * offset[:, None] * normal
        vox = mirrored @ to_voxel[:3, :3].T + to_voxel[:3, 3]
        other = ndimage.map_coordinates(small, vox.T, order=1, cval=0.0)
        if other.std() == 0 or values.std() == 0:
            return 0.0
        return float(np.corrcoef(values, other)[0, 1])

    turns = np.arange(-MAX_TURN_DEG, MAX_TURN_DEG + 1e-6, 10.0)
    grid = [(a, b, d) for a in turns for b in turns for d in (-6.0, -3.0, 0.0, 3.0, 6.0)]
    coarse = [score(g, SEARCH_POINTS // 4) for g in grid]
    fits = [optimize.minimize(lambda p: -score(p), np.array(grid[i]), method="Nelder-Mead",
                              options={"xatol": 0.2, "fatol": 1e-4, "initial_simplex": np.array(grid[i]) + np.array(
                                  [[0, 0, 0], [5, 0, 0], [0, 5, 0], [0, 0, 2]])})
            for i in np.argsort(coarse)[-3:]]
    fit = min(fits, key=lambda f: f.fun)
    yaw, roll, shift = fit.x
    normal = _normal(yaw, roll)
    return Plane(centre + shift * normal, normal * np.sign(normal[0] or 1.0), "symmetry", -float(fit.fun))


def largest_component(mask: np.ndarray) -> np.ndarray:
    parts, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n <= 1:
        return mask
    return parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))


def ventricle_plane(classes: np.ndarray, affine: np.ndarray) -> Plane:
    """The plane through the 3rd ventricle's slit (its largest piece; its thinnest principal axis as the
    normal), else the sagittal plane (RAS x) through the centre of the lateral ventricles."""
    third = np.argwhere(largest_component(classes == 3))
    if len(third) >= MIN_THIRD_VOXELS:
        pts = world(third, affine)
        centre = pts.mean(0)
        _, vectors = np.linalg.eigh(np.cov((pts - centre).T))
        normal = vectors[:, 0]  # smallest spread: across the slit
        if abs(normal[0]) >= 0.8:  # slit-like and roughly sagittal
            return Plane(centre, normal * np.sign(normal[0]), "ventricles")
    lateral = np.argwhere(np.isin(classes, list(PAIRED)))
    centre = world(lateral, affine).mean(0) if len(lateral) else world(np.array(classes.shape)[None] / 2, affine)[0]
    return Plane(centre, np.array([1.0, 0.0, 0.0]), "ventricles")


def plane_problems(plane: Plane, classes: np.ndarray, affine: np.ndarray) -> list[str]:
    """Why `plane` cannot be the mid-sagittal plane of these ventricles (empty when it can)."""
    problems = []
    if plane.symmetry is not None and plane.symmetry < MIN_SYMMETRY:
        problems.append(f"the head is not mirror-symmetric about any plane (correlation {plane.symmetry:.2f})")
    third = np.argwhere(largest_component(classes == 3))
    if len(third) >= MIN_THIRD_VOXELS:
        offset = abs(float(plane.side(world(third, affine)).mean()))
        if offset > MAX_THIRD_OFFSET_MM:
            problems.append(f"the 3rd ventricle lies {offset:.0f} mm off the plane")
    lateral = np.argwhere(classes == 1)
    if len(lateral) >= 2 * MIN_THIRD_VOXELS:
        right = float((plane.side(world(lateral, affine)) > 0).mean())
        if min(right, 1 - right) < MIN_LATERAL_SHARE:
            problems.append(f"{100 * max(right, 1 - right):.0f} % of the lateral ventricles lie on one side")
    return problems


def midsagittal_plane(classes: np.ndarray, affine: np.ndarray, image: np.ndarray | None = None) -> Plane:
    """The head's symmetry plane when it passes the ventricle checks, else the ventricles' own plane
    (with a SidesWarning when an image was given: the sides are then uncertain)."""
    if image is None:
        return ventricle_plane(classes, affine)
    ventricles = np.argwhere(classes > 0)
    plane = symmetry_plane(image, affine, world(ventricles, affine).mean(0) if len(ventricles) else None)
    problems = plane_problems(plane, classes, affine)
    if not problems:
        return plane
    fallback = ventricle_plane(classes, affine)
    warnings.warn(SidesWarning("left and right are uncertain: " + "; ".join(problems)
                               + "; the sides were taken from the ventricles' own midline instead"), stacklevel=2)
    return fallback


def assign_sides(classes: np.ndarray, affine: np.ndarray, image: np.ndarray | None = None,
                 plane: Plane | None = None) -> np.ndarray:
    """nnU-Net classes (0 background, 1 lateral, 2 inferior lateral, 3 3rd, 4 4th) -> FreeSurfer labels.

    `image`: the scan on the same grid; its symmetry plane places the sides (see `midsagittal_plane`).
    `plane`: a mid-sagittal plane found before (the classes may then lie on another grid)."""
    labels = np.zeros(classes.shape, np.int16)
    for cls, fs in MIDLINE.items():
        labels[classes == cls] = fs
    plane = plane or midsagittal_plane(classes, affine, image)
    for cls, (left, right) in PAIRED.items():
        idx = np.argwhere(classes == cls)
        if not len(idx):
            continue
        components, n = ndimage.label(classes == cls, structure=np.ones((3, 3, 3)))
        comp = components[tuple(idx.T)]
        is_right = plane.side(world(idx, affine)) > 0
        share = np.bincount(comp, weights=is_right, minlength=n + 1) / np.maximum(np.bincount(comp, minlength=n + 1), 1)
        side = np.where(share[comp] >= ONE_SIDE, True, np.where(share[comp] <= 1 - ONE_SIDE, False, is_right))
        labels[tuple(idx.T)] = np.where(side, right, left)
    return labels
