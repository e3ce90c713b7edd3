"""`ventkit train image-ae` and `ventkit train image-ldm`: the two stages of the image generator."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..anatomy.grid import GRIDS
from ..io import Volume
from ..models import choose_device
from ..preview import save_preview
from ..synthesis.image_model import ImageModelConfig, build_image_autoencoder, build_image_unet
from ..synthesis.weights import noise_schedule
from ..synthesis.mask_model import one_hot
from .latent import encode_standardized, fingerprint, train_latent_diffusion
from .loop import LoopSettings, Run, train_loop
from .mask import KL_WEIGHT, kl_loss, load_stage
from .mask_data import MaskDataset


def _pairs(data: MaskDataset, idx, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (B, 1, X, Y, Z), one-hot label maps (B, 33, X, Y, Z)) of the cases `idx`."""
    images = torch.stack([torch.from_numpy(data.images[i])[None] for i in idx]).to(device)
    return images, torch.stack([one_hot(data.labels[i]) for i in idx]).to(device)


def train_image_ae(data: MaskDataset, run_dir, settings: LoopSettings, cfg: ImageModelConfig = ImageModelConfig(),
                   batch_size: int = 1, lr: float = 1e-4, device: str = "auto", seed: int = 0) -> int:
    """Train the SPADE autoencoder (L1 reconstruction + small KL) until the step or time budget."""
    if not data.images:
        raise ValueError("the image autoencoder needs a MaskDataset read with images=True")
    device = choose_device(device)
    torch.manual_seed(seed)
    ae = build_image_autoencoder(cfg).to(device)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    run = Run(run_dir)
    def step(i: int) -> dict:
        rng = np.random.default_rng([seed, i])  # resumed runs go on, not repeat
        x, seg = _pairs(data, rng.integers(len(data), size=batch_size), device)
        recon, mu, sigma = ae(x, seg)
        l1 = F.l1_loss(recon, x)
        loss = l1 + KL_WEIGHT * kl_loss(mu, sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "l1": l1.item()}

    def preview(i: int) -> None:
        x, seg = _pairs(data, [0], device)
        with torch.no_grad():
            recon = ae.reconstruct(x, seg)[0, 0].cpu().numpy()
        affine = GRIDS[cfg.grid].affine((0, 0, 0))
        save_preview(run.folder / f"preview_{i:06d}.png", Volume(recon, affine), Volume(data.labels[0], affine),
                     title=f"image autoencoder reconstruction, step {i}")

    return train_loop(run, {"autoencoder": ae}, {"autoencoder": opt}, step, settings,
                      {"config": cfg.to_dict(), "stage": "image-ae"}, preview)


def train_image_ldm(data: MaskDataset, ae_run, run_dir, settings: LoopSettings,
                    cfg: ImageModelConfig = ImageModelConfig(), batch_size: int = 2, lr: float = 1e-4,
                    device: str = "auto", seed: int = 0) -> int:
    """Train the SPADE latent diffusion model on the frozen autoencoder's latents, the label map as `seg`."""
    device = choose_device(device)
    torch.manual_seed(seed)
    ae = load_stage(ae_run, "autoencoder", cfg, build_image_autoencoder).to(device)
    unet = build_image_unet(cfg).to(device)
    encoded = encode_standardized(run_dir, ae, (torch.from_numpy(image)[None, None] for image in data.images),
                                  fingerprint(ae, data.images), device)

    def predict(noisy, t, idx, gen):
        return unet(noisy, timesteps=t, seg=_pairs(data, idx.tolist(), device)[1])

    return train_latent_diffusion(run_dir, settings, ae, encoded, unet, predict, noise_schedule(cfg),
                                  {"config": cfg.to_dict(), "stage": "image-ldm"}, batch_size, lr, device, seed)
