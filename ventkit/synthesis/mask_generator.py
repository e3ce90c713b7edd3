"""Sampling whole-brain label maps for a requested ventricular volume, and exporting shippable weights."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..anatomy.grid import GRIDS
from ..io import Volume
from ..models import models_dir
from ..volumetry import ventricle_volumes_ml
from .mask_model import NULL_CONTEXT, MaskModelConfig, build_autoencoder, build_unet, encode_volume, to_label_ids
from .weights import LoadedGenerator, ddim_inferer, export_generator

MODEL_NAME = "mask_generator"


def export_weights(ae_state: dict, unet_state: dict, cfg: MaskModelConfig, scale_factor: float,
                   out_dir: str | Path, card: dict) -> Path:
    """Write fp16 weights (no optimizer state) and a model card with their sha256."""
    return export_generator(out_dir, MODEL_NAME, cfg.to_dict(), scale_factor, ae_state, unet_state, card)


@torch.no_grad()
def draw_maps(autoencoder, unet, cfg: MaskModelConfig, scale_factor: float, volume_ml: float, n: int, seed: int,
              guidance: float, steps: int, device) -> np.ndarray:
    """(n, X, Y, Z) label ids drawn in one batch by DDIM with classifier-free guidance (1: none) for
    `volume_ml`; map i starts from the noise of seed + i, so it is the map that seed alone draws."""
    scheduler, inferer = ddim_inferer(cfg, scale_factor, steps, device)
    shape = [cfg.latent_channels, *(s // 4 for s in GRIDS[cfg.grid].shape)]
    noise = torch.stack([torch.randn(shape, generator=torch.Generator(device="cpu").manual_seed(seed + i))
                         for i in range(n)]).to(device)
    context = encode_volume([volume_ml] * n, cfg).to(device)
    logits = inferer.sample(noise, autoencoder, unet, scheduler, conditioning=context, mode="crossattn",
                            verbose=False, cfg=guidance if guidance != 1 else None, cfg_fill_value=NULL_CONTEXT)
    return to_label_ids(logits)


class MaskGenerator(LoadedGenerator):
    """Volume-guided latent diffusion model drawing 33-label brain maps on its model grid."""

    def __init__(self, folder: str | Path | None = None, device: str = "auto"):
        super().__init__(folder or models_dir() / MODEL_NAME, MaskModelConfig, build_autoencoder, build_unet, device)
        self.grid = GRIDS[self.cfg.grid]

    def clamp_volume(self, volume_ml: float) -> float:
        lo, hi = self.cfg.volume_range_ml
        if not lo <= volume_ml <= hi:
            warnings.warn(f"requested {volume_ml:g} mL is outside the trained range {lo:g}-{hi:g} mL; "
                          f"clamped to {min(max(volume_ml, lo), hi):g} mL")
        return float(min(max(volume_ml, lo), hi))

    def sample(self, volume_ml: float, n: int = 1, seed: int = 0, guidance: float = 3.0,
               steps: int = 50) -> list[Volume]:
        """`n` label maps (RAS, model grid centred at the origin) for the requested volume: those of seeds
        `seed`, `seed` + 1, ... (drawn in one batch)."""
        volume_ml = self.clamp_volume(volume_ml)
        maps = draw_maps(self.autoencoder, self.unet, self.cfg, self.scale_factor, volume_ml, n, seed, guidance,
                         steps, self.device)
        affine = self.grid.affine((0, 0, 0))
        return [Volume(lab, affine, f"generated {volume_ml:g} mL seed {seed + i}") for i, lab in enumerate(maps)]

    def ventricle_ml(self, labels: Volume) -> float:
        return ventricle_volumes_ml(labels)["total"]
