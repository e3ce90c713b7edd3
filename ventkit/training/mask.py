"""`ventkit train mask-ae` and `ventkit train mask-ldm`: the two stages of the mask generator."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..anatomy.grid import GRIDS
from ..io import Volume
from ..labels import mirror_labels
from ..models import choose_device
from ..preview import save_preview
from ..synthesis.mask_generator import DrawSettings, draw_maps
from ..synthesis.weights import noise_schedule
from ..synthesis.mask_model import (MaskModelConfig, build_autoencoder, build_unet, drop_context, encode_volume,
                                    one_hot, to_label_ids)
from ..volumetry import ventricle_volumes_ml
from .latent import encode_standardized, fingerprint, train_latent_diffusion
from .loop import LoopSettings, Run, train_loop
from .mask_data import MaskDataset

KL_WEIGHT = 1e-6
CONDITION_DROPOUT = 0.15
PREVIEW_ML = (30, 200)  # volumes of the diffusion model's sample previews


def _grid_volume(cfg: MaskModelConfig, labels: np.ndarray) -> Volume:
    return Volume(labels, GRIDS[cfg.grid].affine((0, 0, 0)))


def kl_loss(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-12) - 1)
    return kl.sum(dim=list(range(1, mu.ndim))).mean()


def train_mask_ae(data: MaskDataset, run_dir, settings: LoopSettings, cfg: MaskModelConfig = MaskModelConfig(),
                  batch_size: int = 1, lr: float = 5e-4, device: str = "auto", seed: int = 0) -> int:
    """Train the label-map autoencoder (cross-entropy + soft Dice + small KL) until the step or time budget.

    The Dice term weighs every label equally, so the small ones (inferior lateral ventricles, accumbens,
    vessels) are reconstructed too, not only the voxel majority that cross-entropy favours. Half the maps
    are shown as their left-right mirror image, as the diffusion stage will encode them.
    """
    from monai.losses import DiceLoss

    dice = DiceLoss(softmax=True, include_background=False, batch=True)
    device = choose_device(device)
    torch.manual_seed(seed)
    ae = build_autoencoder(cfg).to(device)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    run = Run(run_dir)
    def step(i: int) -> dict:
        rng = np.random.default_rng([seed, i])  # draws depend on the step: resumed runs go on, not repeat
        labels, _ = data.batch(rng, batch_size)
        x = torch.stack([one_hot(mirror_labels(a) if rng.random() < 0.5 else a) for a in labels]).to(device)
        recon, mu, sigma = ae(x)
        ce = F.cross_entropy(recon, x.argmax(1))
        soft_dice = dice(recon, x)
        loss = ce + soft_dice + KL_WEIGHT * kl_loss(mu, sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "ce": ce.item(), "dice": soft_dice.item()}

    def preview(i: int) -> None:
        with torch.no_grad():
            recon = ae.reconstruct(one_hot(data.labels[0])[None].to(device))
        save_preview(run.folder / f"preview_{i:06d}.png", labels=_grid_volume(cfg, to_label_ids(recon)[0]),
                     title=f"autoencoder reconstruction, step {i}")

    return train_loop(run, {"autoencoder": ae}, {"autoencoder": opt}, step, settings,
                      {"config": cfg.to_dict(), "stage": "mask-ae"}, preview)


def load_stage(run_dir, key: str, cfg: MaskModelConfig, builder):
    state = Run(run_dir).load()
    if state is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint.pt; train that stage first")
    net = builder(cfg)
    net.load_state_dict(state["modules"][key])
    return net.eval()


def decoded_volumes_ml(ae, mu: torch.Tensor, cfg: MaskModelConfig) -> torch.Tensor:
    """Total ventricle volume (mL) of each latent mean's decoded map: what the sampler will show for it."""
    with torch.no_grad():
        return torch.tensor([ventricle_volumes_ml(_grid_volume(cfg, to_label_ids(ae.decode(z[None]))[0]))["total"]
                             for z in mu])


def train_mask_ldm(data: MaskDataset, ae_run, run_dir, settings: LoopSettings,
                   cfg: MaskModelConfig = MaskModelConfig(), batch_size: int = 4, lr: float = 1e-4,
                   device: str = "auto", seed: int = 0) -> int:
    """Train the volume-conditioned latent diffusion model on the frozen autoencoder's latents.

    Every map is also learnt as its left-right mirror image (labels exchanged, same volume): twice the
    anatomies for the same corpus, and no preferred side for an asymmetric enlargement. The condition
    is the ventricle volume of the map *as the decoder draws it* from the latent, so that a decoder
    that widens or narrows the ventricles a little does not bias the volumes the sampler delivers.
    """
    device = choose_device(device)
    torch.manual_seed(seed)
    ae = load_stage(ae_run, "autoencoder", cfg, build_autoencoder).to(device)
    unet = build_unet(cfg).to(device)
    maps = [*data.labels, *(mirror_labels(a) for a in data.labels)]
    encoded = encode_standardized(run_dir, ae, (one_hot(a)[None] for a in maps), fingerprint(ae, maps), device,
                                  lambda mu: {"volumes_ml": decoded_volumes_ml(ae, mu, cfg)})
    contexts = encode_volume(encoded["volumes_ml"], cfg).to(device)

    def predict(noisy, t, idx, gen):
        return unet(noisy, timesteps=t, context=drop_context(contexts[idx], CONDITION_DROPOUT, gen))

    def preview(i: int, network) -> None:
        for volume in PREVIEW_ML:
            drawn = draw_maps(ae, network, cfg, 1.0, DrawSettings(volume, guidance=3.0, steps=25), device)
            labels = _grid_volume(cfg, drawn[0])
            save_preview(Run(run_dir).folder / f"preview_{i:06d}_{volume:g}ml.png", labels=labels,
                         title=f"sample for {volume:g} mL (guidance 3), step {i}: "
                               f"{ventricle_volumes_ml(labels)['total']:.1f} mL")

    return train_latent_diffusion(run_dir, settings, ae, encoded, unet, predict, noise_schedule(cfg),
                                  {"config": cfg.to_dict(), "stage": "mask-ldm"}, batch_size, lr, device, seed,
                                  preview)
