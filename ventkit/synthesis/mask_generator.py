"""Sampling whole-brain label maps for a requested ventricular volume, and exporting shippable weights."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..anatomy.grid import GRIDS, Grid
from ..errors import InputError
from ..io import Volume, write_text
from ..models import WeightsError, models_dir, read_card, write_card
from ..labels import SEGMENTATION_IDS
from ..volumetry import ventricle_volumes_ml
from .mask_model import NULL_CONTEXT, MaskModelConfig, build_autoencoder, build_unet, encode_volume, to_label_ids
from .weights import WEIGHTS_FILE, LoadedGenerator, ddim_inferer, export_generator

MODEL_NAME = "mask_generator"
CALIBRATION_FILE = "calibration.json"
CALIBRATION_SEED = 1000  # calibration draws seeds 1000, 1001, ...; the benchmark and the tests use others
LABEL_OFFSET_SEED = 2000  # and the label offsets' fit 2000, 2001, ...
FIXED_LABELS = (0, 4, 43)  # background and the lateral ventricles keep label offset 0


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


def label_volume_error(counts: np.ndarray, target: np.ndarray, labels: np.ndarray) -> float:
    """Sum over `labels` (a mask) of |log| of the ratio of mean voxel counts, drawn to training (+1 each)."""
    return float(np.abs(np.log((counts[labels] + 1) / (target[labels] + 1))).sum())


def fit_label_offsets(gen: MaskGenerator, maps: list[np.ndarray], volumes_ml: list[float], n: int = 48,
                      guidance: float = 3.0, steps: int = 50, batch: int = 8, iterations: int = 40) -> dict:
    """Per-label offsets of the decoded scores that give the drawn maps the training maps' mean structure
    volumes.

    A diffusion model trained for a few thousand steps draws the small deep structures too small (the
    accumbens at half its volume, absent from one map in ten) and the cortex too large. `n` training maps
    are picked at random; a map is drawn for each one's ventricle volume (seeds from LABEL_OFFSET_SEED);
    the offsets then follow damped log-ratio steps of the mean volume per label. Background (the reference)
    and the lateral ventricles (most of the conditioned volume, which the volume calibration then sets)
    keep offset 0; the small ventricles are fitted so that they keep their share."""
    rng = np.random.default_rng(LABEL_OFFSET_SEED)
    pick = sorted(rng.choice(len(maps), size=min(n, len(maps)), replace=False), key=lambda k: volumes_ml[k])
    ids = np.asarray(SEGMENTATION_IDS)
    target = np.mean([np.bincount(np.searchsorted(ids, maps[k]).ravel(), minlength=ids.size) for k in pick], axis=0)
    scores = [draw_scores(gen.autoencoder, gen.unet, gen.cfg, gen.scale_factor,
                          [volumes_ml[k] for k in pick[i:i + batch]], len(pick[i:i + batch]),
                          LABEL_OFFSET_SEED + i, guidance, steps, gen.device).half().cpu()
              for i in range(0, len(pick), batch)]

    def mean_counts(offsets: torch.Tensor) -> np.ndarray:
        labels = torch.cat([(s.float() + offsets[:, None, None, None]).argmax(1).reshape(-1) for s in scores])
        return torch.bincount(labels, minlength=ids.size).numpy() / len(pick)

    free = ~np.isin(ids, FIXED_LABELS)
    offsets = torch.zeros(ids.size)
    before = counts = mean_counts(offsets)
    best = (label_volume_error(counts, target, free), offsets.clone())
    for _ in range(iterations):  # damped, bounded steps; the best offsets seen are kept (zeros included)
        step = np.clip(0.5 * np.log((target + 1) / (counts + 1)), -0.5, 0.5)
        offsets = (offsets + torch.as_tensor(np.where(free, step, 0.0), dtype=torch.float32)).clamp(-4, 4)
        counts = mean_counts(offsets)
        best = min(best, (label_volume_error(counts, target, free), offsets.clone()), key=lambda b: b[0])
    offsets = best[1]
    after = mean_counts(offsets)
    return {"label_offsets": {str(i): round(float(o), 4) for i, o in zip(ids, offsets)},
            "label_offset_fit": {"maps": len(pick), "seeds": [LABEL_OFFSET_SEED, LABEL_OFFSET_SEED + len(pick) - 1],
                                 "guidance": guidance, "ddim_steps": steps,
                                 "mean_voxels": {str(i): [round(float(t), 1), round(float(b), 1), round(float(a), 1)]
                                                 for i, t, b, a in zip(ids, target, before, after)},
                                 "mean_voxels_columns": ["training maps", "drawn before", "drawn after"]}}


def calibrate(folder: str | Path, seeds: int = 8, points: int = 8, guidance: float = 3.0, steps: int = 50,
              device: str = "auto", data: list | None = None) -> dict:
    """Fit the sampling calibration of the generator in `folder` and store it there (checksummed by the card).

    With `data` (corpus folders the model was trained on), first the label offsets (`fit_label_offsets`);
    without, those of the present calibration are kept. Then the volume curve, with the offsets applied:
    conditions log-spaced over the trained range, `seeds` maps each (seeds from `CALIBRATION_SEED`); the
    median ventricle volume drawn per condition is the curve `MaskGenerator.condition_ml` inverts. A
    diffusion model's maps follow its condition monotonically but not one to one (a model trained for a
    few thousand steps shrinks or widens the range); the curve corrects that without retraining."""
    gen = MaskGenerator(folder, device)
    calibration = {"weights_sha256": gen.card["files"][WEIGHTS_FILE]}
    if data:
        from ..training.mask_data import MaskDataset

        corpus = MaskDataset(data, gen.cfg.grid)
        calibration.update(fit_label_offsets(gen, corpus.labels, corpus.volumes_ml, guidance=guidance, steps=steps))
        gen.label_offsets = label_offsets(calibration)
    elif gen.label_offsets is not None:
        calibration.update({k: v for k, v in gen.calibration.items() if k.startswith("label_offset")})
    lo, hi = gen.cfg.volume_range_ml
    conditions = np.geomspace(lo, hi, points)
    generated = [float(np.median([gen.ventricle_ml(m) for m in gen.sample(
        c, n=seeds, seed=CALIBRATION_SEED, guidance=guidance, steps=steps, calibrated=False)])) for c in conditions]
    calibration.update({"guidance": guidance, "ddim_steps": steps, "seeds": [CALIBRATION_SEED, CALIBRATION_SEED + seeds - 1],
                        "condition_ml": [round(float(c), 3) for c in conditions],
                        "generated_ml": [round(g, 3) for g in generated]})
    write_text(Path(folder) / CALIBRATION_FILE, json.dumps(calibration, indent=1))
    card = {k: v for k, v in gen.card.items() if k != "files"}
    write_card(folder, card, [WEIGHTS_FILE, CALIBRATION_FILE])
    return calibration
