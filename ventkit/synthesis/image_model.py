"""The image generator's networks (MONAI SPADE models): a T1 drawn for a given 33-label map.

Autoencoder: `SPADEAutoencoderKL` (the label map modulates its decoder), one intensity channel,
downsampling x2 per level after the first (x4 with three levels, x8 with four) to a small latent. Diffusion model: `SPADEDiffusionModelUNet` in that latent space,
with the one-hot label map as SPADE's `seg` at every level (the paper's design, sized for a CPU).
Intensities are scaled to 0..1 by the 99.5th percentile of each image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..anatomy.grid import GRIDS
from .mask_model import NUM_LABELS, check_network_sizes


@dataclass(frozen=True)
class ImageModelConfig:
    """Sizes of both networks (defaults: the 3.3 mm 'mask' grid and CPU-sized channels, like the mask
    generator's).

    Args:
        spade_channels: hidden channels of each SPADE normalization; >= 1.
        The others: as `MaskModelConfig`'s (the same networks, conditioned on the label map by SPADE).
    """

    grid: str = "mask"
    ae_channels: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 3
    ae_res_blocks: int = 1
    ae_norm_groups: int = 8
    spade_channels: int = 8
    ldm_channels: tuple[int, ...] = (32, 64, 128)
    ldm_attention: tuple[bool, ...] = (False, False, True)
    ldm_res_blocks: int = 1
    ldm_head_channels: int = 32
    ldm_norm_groups: int = 16
    train_timesteps: int = 1000
    prediction_type: str = "v_prediction"

    def __post_init__(self):
        check_network_sizes(self, ("latent_channels", "ae_res_blocks", "ae_norm_groups", "spade_channels",
                                   "ldm_res_blocks", "ldm_head_channels", "ldm_norm_groups", "train_timesteps"))
        unit = self.downsampling * 2 ** (len(self.ldm_channels) - 1)
        if any(s % unit for s in GRIDS[self.grid].shape):
            raise ValueError(f"grid {self.grid} {GRIDS[self.grid].shape}: each side must be divisible by {unit} "
                             f"(x{self.downsampling} autoencoder, {len(self.ldm_channels)}-level diffusion U-Net)")

    @property
    def downsampling(self) -> int:
        """How many voxels of the image grid one latent voxel spans along each axis."""
        return 2 ** (len(self.ae_channels) - 1)

    def latent_shape(self, shape) -> tuple[int, ...]:
        return (self.latent_channels, *(s // self.downsampling for s in shape))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImageModelConfig":
        d = dict(d)
        for k in ("ae_channels", "ldm_channels", "ldm_attention"):
            d[k] = tuple(d[k])
        return cls(**d)


def build_image_autoencoder(cfg: ImageModelConfig):
    from monai.networks.nets import SPADEAutoencoderKL

    return SPADEAutoencoderKL(spatial_dims=3, label_nc=NUM_LABELS, in_channels=1, out_channels=1,
                              channels=cfg.ae_channels, latent_channels=cfg.latent_channels,
                              num_res_blocks=cfg.ae_res_blocks, norm_num_groups=cfg.ae_norm_groups,
                              attention_levels=(False,) * len(cfg.ae_channels),
                              with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False,
                              spade_intermediate_channels=cfg.spade_channels)


def build_image_unet(cfg: ImageModelConfig):
    from monai.networks.nets import SPADEDiffusionModelUNet

    return SPADEDiffusionModelUNet(spatial_dims=3, in_channels=cfg.latent_channels,
                                   out_channels=cfg.latent_channels, label_nc=NUM_LABELS,
                                   channels=cfg.ldm_channels, attention_levels=cfg.ldm_attention,
                                   num_res_blocks=cfg.ldm_res_blocks, num_head_channels=cfg.ldm_head_channels,
                                   norm_num_groups=cfg.ldm_norm_groups, spade_intermediate_channels=cfg.spade_channels)


def normalize_intensities(image: np.ndarray) -> np.ndarray:
    """Scale to 0..1 by the 99.5th percentile of the non-zero voxels."""
    nonzero = image[image > 0]
    top = float(np.percentile(nonzero, 99.5)) if nonzero.size else 1.0
    return np.clip(image / max(top, 1e-6), 0.0, 1.0).astype(np.float32)
