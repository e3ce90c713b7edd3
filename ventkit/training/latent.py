"""The diffusion stage shared by both generators: noise prediction on a frozen autoencoder's latents."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .loop import LoopSettings, Run, train_loop


@torch.no_grad()
def encode_posteriors(autoencoder: torch.nn.Module, inputs: list[torch.Tensor], device) -> tuple[torch.Tensor, ...]:
    """(mu, sigma) of the frozen autoencoder's latent posterior for each (1, C, ...) input, concatenated."""
    posteriors = [autoencoder.encode(x.to(device)) for x in inputs]
    return torch.cat([p[0] for p in posteriors]), torch.cat([p[1] for p in posteriors])


def train_latent_diffusion(run_dir, settings: LoopSettings, autoencoder: torch.nn.Module,
                           posteriors: tuple[torch.Tensor, torch.Tensor], unet: torch.nn.Module, predict: Callable,
                           train_timesteps: int, extra_state: dict, batch_size: int, lr: float, device: str,
                           seed: int) -> int:
    """DDPM training of `unet` on latents drawn from `posteriors` (`encode_posteriors` of the cases).

    `predict(noisy, t, idx, generator)` runs `unet` with the conditioning of cases `idx`; the latents are
    drawn afresh from each posterior at every step and scaled to unit spread (`scale_factor`).
    """
    from monai.networks.schedulers import DDPMScheduler

    mu, sigma = posteriors
    scale = float(1.0 / (mu + sigma * torch.randn_like(mu)).std())
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    scheduler = DDPMScheduler(num_train_timesteps=train_timesteps, schedule="scaled_linear_beta",
                              beta_start=0.0015, beta_end=0.0195)
    gen = torch.Generator(device=device)

    def step(i: int) -> dict:
        gen.manual_seed(seed * 1_000_003 + i)  # draws depend on the step: resumed runs go on, not repeat
        idx = torch.randint(len(mu), (batch_size,), generator=gen, device=device)
        z = (mu[idx] + sigma[idx] * torch.randn(mu[idx].shape, generator=gen, device=device)) * scale
        noise = torch.randn(z.shape, generator=gen, device=device)
        t = torch.randint(0, train_timesteps, (batch_size,), generator=gen, device=device)
        loss = F.mse_loss(predict(scheduler.add_noise(z, noise, t), t, idx, gen), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return train_loop(Run(run_dir), {"unet": unet}, {"unet": opt}, step, settings,
                      {**extra_state, "scale_factor": scale, "autoencoder": autoencoder.state_dict()})
