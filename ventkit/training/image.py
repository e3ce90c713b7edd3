"""`ventkit train image-ae`, `image-ldm` and `image-decoder`: the stages of the image generator."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..anatomy.grid import GRIDS
from ..errors import InputError, VentkitError
from ..io import Volume
from ..models import choose_device, verified_model
from ..preview import save_preview
from ..synthesis.image_model import ImageModelConfig, build_image_autoencoder, build_image_unet
from ..synthesis.weights import WEIGHTS_FILE, ddim_inferer, noise_schedule
from ..synthesis.mask_model import one_hot
from .latent import diffusion_weights, encode_standardized, fingerprint, train_latent_diffusion
from .loop import LoopSettings, Run, train_loop
from .mask import KL_WEIGHT, kl_loss, load_stage
from .mask_data import MaskDataset


AE_PATCH = (32, 32, 32)
# Each training image is seen under this many acquisitions (itself, then MONAI's random bias field and
# gamma): with one image per label map the diffusion model learns that a map fixes its image, and draws
# nearly the same T1 for every seed (mean pairwise correlation 0.985 after 6 565 steps).
APPEARANCE_VARIANTS = 4
DECODER_KEYS = ("decoder.", "post_quant_conv.")  # what `train_image_decoder` tunes
DECODER_LATENT_NOISE = 0.5  # its latents' largest noise SD (unit-SD latents)


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


def run_image_config(run_dir, requested: ImageModelConfig | None = None) -> ImageModelConfig:
    """The image-generator config a run was started with (its checkpoint's), else `requested` (default
    sizes if None) for a new run; a resumed run asked for other sizes is refused."""
    state = Run(run_dir).load()
    if state is None:
        return requested or ImageModelConfig()
    cfg = ImageModelConfig.from_dict(state["config"])
    if requested is not None and requested != cfg:
        raise InputError(run_dir, f"was started with grid {cfg.grid} and autoencoder channels {cfg.ae_channels}; "
                                  "resume it with those, or start another run folder")
    return cfg


def train_image_ae(data: MaskDataset, run_dir, settings: LoopSettings, cfg: ImageModelConfig = ImageModelConfig(),
                   batch_size: int = 2, lr: float = 3e-4, device: str = "auto", seed: int = 0,
                   patch: tuple[int, int, int] | None = AE_PATCH, spectral_weight: float | None = None) -> int:
    """Train the SPADE autoencoder (L1 reconstruction + small KL, and with `spectral_weight` MONAI's
    `JukeboxLoss`: the FFT magnitudes of each patch matched, so that the reconstruction keeps the input's
    texture and noise power, not only its mean) until the step or time budget, on brain-centred `patch`es
    (the networks are fully convolutional: a 32-voxel cube costs a third of a whole 48 x 64 x 48 map) or,
    with `patch=None`, on whole maps. The weight is kept in the checkpoint: None goes on with the run's
    (0 for a new run), a number sets it from here on."""
    from monai.losses import JukeboxLoss

    if not data.images:
        raise ValueError("the image autoencoder needs a MaskDataset read with images=True")
    run = Run(run_dir)
    if spectral_weight is None:
        spectral_weight = float((run.load() or {}).get("spectral_weight", 0.0))
    if not (np.isfinite(spectral_weight) and spectral_weight >= 0):
        raise InputError("spectral weight", f"a finite number >= 0, not {spectral_weight}")
    spectral = JukeboxLoss(spatial_dims=3)
    device = choose_device(device)
    torch.manual_seed(seed)
    ae = build_image_autoencoder(cfg).to(device)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    def step(i: int) -> dict:
        rng = np.random.default_rng([seed, i])  # resumed runs go on, not repeat
        idx = rng.integers(len(data), size=batch_size)
        crops = [brain_patch(data.labels[i], patch, rng) for i in idx] if patch else None
        x, seg = _pairs(data, idx, device, crops)
        recon, mu, sigma = ae(x, seg)
        l1 = F.l1_loss(recon, x)
        loss = l1 + KL_WEIGHT * kl_loss(mu, sigma)
        logged = {"l1": l1.item()}
        if spectral_weight:
            spectrum = spectral(recon, x)
            loss = loss + spectral_weight * spectrum
            logged["spectral"] = spectrum.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), **logged}

    def preview(i: int) -> None:
        x, seg = _pairs(data, [0], device)
        with torch.no_grad():
            recon = ae.reconstruct(x, seg)[0, 0].cpu().numpy()
        affine = GRIDS[cfg.grid].affine((0, 0, 0))
        save_preview(run.folder / f"preview_{i:06d}.png", Volume(recon, affine), Volume(data.labels[0], affine),
                     title=f"image autoencoder reconstruction, step {i}")

    return train_loop(run, {"autoencoder": ae}, {"autoencoder": opt}, step, settings,
                      {"config": cfg.to_dict(), "stage": "image-ae", "spectral_weight": spectral_weight}, preview)


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


def image_base(source) -> dict:
    """The trained image generator whose decoder `train_image_decoder` tunes: a diffusion run folder
    (`checkpoint.pt` of `train image-ldm`) or a shipped generator folder (`weights.pt`, checksum-verified),
    as {"config", "scale_factor", "autoencoder", "unet", "training"} (`training`: what the card says of it)."""
    source = Path(source)
    if (source / WEIGHTS_FILE).is_file():
        card = verified_model(source)
        state = torch.load(source / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        return {**state, "training": card.get("training", {})}
    state = Run(source).load() if source.is_dir() else None
    if state is None or state.get("stage") != "image-ldm":
        raise VentkitError(f"{source}: neither a generator folder (weights.pt) nor a run of `train image-ldm`")
    return {"config": state["config"], "scale_factor": state["scale_factor"], "autoencoder": state["autoencoder"],
            "unet": diffusion_weights(state),
            "training": {"diffusion_steps": state["step"], "final_losses": {"diffusion": Run(source).recent_losses()}}}


def train_image_decoder(data: MaskDataset, base, run_dir, settings: LoopSettings, batch_size: int = 1,
                        lr: float = 1e-4, device: str = "auto", seed: int = 0,
                        variants: int = APPEARANCE_VARIANTS, latent_noise: float = DECODER_LATENT_NOISE) -> int:
    """Fine-tune only the decoder of a trained generator's (standardized) autoencoder (`image_base`) on
    whole maps under `variants` acquisitions: the encoder is frozen, so the latents, and the diffusion
    model trained on them, stay valid while decoding sharpens (reconstruction from patch training blurred
    the tissue contrast: bench/image_stages.py). `latent_noise` > 0 adds Gaussian noise of SD drawn
    uniformly from 0..`latent_noise` to each latent (unit-SD units), so that the decoder learns to take
    tissue contrast from the label map where a drawn latent is off."""
    state = image_base(base)
    device = choose_device(device)
    torch.manual_seed(seed)
    cfg = ImageModelConfig.from_dict(state["config"])
    ae = build_image_autoencoder(cfg).to(device)
    ae.load_state_dict({k: v.float() for k, v in state["autoencoder"].items()})
    images = [torch.from_numpy(np.ascontiguousarray(im))[None]
              for im in appearance_variants(data.images, variants, seed)]
    with torch.no_grad():
        latents = torch.cat([ae.eval().encode(x[None].to(device))[0] for x in images])
    ae.requires_grad_(False)
    trained = [p for k, p in ae.named_parameters() if k.startswith(DECODER_KEYS)]
    for p in trained:
        p.requires_grad_(True)
    opt = torch.optim.Adam(trained, lr=lr)
    run = Run(run_dir)

    def step(i: int) -> dict:
        rng = np.random.default_rng([seed, i])
        idx = rng.integers(len(images), size=batch_size)
        x = torch.stack([images[j] for j in idx]).to(device)
        sd = torch.from_numpy(rng.uniform(0, latent_noise, batch_size)).float().view(-1, 1, 1, 1, 1).to(device)
        z = latents[idx] + sd * torch.randn_like(latents[idx])
        recon = ae.decode(z, _pairs(data, (idx % len(data)).tolist(), device)[1])
        l1 = F.l1_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        l1.backward()
        opt.step()
        return {"l1": l1.item()}

    def preview(i: int) -> None:
        with torch.no_grad():
            recon = ae.decode(latents[:1], _pairs(data, [0], device)[1])[0, 0].cpu().numpy()
        affine = GRIDS[cfg.grid].affine((0, 0, 0))
        save_preview(run.folder / f"preview_{i:06d}.png", Volume(recon, affine), Volume(data.labels[0], affine),
                     title=f"fine-tuned decoder's reconstruction, step {i}")

    return train_loop(run, {"autoencoder": ae}, {"decoder": opt}, step, settings,
                      {"config": cfg.to_dict(), "stage": "image-decoder", "base": str(Path(base).resolve()),
                       "latent_noise": latent_noise}, preview)


def with_tuned_decoder(base: dict, decoder: dict | None) -> dict:
    """The autoencoder weights of generator `base` (`image_base`) with the decoder of checkpoint `decoder`
    (`train_image_decoder`); refuses a decoder tuned on another autoencoder's latents."""
    if decoder is None or decoder.get("stage") != "image-decoder":
        raise VentkitError("--decoder-run needs a checkpoint.pt of `ventkit train image-decoder`")
    tuned = decoder["modules"]["autoencoder"]
    frozen = [k for k in base["autoencoder"] if not k.startswith(DECODER_KEYS)]
    # equal up to fp16 rounding (a shipped base, or `train slim` halving a checkpoint brought from a GPU)
    if any(not torch.allclose(tuned[k].float(), base["autoencoder"][k].float(), rtol=1e-3, atol=1e-5) for k in frozen):
        raise VentkitError(f"the decoder was tuned on another autoencoder ({decoder['base']}): its latents "
                           "are not the ones this diffusion model draws")
    return tuned


def train_image_ldm(data: MaskDataset, ae_run, run_dir, settings: LoopSettings,
                    cfg: ImageModelConfig = ImageModelConfig(), batch_size: int = 2, lr: float = 1e-4,
                    device: str = "auto", seed: int = 0, variants: int = APPEARANCE_VARIANTS) -> int:
    """Train the SPADE latent diffusion model on the frozen autoencoder's latents of every training image
    under `variants` acquisitions (`appearance_variants`), the label map as `seg`."""
    if variants < 1:
        raise InputError("appearance variants", f"at least 1 (the images as acquired), not {variants}")
    if cfg != run_image_config(ae_run):
        raise InputError(ae_run, "the autoencoder run has another config (grid, channels) than the diffusion model's")
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
        noise = torch.randn((1, *cfg.latent_shape(data.labels[0].shape)),
                            generator=torch.Generator().manual_seed(0)).to(device)
        with torch.no_grad():
            image = inferer.sample(noise, ae, network, scheduler, seg=seg, verbose=False)[0, 0].clamp(0, 1)
        affine = GRIDS[cfg.grid].affine((0, 0, 0))
        save_preview(Run(run_dir).folder / f"preview_{i:06d}.png", Volume(image.cpu().numpy(), affine),
                     title=f"image drawn for a training map (25 DDIM steps), step {i}")

    return train_latent_diffusion(run_dir, settings, ae, encoded, unet, predict, noise_schedule(cfg),
                                  {"config": cfg.to_dict(), "stage": "image-ldm"}, batch_size, lr, device, seed,
                                  preview)
