"""SynthSeg-style rendering of an MRI from a generation label map.

Each label draws a Gaussian intensity (mean and standard deviation themselves drawn from priors),
then partial-volume blur, a slice thickness along a random axis, a multiplicative bias field and
noise are applied, and intensities are scaled to [0, 1].

T1 priors: SynthSeg's `prior_means_t1.npy` is indexed by its contrast-specific tissue classes, a file
that is not among the shared priors, so ventkit keeps its own T1 tissue table below (typical
MPRAGE intensities on SynthSeg's 0-255 scale). Randomized contrast follows SynthSeg's default:
uniform means and standard deviations per class of `generation_classes.npy` (or per label).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, zoom

# tissue -> (mean of mean, std of mean, mean of std, std of std), 0-255 scale
T1_TISSUES: dict[str, tuple[float, float, float, float]] = {
    "background": (5, 3, 3, 1),
    "white_matter": (110, 8, 6, 2),
    "cortex": (75, 8, 7, 2),
    "csf": (30, 8, 5, 2),
    "choroid": (55, 8, 6, 2),
    "cerebellum_wm": (105, 8, 6, 2),
    "cerebellum_cortex": (72, 8, 7, 2),
    "thalamus": (95, 8, 6, 2),
    "caudate": (80, 8, 6, 2),
    "putamen": (85, 8, 6, 2),
    "pallidum": (100, 8, 6, 2),
    "hippocampus": (72, 8, 7, 2),
    "amygdala": (74, 8, 7, 2),
    "accumbens": (78, 8, 6, 2),
    "ventral_dc": (98, 8, 6, 2),
    "brainstem": (100, 8, 6, 2),
    "lesion": (70, 15, 8, 3),
    "vessel": (50, 20, 10, 3),
    "optic": (100, 10, 6, 2),
    "extra_cerebral": (90, 45, 10, 4),  # skull, scalp, muscle, eyes...: wide on purpose
}
TISSUE_OF_LABEL: dict[int, str] = {
    0: "background", 2: "white_matter", 41: "white_matter", 3: "cortex", 42: "cortex",
    4: "csf", 5: "csf", 14: "csf", 15: "csf", 24: "csf", 43: "csf", 44: "csf", 72: "csf",
    136: "choroid", 137: "choroid", 163: "choroid", 164: "choroid", 31: "choroid", 63: "choroid",
    7: "cerebellum_wm", 46: "cerebellum_wm", 8: "cerebellum_cortex", 47: "cerebellum_cortex",
    10: "thalamus", 49: "thalamus", 11: "caudate", 50: "caudate", 12: "putamen", 51: "putamen",
    13: "pallidum", 52: "pallidum", 17: "hippocampus", 53: "hippocampus", 18: "amygdala",
    54: "amygdala", 26: "accumbens", 58: "accumbens", 28: "ventral_dc", 60: "ventral_dc",
    16: "brainstem", 25: "lesion", 57: "lesion", 30: "vessel", 62: "vessel", 85: "optic",
    # FreeSurfer aseg extras (users' own maps)
    251: "white_matter", 252: "white_matter", 253: "white_matter", 254: "white_matter", 255: "white_matter",
    77: "lesion", 78: "lesion", 79: "lesion", 80: "lesion", 81: "lesion", 82: "lesion",
}


HEAD_TEXTURE_LATTICE = 10  # control points per axis of the head-texture field (~2 cm apart in a head)


RENDER_CONTRASTS = ("t1", "random", "real")


@dataclass(frozen=True)
class RenderSpec:
    """Ranges of the random acquisition that `render` and `acquire` draw from.

    Args:
        contrast: "t1" (ventkit's T1 tissue table), "random" (SynthSeg's randomized contrast) or "real"
            (`acquire` only: the image is the subject's own).
        thickness_mm: (lo, hi) slice thickness drawn uniformly, mm; 0 < lo <= hi.
        bias_std: standard deviation of the log bias field; >= 0.
        noise_std: (lo, hi) noise standard deviation drawn uniformly, on the 0..1 scale; 0 <= lo <= hi.
        blur_voxels: partial-volume Gaussian blur, voxels; >= 0.
        gamma_std: standard deviation of the log gamma exponent; >= 0.
        head_texture: standard deviation of a smooth log-normal field multiplying the extra-cerebral labels
            (skull, scalp, neck, face), so that a coarse label such as "head soft tissue" holds darker and
            brighter regions as a real head does; 0 (off) or more.
    """

    contrast: str = "t1"
    thickness_mm: tuple[float, float] = (1.0, 6.0)
    bias_std: float = 0.3
    noise_std: tuple[float, float] = (0.0, 0.04)
    blur_voxels: float = 0.5
    gamma_std: float = 0.1
    head_texture: float = 0.0

    def __post_init__(self):
        if self.contrast not in RENDER_CONTRASTS:
            raise ValueError(f"unknown contrast '{self.contrast}' (use {', '.join(RENDER_CONTRASTS)})")
        _check_range("thickness_mm", self.thickness_mm, positive=True)
        _check_range("noise_std", self.noise_std, positive=False)
        for name in ("bias_std", "blur_voxels", "gamma_std", "head_texture"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _check_range(name: str, value, positive: bool) -> None:
    """Raise ValueError unless `value` is a finite (lo, hi) with 0 < lo <= hi (or 0 <= lo when not `positive`)."""
    try:
        lo, hi = (float(v) for v in value)
        ok = np.isfinite([lo, hi]).all() and (lo > 0 if positive else lo >= 0) and lo <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be (lo, hi) with {'0 <' if positive else '0 <='} lo <= hi, got {value!r}")


def _draw(rng, mean_mean, mean_std, std_mean, std_std):
    return max(rng.normal(mean_mean, mean_std), 0.0), max(rng.normal(std_mean, std_std), 0.5)


def draw_label_intensities(labels: np.ndarray, rng: np.random.Generator, contrast: str,
                           generation_classes: dict[int, int] | None = None) -> dict[int, tuple[float, float]]:
    """Mean and standard deviation of each label present, drawn for one image."""
    present = [int(v) for v in np.unique(labels)]
    out: dict[int, tuple[float, float]] = {}
    if contrast == "t1":
        tissue = {name: _draw(rng, *p) for name, p in T1_TISSUES.items()}
        for v in present:
            name = TISSUE_OF_LABEL.get(v, "extra_cerebral")
            # extra-cerebral labels each get their own draw; brain tissues share one per tissue
            out[v] = _draw(rng, *T1_TISSUES[name]) if name == "extra_cerebral" else tissue[name]
    elif contrast == "random":
        classes = generation_classes or {}
        per_class: dict[int, tuple[float, float]] = {}
        for v in present:
            c = classes.get(v, 1000 + v)
            if c not in per_class:
                per_class[c] = (rng.uniform(0, 255), rng.uniform(0, 35))
            out[v] = per_class[c]
    else:
        raise ValueError(f"unknown contrast '{contrast}' (use 't1' or 'random')")
    return out


def load_generation_classes(priors_dir: str | Path | None) -> dict[int, int] | None:
    """SynthSeg's label -> class grouping (`generation_labels.npy`, `generation_classes.npy`)."""
    if priors_dir is None:
        return None
    d = Path(priors_dir)
    labels, classes = np.load(d / "generation_labels.npy"), np.load(d / "generation_classes.npy")
    return {int(a): int(b) for a, b in zip(labels, classes)}


def smooth_random_field(shape, rng, std, lattice=4):
    coarse = rng.normal(0, std, (lattice,) * 3).astype(np.float32)
    return zoom(coarse, [s / lattice for s in shape], order=3, mode="nearest")[: shape[0], : shape[1], : shape[2]]


def render(labels: np.ndarray, spacing, rng: np.random.Generator, spec: RenderSpec = RenderSpec(),
           generation_classes: dict[int, int] | None = None) -> tuple[np.ndarray, dict]:
    """Render one image (float32 in [0, 1]) for a generation label map; returns it and its parameters."""
    spacing = np.asarray(spacing, float)
    stats = draw_label_intensities(labels, rng, spec.contrast, generation_classes)
    values = np.array(sorted(stats))
    lut_idx = np.searchsorted(values, labels)
    means = np.array([stats[v][0] for v in values], np.float32)[lut_idx]
    stds = np.array([stats[v][1] for v in values], np.float32)[lut_idx]
    if spec.head_texture > 0:
        extra = ~np.isin(labels, list(TISSUE_OF_LABEL))  # what draw_label_intensities calls extra-cerebral
        field = np.exp(smooth_random_field(labels.shape, rng, spec.head_texture, lattice=HEAD_TEXTURE_LATTICE))
        means = np.where(extra, means * field, means)
    img = means + stds * rng.standard_normal(labels.shape, dtype=np.float32)
    img, params = acquire(gaussian_filter(img, spec.blur_voxels), spacing, rng, spec)
    return img, {"contrast": spec.contrast, **params, **({"head_texture": spec.head_texture} if spec.head_texture else {})}


def acquire(img: np.ndarray, spacing, rng: np.random.Generator, spec: RenderSpec = RenderSpec()) -> tuple[np.ndarray, dict]:
    """The acquisition half of `render` for any tissue image: slice thickness, bias, gamma, noise; [0, 1]."""
    spacing = np.asarray(spacing, float)
    axis = int(rng.integers(3))
    thickness = float(rng.uniform(*spec.thickness_mm))
    if thickness > spacing[axis] * 1.2:
        sigma = [0.0, 0.0, 0.0]
        sigma[axis] = thickness / spacing[axis] / 2.355  # slice profile, FWHM = thickness
        img = gaussian_filter(img, sigma)
        factor = [1.0, 1.0, 1.0]
        factor[axis] = spacing[axis] / thickness
        low = zoom(img, factor, order=1)
        img = zoom(low, [s / l for s, l in zip(img.shape, low.shape)], order=1)
    bias = np.exp(smooth_random_field(img.shape, rng, spec.bias_std)).astype(np.float32)
    img = np.clip(img, 0, None) * bias
    scale = float(np.percentile(img, 99.5)) or 1.0
    img = np.clip(img / scale, 0, 1)
    img = img ** float(np.exp(rng.normal(0, spec.gamma_std)))
    noise = float(rng.uniform(*spec.noise_std))
    img = np.clip(img + noise * rng.standard_normal(img.shape, dtype=np.float32), 0, 1)
    return img.astype(np.float32), {"slice_axis": axis, "thickness_mm": round(thickness, 2), "noise": round(noise, 4)}
