"""`ventkit train image-ae` and `ventkit train image-ldm`: the two stages of the image generator."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..anatomy.grid import GRIDS
from ..errors import InputError
from ..io import Volume
from ..models import choose_device
from ..preview import save_preview
from ..synthesis.image_model import ImageModelConfig, build_image_autoencoder, build_image_unet
from ..synthesis.weights import ddim_inferer, noise_schedule
from ..synthesis.mask_model import one_hot
from .latent import encode_standardized, fingerprint, train_latent_diffusion
from .loop import LoopSettings, Run, train_loop
from .mask import KL_WEIGHT, kl_loss, load_stage
from .mask_data import MaskDataset


AE_PATCH = (32, 32, 32)
# Each training image is seen under this many acquisitions (itself, then MONAI's random bias field and
# gamma): with one image per label map the diffusion model learns that a map fixes its image, and draws
# nearly the same T1 for every seed (mean pairwise correlation 0.985 after 6 565 steps).
APPEARANCE_VARIANTS = 4


def _pairs(data: MaskDataset, idx, device, crops=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (B, 1, X, Y, Z), one-hot label maps (B, 33, X, Y, Z)) of the cases `idx`, or of the
    boxes `crops` (one tuple of slices per case) cut from them."""
    crops = crops or [(slice(None),) * 3] * len(idx)
    images = torch.stack([torch.from_numpy(data.images[i][c])[None] for i, c in zip(idx, crops)]).to(device)
    return images, torch.stack([one_hot(data.labels[i][c]) for i, c in zip(idx, crops)]).to(device)


def brain_patch(labels: np.ndarray, size, rng: np.random.Generator) -> tuple[slice, ...]:
    """A box of `size` voxels centred on a random brain voxel (kept inside the map)."""
    centre = np.argwhere(labels > 0)[rng.integers((labels > 0).sum())] if (labels > 0).any() \
        else np.array(labels.shape) // 2
    start = np.clip(centre - np.array(size) // 2, 0, np.array(labels.shape) - size)
    return tuple(slice(int(a), int(a) + s) for a, s in zip(start, size))


def train_image_ae(data: MaskDataset, run_dir, settings: LoopSettings, cfg: ImageModelConfig = ImageModelConfig(),
                   batch_size: int = 2, lr: float = 3e-4, device: str = "auto", seed: int = 0,
                   patch: tuple[int, int, int] | None = AE_PATCH) -> int:
    """Train the SPADE autoencoder (L1 reconstruction + small KL) until the step or time budget, on
    brain-centred `patch`es (the networks are fully convolutional: a 32-voxel cube costs a third of a
    whole 48 x 64 x 48 map) or, with `patch=None`, on whole maps."""
    if not data.images:
        raise ValueError("the image autoencoder needs a MaskDataset read with images=True")
    device = choose_device(device)
    torch.manual_seed(seed)
    ae = build_image_autoencoder(cfg).to(device)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    run = Run(run_dir)
    def step(i: int) -> dict:
        rng = np.random.default_rng([seed, i])  # resumed runs go on, not repeat
        idx = rng.integers(len(data), size=batch_size)
        crops = [brain_patch(data.labels[i], patch, rng) for i in idx] if patch else None
        x, seg = _pairs(data, idx, device, crops)
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


def appearance_variants(images: list[np.ndarray], variants: int, seed: int = 0):
    """Each image as acquired (first round), then `variants - 1` rounds of the same images under a random
    bias field (MONAI `RandBiasField`) and gamma (`RandAdjustContrast`), rescaled to 0..1 like the data."""
    from monai.transforms import Compose, RandAdjustContrast, RandBiasField

    from ..synthesis.image_model import normalize_intensities

    augment = Compose([RandBiasField(degree=3, coeff_range=(0.0, 0.15), prob=1.0),
                       RandAdjustContrast(prob=1.0, gamma=(0.9, 1.1))])
    augment.set_random_state(seed)
    for round_ in range(variants):
        for image in images:
            yield image if round_ == 0 else normalize_intensities(np.asarray(augment(image[None]))[0])


def train_image_ldm(data: MaskDataset, ae_run, run_dir, settings: LoopSettings,
                    cfg: ImageModelConfig = ImageModelConfig(), batch_size: int = 2, lr: float = 1e-4,
                    device: str = "auto", seed: int = 0, variants: int = APPEARANCE_VARIANTS) -> int:
    """Train the SPADE latent diffusion model on the frozen autoencoder's latents of every training image
    under `variants` acquisitions (`appearance_variants`), the label map as `seg`."""
    if variants < 1:
        raise InputError("appearance variants", f"at least 1 (the images as acquired), not {variants}")
    device = choose_device(device)
    torch.manual_seed(seed)
    ae = load_stage(ae_run, "autoencoder", cfg, build_image_autoencoder).to(device)
    unet = build_image_unet(cfg).to(device)
    images = (torch.from_numpy(np.ascontiguousarray(image))[None, None]
              for image in appearance_variants(data.images, variants, seed))
    key = fingerprint(ae, data.images) + ("" if variants == 1 else f" appearance variants {variants}, seed {seed}")
    encoded = encode_standardized(run_dir, ae, images, key, device)

    def predict(noisy, t, idx, gen):  # latent i is a variant of case i % len(data)
        return unet(noisy, timesteps=t, seg=_pairs(data, (idx % len(data)).tolist(), device)[1])

    def preview(i: int, network) -> None:
        scheduler, inferer = ddim_inferer(cfg, 1.0, 25, device)
        seg = _pairs(data, [0], device)[1]
        noise = torch.randn((1, cfg.latent_channels, *(s // 4 for s in data.labels[0].shape)),
                            generator=torch.Generator().manual_seed(0)).to(device)
        with torch.no_grad():
            image = inferer.sample(noise, ae, network, scheduler, seg=seg, verbose=False)[0, 0].clamp(0, 1)
        affine = GRIDS[cfg.grid].affine((0, 0, 0))
        save_preview(Run(run_dir).folder / f"preview_{i:06d}.png", Volume(image.cpu().numpy(), affine),
                     title=f"image drawn for a training map (25 DDIM steps), step {i}")

    return train_latent_diffusion(run_dir, settings, ae, encoded, unet, predict, noise_schedule(cfg),
                                  {"config": cfg.to_dict(), "stage": "image-ldm"}, batch_size, lr, device, seed,
                                  preview)
