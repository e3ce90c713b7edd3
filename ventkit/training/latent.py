"""The diffusion stage shared by both generators: denoising on a frozen autoencoder's latents."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_path
from .loop import LoopSettings, Run, train_loop

EMA_DECAY = 0.998  # half-life about 350 steps: samples follow the recent weights, not one step's noise


def fingerprint(autoencoder: torch.nn.Module, arrays) -> str:
    """sha256 of an autoencoder's weights and the training arrays: what the latents of a run depend on."""
    h = hashlib.sha256()
    for tensor in autoencoder.state_dict().values():
        h.update(tensor.detach().cpu().numpy().tobytes())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@torch.no_grad()
def standardize_latents(autoencoder: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold a per-channel affine into the autoencoder's 1x1x1 latent convolutions (MONAI's
    `quant_conv_mu`, `quant_conv_log_sigma`, `post_quant_conv`): its latents become (z - mean) / std,
    what it decodes stays the same. Diffusion then starts from data of zero mean and unit spread per
    channel; with a global scale only, the model spent thousands of steps on the channel means."""
    mu_conv, log_var_conv, post = (autoencoder.quant_conv_mu.conv, autoencoder.quant_conv_log_sigma.conv,
                                   autoencoder.post_quant_conv.conv)
    per_out = (-1,) + (1,) * (mu_conv.weight.ndim - 1)
    mu_conv.weight.div_(std.view(per_out))
    mu_conv.bias.sub_(mean).div_(std)
    log_var_conv.bias.sub_(2 * torch.log(std))
    post.bias.add_(post.weight.flatten(2)[..., 0] @ mean)
    post.weight.mul_(std.view(1, -1, *per_out[2:]))


@torch.no_grad()
def encode_standardized(run_dir, autoencoder: torch.nn.Module, inputs: Iterable[torch.Tensor], key: str, device,
                        extra: Callable[[torch.Tensor], dict] | None = None) -> dict:
    """{"latents"}: the frozen autoencoder's latent means of `inputs` (each (1, C, ...), made lazily),
    standardized per channel (`standardize_latents`, folded into `autoencoder` in place), plus
    `extra(raw means)`'s tensors. The means, not draws from the posteriors: the decoder reconstructs from
    the means, and the posteriors' white noise (sigma about 0.4 of the means' spread here) only taught
    the diffusion model to draw noise. Kept in `<run>/latents.pt` under `key` (`fingerprint` of the
    autoencoder as loaded and the data), so that a resumed run does not encode its whole corpus again."""
    path = Path(run_dir) / "latents.pt"
    encoded = torch.load(path, map_location=device, weights_only=True) if path.is_file() else {}
    if encoded.get("key") != key:
        mu = torch.cat([autoencoder.encode(x.to(device))[0] for x in inputs])
        dims = [0, *range(2, mu.ndim)]
        mean, std = mu.mean(dims), mu.std(dims)
        shape = (1, -1) + (1,) * (mu.ndim - 2)
        encoded = {"key": key, "latents": (mu - mean.view(shape)) / std.view(shape), "mean": mean, "std": std,
                   **(extra(mu) if extra else {})}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(encoded, tmp)
    standardize_latents(autoencoder, encoded["mean"], encoded["std"])
    return encoded


def train_latent_diffusion(run_dir, settings: LoopSettings, autoencoder: torch.nn.Module,
                           encoded: dict, unet: torch.nn.Module, predict: Callable,
                           schedule: dict, extra_state: dict, batch_size: int, lr: float, device: str,
                           seed: int, preview: Callable[[int], None] | None = None) -> int:
    """DDPM training of `unet` on the standardized latents `encoded` (`encode_standardized`) of the cases,
    with `autoencoder` already standardized, under the MONAI scheduler arguments `schedule`
    (`noise_schedule`). With v-prediction (the default), the network's error at the noisiest steps is not
    magnified into the sample as an epsilon-prediction's is: the mask model trained on epsilon drew
    latents whose channel means drifted by a standard deviation and maps with 1 000 mL ventricles.

    `predict(noisy, t, idx, generator)` runs `unet` with the conditioning of cases `idx`; the latents
    have unit spread (so the checkpoint's `scale_factor` is 1). An exponential moving average of the
    weights (torch's `AveragedModel`, module "ema") is what previews (`preview(step, network)`) and
    exports (`diffusion_weights`) use: single-step weights of a small-batch run drift, their average
    draws steadier samples.
    """
    from monai.networks.schedulers import DDPMScheduler
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    latents = encoded["latents"]
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    ema = AveragedModel(unet, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY), use_buffers=True)
    scheduler = DDPMScheduler(**schedule)
    gen = torch.Generator(device=device)

    def step(i: int) -> dict:
        gen.manual_seed(seed * 1_000_003 + i)  # draws depend on the step: resumed runs go on, not repeat
        idx = torch.randint(len(latents), (batch_size,), generator=gen, device=device)
        z = latents[idx]
        noise = torch.randn(z.shape, generator=gen, device=device)
        t = torch.randint(0, scheduler.num_train_timesteps, (batch_size,), generator=gen, device=device)
        target = noise if scheduler.prediction_type == "epsilon" else scheduler.get_velocity(z, noise, t)
        loss = F.mse_loss(predict(scheduler.add_noise(z, noise, t), t, idx, gen), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update_parameters(unet)
        return {"loss": loss.item()}

    def preview_ema(i: int) -> None:
        ema.module.eval()
        preview(i, ema.module)

    return train_loop(Run(run_dir), {"unet": unet, "ema": ema}, {"unet": opt}, step, settings,
                      {**extra_state, "scale_factor": 1.0, "autoencoder": autoencoder.state_dict()},
                      preview_ema if preview else None)


def diffusion_weights(checkpoint: dict) -> dict:
    """The U-Net weights to sample with from a diffusion checkpoint: its moving average."""
    prefix = "module."
    return {k[len(prefix):]: v for k, v in checkpoint["modules"]["ema"].items() if k.startswith(prefix)}
