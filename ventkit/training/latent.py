"""The diffusion stage shared by both generators: noise prediction on a frozen autoencoder's latents."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_path
from .loop import LoopSettings, Run, train_loop


def fingerprint(autoencoder: torch.nn.Module, arrays) -> str:
    """sha256 of an autoencoder's weights and the training arrays: what the latents of a run depend on."""
    h = hashlib.sha256()
    for tensor in autoencoder.state_dict().values():
        h.update(tensor.detach().cpu().numpy().tobytes())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@torch.no_grad()
def encode_cached(run_dir, autoencoder: torch.nn.Module, inputs: Iterable[torch.Tensor], key: str, device,
                  extra: Callable[[torch.Tensor], dict] | None = None) -> dict:
    """{"mu", "sigma"} of the frozen autoencoder's latent posteriors of `inputs` (each (1, C, ...), made
    lazily), plus `extra(mu)`'s tensors; kept in `<run>/latents.pt` under `key` (`fingerprint`), so that a
    resumed run does not encode its whole corpus again."""
    path = Path(run_dir) / "latents.pt"
    if path.is_file():
        cached = torch.load(path, map_location=device, weights_only=True)
        if cached.get("key") == key:
            return cached
    posteriors = [autoencoder.encode(x.to(device)) for x in inputs]
    mu, sigma = torch.cat([p[0] for p in posteriors]), torch.cat([p[1] for p in posteriors])
    encoded = {"key": key, "mu": mu, "sigma": sigma, **(extra(mu) if extra else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(encoded, tmp)
    return encoded


def train_latent_diffusion(run_dir, settings: LoopSettings, autoencoder: torch.nn.Module,
                           encoded: dict, unet: torch.nn.Module, predict: Callable,
                           train_timesteps: int, extra_state: dict, batch_size: int, lr: float, device: str,
                           seed: int, preview: Callable[[int, float], None] | None = None) -> int:
    """DDPM training of `unet` on latents drawn from the posteriors `encoded` (`encode_cached`) of the cases.

    `predict(noisy, t, idx, generator)` runs `unet` with the conditioning of cases `idx`; the latents are
    drawn afresh from each posterior at every step and scaled to unit spread (`scale_factor`), which
    `preview(step, scale_factor)` receives to draw samples.
    """
    from monai.networks.schedulers import DDPMScheduler

    mu, sigma = encoded["mu"], encoded["sigma"]
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
                      {**extra_state, "scale_factor": scale, "autoencoder": autoencoder.state_dict()},
                      preview and (lambda i: preview(i, scale)))
