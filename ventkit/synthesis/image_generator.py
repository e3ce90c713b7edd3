"""Drawing a T1 image for a 33-label map with the SPADE latent diffusion model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..anatomy.corpus import brain_center
from ..anatomy.grid import GRIDS, sample_image, sample_labels
from ..io import Volume, reorient_to_ras, validate
from ..labels import to_segmentation
from ..paths import models_dir
from .image_model import ImageModelConfig, build_image_autoencoder, build_image_unet
from .mask_model import one_hot
from .weights import LoadedGenerator, export_generator

MODEL_NAME = "image_generator"


def export_image_weights(ae_state: dict, unet_state: dict, cfg: ImageModelConfig, scale_factor: float,
                         out_dir: str | Path, card: dict) -> Path:
    """Write fp16 weights (no optimizer state) and a model card with their sha256."""
    return export_generator(out_dir, MODEL_NAME, cfg.to_dict(), scale_factor, ae_state, unet_state, card)


class ImageGenerator(LoadedGenerator):
    """SPADE latent diffusion model: label map in, T1 (intensities 0..1) out on the label map's own grid."""

    def __init__(self, folder: str | Path | None = None, device: str = "auto"):
        super().__init__(folder or models_dir() / MODEL_NAME, ImageModelConfig, build_image_autoencoder,
                         build_image_unet, device)
        self.grid = GRIDS[self.cfg.grid]

    @torch.no_grad()
    def sample(self, labels: Volume, seed: int = 0, steps: int = 50) -> Volume:
        """A T1 for `labels` (any grid and orientation): drawn on the model grid around the brain, then
        resampled onto the label map's grid and affine; a map already on the model grid (its shape and
        voxel size, RAS) is drawn on in place."""
        labels = validate(labels, labels=True)  # dimensionality, NaN, spacing, unknown label values
        ras = reorient_to_ras(labels)
        if ras.array.shape == self.grid.shape and np.allclose(ras.affine[:3, :3], np.diag(self.grid.spacing)):
            model_affine = ras.affine
        else:
            model_affine = self.grid.affine(brain_center(ras))
        on_grid = to_segmentation(sample_labels(ras, model_affine, self.grid.shape))
        scheduler, inferer = self.ddim(steps)
        shape = [1, *self.cfg.latent_shape(self.grid.shape)]
        noise = torch.randn(shape, generator=torch.Generator(device="cpu").manual_seed(seed)).to(self.device)
        seg = one_hot(on_grid)[None].to(self.device)
        image = inferer.sample(noise, self.autoencoder, self.unet, scheduler, seg=seg, verbose=False)
        image = image[0, 0].clamp(0, 1).cpu().numpy().astype(np.float32)
        out = sample_image(Volume(image, model_affine), labels.affine, labels.array.shape)
        return Volume(out, labels.affine, f"generated T1 for {labels.source}, seed {seed}")
