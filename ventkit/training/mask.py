"""`ventkit train mask-ae` and `ventkit train mask-ldm`: the two stages of the mask generator."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..anatomy.grid import GRIDS
from ..io import Volume
from ..models import choose_device
from ..preview import save_preview
from ..synthesis.mask_model import (MaskModelConfig, build_autoencoder, build_unet, drop_context, encode_volume,
                                    one_hot, to_label_ids)
from .loop import LoopSettings, Run, train_loop
from .mask_data import MaskDataset

KL_WEIGHT = 1e-6
CONDITION_DROPOUT = 0.15


def _grid_volume(cfg: MaskModelConfig, labels: np.ndarray) -> Volume:
    return Volume(labels, GRIDS[cfg.grid].affine((0, 0, 0)))


def kl_loss(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-12) - 1)
    return kl.sum(dim=list(range(1, mu.ndim))).mean()


def train_mask_ae(data: MaskDataset, run_dir, settings: LoopSettings, cfg: MaskModelConfig = MaskModelConfig(),
                  batch_size: int = 1, lr: float = 1e-4, device: str = "auto", seed: int = 0) -> int:
    """Train the label-map autoencoder (cross-entropy + small KL) until the step or time budget."""
    device = choose_device(device)
    torch.manual_seed(seed)
    ae = build_autoencoder(cfg).to(device)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    run = Run(run_dir)
    rng = np.random.default_rng(seed)

    def step(i: int) -> dict:
        labels, _ = data.batch(rng, batch_size)
        x = torch.stack([one_hot(a) for a in labels]).to(device)
        recon, mu, sigma = ae(x)
        ce = F.cross_entropy(recon, x.argmax(1))
        loss = ce + KL_WEIGHT * kl_loss(mu, sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "ce": ce.item()}

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


def train_mask_ldm(data: MaskDataset, ae_run, run_dir, settings: LoopSettings,
                   cfg: MaskModelConfig = MaskModelConfig(), batch_size: int = 4, lr: float = 1e-4,
                   device: str = "auto", seed: int = 0) -> int:
    """Train the volume-conditioned latent diffusion model on the frozen autoencoder's latents."""
    from monai.networks.schedulers import DDPMScheduler

    device = choose_device(device)
    torch.manual_seed(seed)
    ae = load_stage(ae_run, "autoencoder", cfg, build_autoencoder).to(device)
    with torch.no_grad():  # latent posterior of every map, sampled afresh at each step
        posteriors = [ae.encode(one_hot(a)[None].to(device)) for a in data.labels]
    mu, sigma = torch.cat([p[0] for p in posteriors]), torch.cat([p[1] for p in posteriors])
    scale = float(1.0 / (mu + sigma * torch.randn_like(mu)).std())
    contexts = encode_volume(data.volumes_ml, cfg).to(device)
    unet = build_unet(cfg).to(device)
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    scheduler = DDPMScheduler(num_train_timesteps=cfg.train_timesteps, schedule="scaled_linear_beta",
                              beta_start=0.0015, beta_end=0.0195)
    gen = torch.Generator(device=device).manual_seed(seed)

    def step(i: int) -> dict:
        idx = torch.randint(len(mu), (batch_size,), generator=gen, device=device)
        z = (mu[idx] + sigma[idx] * torch.randn(mu[idx].shape, generator=gen, device=device)) * scale
        noise = torch.randn(z.shape, generator=gen, device=device)
        t = torch.randint(0, cfg.train_timesteps, (batch_size,), generator=gen, device=device)
        pred = unet(scheduler.add_noise(z, noise, t), timesteps=t,
                    context=drop_context(contexts[idx], CONDITION_DROPOUT, gen))
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return train_loop(Run(run_dir), {"unet": unet}, {"unet": opt}, step, settings,
                      {"config": cfg.to_dict(), "stage": "mask-ldm", "scale_factor": scale,
                       "autoencoder": ae.state_dict()})
