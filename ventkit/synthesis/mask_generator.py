"""Sampling whole-brain label maps for a requested ventricular volume, and exporting shippable weights."""
from __future__ import annotations

import json
import math
import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..anatomy.grid import GRIDS, Grid
from ..errors import InputError, VentkitWarning
from ..io import Volume
from ..models import WeightsError, read_card, write_card
from ..paths import models_dir
from ..labels import SEGMENTATION_IDS
from ..volumetry import ventricle_volumes_ml
from .mask_model import (NULL_CONTEXT, MaskModelConfig, build_autoencoder, build_unet, check_volume_range, encode_volume,
                         to_label_ids)
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


@dataclass(frozen=True)
class DrawSettings:
    """What one batch of label maps is drawn for (`draw_scores`, `draw_maps`).

    Args:
        volume_ml: total ventricle volume to condition on, mL: one finite number > 0, or one per map.
        guidance: classifier-free guidance scale (1: none); finite and >= 0.
        steps: DDIM steps; >= 1.
        n: number of maps drawn in the batch; >= 1.
        seed: map i starts from the noise of seed + i; an integer >= 0.
        out_shape: voxel counts to interpolate the label scores to before the argmax (the model grid's field
            of view at a finer voxel size); three integers >= 1, or None for the model grid.
    """

    volume_ml: float | tuple[float, ...]
    guidance: float
    steps: int
    n: int = 1
    seed: int = 0
    out_shape: tuple[int, int, int] | None = None

    def __post_init__(self):
        if not (isinstance(self.n, numbers.Integral) and self.n >= 1):
            raise ValueError(f"n must be an integer >= 1, got {self.n!r}")
        try:
            volumes = np.asarray(self.volume_ml, dtype=float)
        except (TypeError, ValueError):
            volumes = np.array(np.nan)
        if volumes.ndim > 1 or (volumes.ndim == 1 and volumes.size not in (1, self.n)) \
                or not (np.isfinite(volumes) & (volumes > 0)).all():
            raise ValueError(f"volume_ml must be a finite volume > 0 (mL), or {self.n} of them (one per map), "
                             f"got {self.volume_ml!r}")
        object.__setattr__(self, "volume_ml", float(volumes) if volumes.ndim == 0 else tuple(volumes.tolist()))
        if not (isinstance(self.seed, numbers.Integral) and self.seed >= 0):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not (isinstance(self.guidance, numbers.Real) and math.isfinite(self.guidance) and self.guidance >= 0):
            raise ValueError(f"guidance must be finite and >= 0, got {self.guidance!r}")
        if not (isinstance(self.steps, numbers.Integral) and self.steps >= 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.out_shape is not None:
            if np.shape(self.out_shape) != (3,) or not all(isinstance(v, numbers.Integral) and v >= 1
                                                           for v in self.out_shape):
                raise ValueError(f"out_shape must be three integers >= 1 or None, got {self.out_shape!r}")
            object.__setattr__(self, "out_shape", tuple(int(v) for v in self.out_shape))


@torch.no_grad()
def draw_scores(autoencoder, unet, cfg: MaskModelConfig, scale_factor: float, settings: DrawSettings,
                device) -> torch.Tensor:
    """(n, 33, X, Y, Z) decoded label scores drawn in one batch by DDIM with classifier-free guidance for
    `settings` (on the model grid: `settings.out_shape` is `draw_maps`'s); map i starts from the noise of
    seed + i, so it is the map that seed alone draws."""
    scheduler, inferer = ddim_inferer(cfg, scale_factor, settings.steps, device)
    shape = [cfg.latent_channels, *(s // 4 for s in GRIDS[cfg.grid].shape)]
    noise = torch.stack([torch.randn(shape, generator=torch.Generator(device="cpu").manual_seed(settings.seed + i))
                         for i in range(settings.n)]).to(device)
    volumes = np.broadcast_to(np.asarray(settings.volume_ml, float), (settings.n,)).tolist()
    context = encode_volume(volumes, cfg).to(device)
    guidance = settings.guidance
    return inferer.sample(noise, autoencoder, unet, scheduler, conditioning=context, mode="crossattn",
                          verbose=False, cfg=guidance if guidance != 1 else None, cfg_fill_value=NULL_CONTEXT)


def draw_maps(autoencoder, unet, cfg: MaskModelConfig, scale_factor: float, settings: DrawSettings, device,
              offsets: np.ndarray | None = None) -> np.ndarray:
    """(n, X, Y, Z) label ids of `draw_scores`'s maps, after adding the per-label `offsets` (see
    `fit_label_offsets`) to the scores. With `settings.out_shape` (the model grid's field of view at a finer
    voxel size), the scores are interpolated to it before the argmax, so boundaries are smooth, not blocky."""
    return scores_to_maps(draw_scores(autoencoder, unet, cfg, scale_factor, settings, device), offsets,
                          settings.out_shape)


def scores_to_maps(logits: torch.Tensor, offsets: np.ndarray | None = None,
                   out_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """(n, X, Y, Z) label ids of `draw_scores`'s (n, 33, ...) scores plus the per-label `offsets`, the
    scores interpolated (trilinear) to `out_shape` before the argmax when it is not the model grid's."""
    if offsets is not None:
        logits = logits + torch.as_tensor(offsets, dtype=logits.dtype, device=logits.device)[:, None, None, None]
    if out_shape is not None and tuple(out_shape) != tuple(logits.shape[2:]):
        return np.stack([to_label_ids(torch.nn.functional.interpolate(x[None].float(), size=out_shape,
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

    def condition_ml(self, volume_ml: float, guidance: float, grid: Grid | None = None) -> float:
        """The volume to condition on so that the drawn maps' median ventricle volume is `volume_ml`:
        the calibration curve inverted (log-linear between its points) at the guidance it was fitted for,
        the curve of the named grid equal to `grid` where the calibration has one (`generated_ml_by_grid`),
        else the model grid's; `volume_ml` itself without a calibration or at another guidance."""
        cal = self.calibration
        if cal is None or guidance != cal["guidance"]:
            return volume_ml
        generated = np.log(cal["generated_ml"])
        for name, curve in cal.get("generated_ml_by_grid", {}).items():
            if grid is not None and name in GRIDS and GRIDS[name].matches(grid):
                generated = np.log(curve)
        generated = np.maximum.accumulate(generated) + 1e-6 * np.arange(len(generated))  # monotone for interp
        return float(np.exp(np.interp(np.log(volume_ml), generated, np.log(cal["condition_ml"]))))

    @property
    def defaults(self) -> "SamplingDefaults":
        return sampling_defaults(self.card, self.calibration)

    def output_grid(self, spacing_mm: float | None = None) -> Grid:
        """The model grid, or its field of view at about `spacing_mm` (0.5 mm up to the model's voxel size)."""
        if spacing_mm is None:
            return self.grid
        if not 0.5 <= spacing_mm <= max(self.grid.spacing):
            raise InputError("spacing_mm", f"{spacing_mm:g} mm: choose 0.5 mm up to the model's "
                                          f"{max(self.grid.spacing):.2f} mm")
        shape = tuple(int(round(e / spacing_mm)) for e in self.grid.extent_mm)
        return Grid(shape, tuple(float(e / s) for e, s in zip(self.grid.extent_mm, shape)))

    def sample(self, volume_ml: float, n: int = 1, seed: int = 0, guidance: float | None = None,
               steps: int | None = None, calibrated: bool = True, spacing_mm: float | None = None,
               grid: Grid | None = None) -> list[Volume]:
        """`n` label maps (RAS, centred at the origin) for the requested volume: those of seeds `seed`,
        `seed` + 1, ... (drawn in one batch); conditioned through the calibration (`condition_ml`) unless
        `calibrated` is False. On the model grid, or with `spacing_mm` its field of view at that voxel size,
        or on `grid` (one with the model grid's field of view, such as an image generator's); the decoded
        label scores are interpolated there (`draw_maps`). `guidance` and `steps` default to the model's
        (`defaults`); another guidance draws uncalibrated volumes, and says so."""
        defaults = self.defaults
        guidance = defaults.guidance if guidance is None else guidance
        steps = defaults.steps if steps is None else steps
        lo, hi = defaults.volume_range_ml
        if not lo <= volume_ml <= hi:
            raise InputError("volume_ml", f"{volume_ml:g} mL is outside the trained range {lo:g}-{hi:g} mL")
        if calibrated and self.calibration is not None and guidance != self.calibration["guidance"]:
            warnings.warn(VentkitWarning(f"guidance {guidance:g} is not the calibrated {self.calibration['guidance']:g}: "
                                         "the drawn volumes will differ from the requested ones"), stacklevel=2)
        if grid is None:
            grid = self.output_grid(spacing_mm)
        elif spacing_mm is not None or not np.allclose(grid.extent_mm, self.grid.extent_mm, rtol=0.01):
            raise InputError("grid", f"{grid.shape} voxels of {grid.spacing} mm: give a grid with the model grid's "
                                     f"field of view ({self.grid.extent_mm} mm), or spacing_mm, not both")
        condition = self.condition_ml(volume_ml, guidance, grid) if calibrated else volume_ml
        settings = DrawSettings(condition, guidance, steps, n=n, seed=seed, out_shape=grid.shape)
        maps = draw_maps(self.autoencoder, self.unet, self.cfg, self.scale_factor, settings, self.device,
                         self.label_offsets)
        affine = grid.affine((0, 0, 0))
        return [Volume(lab, affine, f"generated {volume_ml:g} mL seed {seed + i}") for i, lab in enumerate(maps)]

    def ventricle_ml(self, labels: Volume) -> float:
        return ventricle_volumes_ml(labels)["total"]


@dataclass(frozen=True)
class SamplingDefaults:
    """How the shipped mask generator is sampled unless asked otherwise.

    Args:
        guidance: classifier-free guidance scale its volume calibration was fitted at; finite and >= 0.
        steps: DDIM steps its volume calibration was fitted at; >= 1.
        volume_range_ml: (lo, hi) total ventricle volumes it was trained for, mL; 0 < lo < hi.
    """

    guidance: float
    steps: int
    volume_range_ml: tuple[float, float]

    def __post_init__(self):
        if not (isinstance(self.guidance, numbers.Real) and math.isfinite(self.guidance) and self.guidance >= 0):
            raise ValueError(f"guidance must be finite and >= 0, got {self.guidance!r}")
        if not (isinstance(self.steps, numbers.Integral) and self.steps >= 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        check_volume_range(self.volume_range_ml)


FALLBACK_GUIDANCE, FALLBACK_STEPS = 3.0, 50  # a generator without a calibration


def sampling_defaults(card: dict | None = None, calibration: dict | None = None) -> SamplingDefaults:
    """The defaults of the generator whose card and calibration are given, else of the shipped one (read
    from its files alone, without loading weights: the CLI and the panels call this at start-up)."""
    if card is None:
        folder = models_dir() / MODEL_NAME
        card = read_card(folder)
        if CALIBRATION_FILE in card.get("files", {}):
            calibration = json.loads((folder / CALIBRATION_FILE).read_text())
    cfg = MaskModelConfig.from_dict(card["config"]) if "config" in card else None
    return SamplingDefaults(float((calibration or {}).get("guidance", FALLBACK_GUIDANCE)),
                            int((calibration or {}).get("ddim_steps", FALLBACK_STEPS)),
                            tuple(cfg.volume_range_ml) if cfg else (5.0, 300.0))


def label_offsets(calibration: dict) -> np.ndarray | None:
    """The calibration's per-label score offsets in the order of the decoded channels, or None."""
    found = calibration.get("label_offsets")
    return None if found is None else np.array([found[str(i)] for i in SEGMENTATION_IDS])
