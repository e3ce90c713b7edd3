"""Shipped generator weights: fp16 state dicts without optimizer state, a model card, checksum-verified loading."""
from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import torch

from ..io import atomic_path
from ..models import WeightsError, choose_device, verified_model, write_card

WEIGHTS_FILE = "weights.pt"


def half_precision(state: dict) -> dict:
    """A state dict with its floating-point tensors in fp16."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def export_generator(out_dir: str | Path, name: str, config: dict, scale_factor: float,
                     autoencoder: dict, unet: dict, card: dict) -> Path:
    """Write `weights.pt` (fp16 autoencoder + diffusion U-Net) and a model card with its sha256."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_FILE
    buffer = io.BytesIO()  # saved to memory first: an archive named after no temporary file, so the same
    torch.save({"config": config, "scale_factor": scale_factor,  # weights always give the same sha256
                "autoencoder": half_precision(autoencoder), "unet": half_precision(unet)}, buffer)
    with atomic_path(weights) as tmp:
        tmp.write_bytes(buffer.getvalue())
    write_card(out_dir, {"name": name, "date": date.today().isoformat(), "config": config, **card}, [WEIGHTS_FILE])
    return weights


class LoadedGenerator:
    """A generator folder, verified against its model card, with both networks built and loaded for `device`."""

    def __init__(self, folder: str | Path, config_cls, build_autoencoder, build_unet, device: str = "auto"):
        self.folder = folder = Path(folder)
        self.card = verified_model(folder)
        path = folder / WEIGHTS_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.cfg = config_cls.from_dict(state["config"])
            self.device = choose_device(device)
            self.autoencoder = build_autoencoder(self.cfg)
            self.autoencoder.load_state_dict({k: v.float() for k, v in state["autoencoder"].items()})
            self.unet = build_unet(self.cfg)
            self.unet.load_state_dict({k: v.float() for k, v in state["unet"].items()})
        except (KeyError, RuntimeError, TypeError) as exc:
            raise WeightsError(f"{path}: weights do not match this generator ({exc})") from exc
        self.autoencoder.to(self.device).eval()
        self.unet.to(self.device).eval()
        self.scale_factor = float(state["scale_factor"])

    def ddim(self, steps: int):
        """A DDIM scheduler with `steps` steps and its latent inferer (see `ddim_inferer`)."""
        return ddim_inferer(self.cfg, self.scale_factor, steps, self.device)


def noise_schedule(cfg) -> dict:
    """Arguments of MONAI's schedulers for a generator config: its training schedule and prediction type."""
    return {"num_train_timesteps": cfg.train_timesteps, "schedule": "scaled_linear_beta", "beta_start": 0.0015,
            "beta_end": 0.0195, "prediction_type": cfg.prediction_type}


def ddim_inferer(cfg, scale_factor: float, steps: int, device):
    """A DDIM scheduler with `steps` steps (the training schedule's betas) and its latent inferer."""
    from monai.inferers import LatentDiffusionInferer
    from monai.networks.schedulers import DDIMScheduler

    scheduler = DDIMScheduler(**noise_schedule(cfg), clip_sample=False)
    scheduler.set_timesteps(steps, device=device)
    return scheduler, LatentDiffusionInferer(scheduler, scale_factor=scale_factor)
