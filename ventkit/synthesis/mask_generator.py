"""Sampling whole-brain label maps for a requested ventricular volume, and exporting shippable weights."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..anatomy.grid import GRIDS, Grid
from ..errors import InputError
from ..io import Volume
from ..models import WeightsError, models_dir, read_card, write_card
from ..labels import SEGMENTATION_IDS
from ..volumetry import ventricle_volumes_ml
from .mask_model import NULL_CONTEXT, MaskModelConfig, build_autoencoder, build_unet, encode_volume, to_label_ids
from .weights import WEIGHTS_FILE, LoadedGenerator, ddim_inferer, export_generator

MODEL_NAME = "mask_generator"
CALIBRATION_FILE = "calibration.json"


def export_weights(ae_state: dict, unet_state: dict, cfg: MaskModelConfig, scale_factor: float,
                   out_dir: str | Path, card: dict) -> Path:
    """Write fp16 weights (no optimizer state) and a model card with their sha256; a calibration fitted
    for exactly these weights (`calibrate`) is kept and checksummed too, any other is removed."""
    weights = export_generator(out_dir, MODEL_NAME, cfg.to_dict(), scale_factor, ae_state, unet_state, card)
    calibration = Path(out_dir) / CALIBRATION_FILE
    if calibration.is_file():
        card = read_card(out_dir)
        if json.loads(calibration.read_text()).get("weights_sha256") == card["files"][WEIGHTS_FILE]:
            write_card(out_dir, {k: v for k, v in card.items() if k != "files"}, [WEIGHTS_FILE, CALIBRATION_FILE])
        else:
            calibration.unlink()
    return weights


@torch.no_grad()
def draw_scores(autoencoder, unet, cfg: MaskModelConfig, scale_factor: float, volume_ml, n: int, seed: int,
                guidance: float, steps: int, device) -> torch.Tensor:
    """(n, 33, X, Y, Z) decoded label scores drawn in one batch by DDIM with classifier-free guidance
    (1: none) for `volume_ml` (one volume, or one per map); map i starts from the noise of seed + i, so it
    is the map that seed alone draws."""
    scheduler, inferer = ddim_inferer(cfg, scale_factor, steps, device)
    shape = [cfg.latent_channels, *(s // 4 for s in GRIDS[cfg.grid].shape)]
    noise = torch.stack([torch.randn(shape, generator=torch.Generator(device="cpu").manual_seed(seed + i))
                         for i in range(n)]).to(device)
    volumes = np.broadcast_to(np.asarray(volume_ml, float), (n,)).tolist()
    context = encode_volume(volumes, cfg).to(device)
    return inferer.sample(noise, autoencoder, unet, scheduler, conditioning=context, mode="crossattn",
                          verbose=False, cfg=guidance if guidance != 1 else None, cfg_fill_value=NULL_CONTEXT)


def draw_maps(autoencoder, unet, cfg: MaskModelConfig, scale_factor: float, volume_ml, n: int, seed: int,
              guidance: float, steps: int, device, out_shape: tuple[int, int, int] | None = None,
              offsets: np.ndarray | None = None) -> np.ndarray:
    """(n, X, Y, Z) label ids of `draw_scores`'s maps, after adding the per-label `offsets` (see
    `fit_label_offsets`) to the scores. With `out_shape` (the model grid's field of view at a finer voxel
    size), the scores are interpolated to it before the argmax, so boundaries are smooth, not blocky."""
    logits = draw_scores(autoencoder, unet, cfg, scale_factor, volume_ml, n, seed, guidance, steps, device)
    if offsets is not None:
        logits = logits + torch.as_tensor(offsets, dtype=logits.dtype, device=logits.device)[:, None, None, None]
    if out_shape is not None and tuple(out_shape) != tuple(logits.shape[2:]):
        return np.stack([to_label_ids(torch.nn.functional.interpolate(x[None].float(), size=tuple(out_shape),
                                                                      mode="trilinear"))[0] for x in logits])
    return to_label_ids(logits)


class MaskGenerator(LoadedGenerator):
    """Volume-guided latent diffusion model drawing 33-label brain maps on its model grid."""

    def __init__(self, folder: str | Path | None = None, device: str = "auto"):
        folder = Path(folder or models_dir() / MODEL_NAME)
        super().__init__(folder, MaskModelConfig, build_autoencoder, build_unet, device)
        self.grid = GRIDS[self.cfg.grid]
        self.calibration, self.label_offsets = None, None
        if CALIBRATION_FILE in self.card["files"]:  # checksummed with the weights
            self.calibration = json.loads((folder / CALIBRATION_FILE).read_text())
            if self.calibration["weights_sha256"] != self.card["files"][WEIGHTS_FILE]:
                raise WeightsError(f"{folder / CALIBRATION_FILE}: fitted for other weights")
            self.label_offsets = label_offsets(self.calibration)

    def condition_ml(self, volume_ml: float, guidance: float) -> float:
        """The volume to condition on so that the drawn maps' median ventricle volume is `volume_ml`:
        the calibration curve inverted (log-linear between its points) at the guidance it was fitted for;
        `volume_ml` itself without a calibration or at another guidance."""
        cal = self.calibration
        if cal is None or guidance != cal["guidance"]:
            return volume_ml
        generated = np.log(cal["generated_ml"])
        generated = np.maximum.accumulate(generated) + 1e-6 * np.arange(len(generated))  # monotone for interp
        return float(np.exp(np.interp(np.log(volume_ml), generated, np.log(cal["condition_ml"]))))

    def clamp_volume(self, volume_ml: float) -> float:
        lo, hi = self.cfg.volume_range_ml
        if not lo <= volume_ml <= hi:
            warnings.warn(f"requested {volume_ml:g} mL is outside the trained range {lo:g}-{hi:g} mL; "
                          f"clamped to {min(max(volume_ml, lo), hi):g} mL")
        return float(min(max(volume_ml, lo), hi))

    def output_grid(self, spacing_mm: float | None = None) -> Grid:
        """The model grid, or its field of view at about `spacing_mm` (0.5 mm up to the model's voxel size)."""
        if spacing_mm is None:
            return self.grid
        if not 0.5 <= spacing_mm <= max(self.grid.spacing):
            raise InputError("--spacing", f"{spacing_mm:g} mm: choose 0.5 mm up to the model's "
                                          f"{max(self.grid.spacing):.2f} mm")
        shape = tuple(int(round(e / spacing_mm)) for e in self.grid.extent_mm)
        return Grid(shape, tuple(float(e / s) for e, s in zip(self.grid.extent_mm, shape)))

    def sample(self, volume_ml: float, n: int = 1, seed: int = 0, guidance: float = 3.0,
               steps: int = 50, calibrated: bool = True, spacing_mm: float | None = None) -> list[Volume]:
        """`n` label maps (RAS, centred at the origin) for the requested volume: those of seeds `seed`,
        `seed` + 1, ... (drawn in one batch); conditioned through the calibration (`condition_ml`) unless
        `calibrated` is False. On the model grid, or with `spacing_mm` its field of view at that voxel size
        (the decoded label scores interpolated, see `draw_maps`)."""
        volume_ml = self.clamp_volume(volume_ml)
        grid = self.output_grid(spacing_mm)
        condition = self.condition_ml(volume_ml, guidance) if calibrated else volume_ml
        maps = draw_maps(self.autoencoder, self.unet, self.cfg, self.scale_factor, condition, n, seed, guidance,
                         steps, self.device, grid.shape, self.label_offsets)
        affine = grid.affine((0, 0, 0))
        return [Volume(lab, affine, f"generated {volume_ml:g} mL seed {seed + i}") for i, lab in enumerate(maps)]

    def ventricle_ml(self, labels: Volume) -> float:
        return ventricle_volumes_ml(labels)["total"]


def label_offsets(calibration: dict) -> np.ndarray | None:
    """The calibration's per-label score offsets in the order of the decoded channels, or None."""
    found = calibration.get("label_offsets")
    return None if found is None else np.array([found[str(i)] for i in SEGMENTATION_IDS])
