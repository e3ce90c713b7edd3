"""How real a T1 looks: measures that compare generated or rendered T1s with real ones.

Every image is judged as a viewer sees it: resampled (linearly, with its 33-label map by nearest
neighbour) onto one 1 mm grid around its brain (`MeasureImage`), intensities divided by the median of its
white matter. On that grid:
- `brain_intensities`: the normalized intensities of the brain voxels (their Wasserstein distance between
  two images says how alike the tissue contrasts are);
- `boundary_sharpness`: the mean gradient magnitude (per mm) on the white/grey-matter border: a blurred or
  coarse image has soft borders;
- `spectrum_slope`: the slope of log power against log spatial frequency over wavelengths of 2-10 mm,
  averaged over cubes that lie inside the brain: texture and detail at the scale of a few millimetres;
- `patch_auc`: a small 3-D CNN trained to tell real brain patches from others, scored (ROC AUC) on the
  patches of images it never saw; 0.5 means indistinguishable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.stats import mannwhitneyu

from .anatomy.corpus import brain_center
from .anatomy.grid import Grid, sample_image, sample_labels
from .io import Volume, reorient_to_ras
from .labels import to_segmentation

MEASURE_GRID = Grid((144, 176, 144), (1.0, 1.0, 1.0))
WHITE, CORTEX = (2, 41), (3, 42)
CUBE = 32  # edge (voxels = mm) of the cubes the spectrum and the patch classifier see
WAVELENGTHS_MM = (2.0, 10.0)


@dataclass
class MeasureImage:
    """A T1 and its 33-label map on `MEASURE_GRID`, the T1 divided by its white-matter median."""

    name: str
    image: np.ndarray
    labels: np.ndarray

    @classmethod
    def from_volumes(cls, name: str, image: Volume, labels: Volume) -> "MeasureImage":
        image, labels = reorient_to_ras(image), reorient_to_ras(labels)
        affine = MEASURE_GRID.affine(brain_center(labels))
        seg = to_segmentation(sample_labels(labels, affine, MEASURE_GRID.shape, antialias=False))
        values = sample_image(image, affine, MEASURE_GRID.shape)
        white = np.isin(seg, WHITE)
        if white.sum() < 1000:
            raise ValueError(f"{name}: too little white matter on the measure grid to normalize by")
        return cls(name, values / float(np.median(values[white])), seg)

    @property
    def brain(self) -> np.ndarray:
        return self.labels > 0


def brain_intensities(m: MeasureImage) -> np.ndarray:
    return m.image[m.brain]


def boundary_sharpness(m: MeasureImage) -> float:
    """Mean gradient magnitude (normalized intensity per mm) on voxels where white matter meets cortex."""
    white, cortex = np.isin(m.labels, WHITE), np.isin(m.labels, CORTEX)
    border = (white & ndimage.binary_dilation(cortex)) | (cortex & ndimage.binary_dilation(white))
    gradient = np.sqrt(sum(g ** 2 for g in np.gradient(m.image.astype(np.float64))))
    return float(gradient[border].mean())


def inner_cubes(m: MeasureImage, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to `n` cubes of `CUBE` mm lying wholly inside the brain, at random."""
    inside = ndimage.minimum_filter(m.brain.astype(np.uint8), size=CUBE, mode="constant") > 0
    centres = np.argwhere(inside)
    if len(centres) == 0:
        raise ValueError(f"{m.name}: no {CUBE} mm cube lies inside the brain")
    picked = centres[rng.choice(len(centres), size=min(n, len(centres)), replace=False)]
    lo = picked - CUBE // 2
    return [m.image[a:a + CUBE, b:b + CUBE, c:c + CUBE] for a, b, c in lo]


def radial_spectrum(cubes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean power of Hann-windowed cubes per radial frequency bin (cycles per mm)."""
    window = np.einsum("i,j,k->ijk", *(np.hanning(CUBE),) * 3)
    freq = np.fft.fftfreq(CUBE)
    radius = np.sqrt(sum(f ** 2 for f in np.meshgrid(freq, freq, freq, indexing="ij")))
    bins = np.arange(1, CUBE // 2 + 1) / CUBE
    which = np.digitize(radius, np.append(bins, bins[-1] + 1 / CUBE) - 0.5 / CUBE)  # beyond Nyquist: dropped
    power = np.mean([np.abs(np.fft.fftn((c - c.mean()) * window)) ** 2 for c in cubes], axis=0)
    mean = np.array([power[which == k].mean() for k in range(1, len(bins) + 1)])
    return bins, mean


def spectrum_slope(m: MeasureImage, cubes: int = 24, seed: int = 0) -> float:
    """Slope of log power over log frequency for wavelengths of 2-10 mm (steeper: less fine detail)."""
    freq, power = radial_spectrum(inner_cubes(m, cubes, np.random.default_rng(seed)))
    keep = (freq >= 1 / WAVELENGTHS_MM[1]) & (freq <= 1 / WAVELENGTHS_MM[0]) & (power > 0)
    return float(np.polyfit(np.log(freq[keep]), np.log(power[keep]), 1)[0])


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC of scores: the chance that a positive outscores a negative (Mann-Whitney U)."""
    return float(mannwhitneyu(positive, negative).statistic / (len(positive) * len(negative)))


def _patches(images: list[MeasureImage], per_image: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([c for m in images for c in inner_cubes(m, per_image, rng)])[:, None].astype(np.float32)


def patch_auc(real_train: list[MeasureImage], other_train: list[MeasureImage], real_test: list[MeasureImage],
              other_test: list[MeasureImage], steps: int = 400, per_image: int = 64, seed: int = 0) -> float:
    """Train a small 3-D CNN to tell real patches (label 1) from the others on the training images, and
    return its ROC AUC on patches of the test images (0.5: it cannot tell them apart)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool3d(2),
        nn.Conv3d(8, 16, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool3d(2),
        nn.Conv3d(16, 32, 3, padding=1), nn.LeakyReLU(0.1), nn.AdaptiveAvgPool3d(1),
        nn.Flatten(), nn.Linear(32, 1))
    real, other = (torch.from_numpy(_patches(x, per_image, seed)) for x in (real_train, other_train))
    data = torch.cat([real, other])
    target = torch.cat([torch.ones(len(real)), torch.zeros(len(other))])
    weight = torch.where(target > 0, len(other) / len(real), 1.0)  # both classes count alike
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = torch.from_numpy(rng.choice(len(data), 32))
        flips = [d for d in (2, 3, 4) if rng.random() < 0.5]
        x = data[batch].flip(flips) if flips else data[batch]
        loss = nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), target[batch], weight[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        score = [net(torch.from_numpy(_patches(x, per_image, seed + 1))).squeeze(1).numpy() for x in (real_test, other_test)]
    return auc(*score)
