"""`ventkit train calibrate-mask`: fit the shipped mask generator's sampling calibration.

The calibration (`calibration.json` beside the weights, checksummed by the card) holds per-label offsets of
the decoded label scores and the volume curve that `MaskGenerator` reads at sampling time; fitting them
lives here, with the training code, so that the inference package never imports training.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..anatomy.grid import GRIDS
from ..errors import InputError
from ..io import Volume, write_text
from ..labels import SEGMENTATION_IDS
from ..models import write_card
from ..synthesis.mask_generator import (CALIBRATION_FILE, DrawSettings, MaskGenerator, draw_scores, label_offsets,
                                        scores_to_maps)
from ..synthesis.weights import WEIGHTS_FILE
from .mask_data import MaskDataset

CALIBRATION_SEED = 1000  # calibration draws seeds 1000, 1001, ...; the benchmark and the tests use others
LABEL_OFFSET_SEED = 2000  # and the label offsets' fit 2000, 2001, ...
FIXED_LABELS = (0, 4, 43)  # background and the lateral ventricles keep label offset 0


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
                          DrawSettings([volumes_ml[k] for k in pick[i:i + batch]], guidance, steps,
                                       n=len(pick[i:i + batch]), seed=LABEL_OFFSET_SEED + i), gen.device).half().cpu()
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
              device: str = "auto", data: list | None = None, grids: Sequence[str] = ()) -> dict:
    """Fit the sampling calibration of the generator in `folder` and store it there (checksummed by the card).

    With `data` (corpus folders the model was trained on), first the label offsets (`fit_label_offsets`);
    without, those of the present calibration are kept. Then the volume curve, with the offsets applied:
    conditions log-spaced over the trained range, `seeds` maps each (seeds from `CALIBRATION_SEED`); the
    median ventricle volume drawn per condition is the curve `MaskGenerator.condition_ml` inverts. A
    diffusion model's maps follow its condition monotonically but not one to one (a model trained for a
    few thousand steps shrinks or widens the range); the curve corrects that without retraining.

    `grids` (names in GRIDS with the model grid's field of view) get curves of their own from the same draws,
    the scores interpolated there as `MaskGenerator.sample(grid=)` does (`generated_ml_by_grid`): the
    argmax of interpolated scores draws thin structures a few percent smaller than the model grid's."""
    gen = MaskGenerator(folder, device)
    same_view = [n for n, g in GRIDS.items() if np.allclose(g.extent_mm, gen.grid.extent_mm, rtol=0.01)]
    if set(grids) - set(same_view):
        raise InputError("grids", f"{', '.join(sorted(set(grids) - set(same_view)))}: give grids of the model "
                                  f"grid's field of view ({', '.join(same_view)})")
    calibration = {"weights_sha256": gen.card["files"][WEIGHTS_FILE]}
    if data:
        corpus = MaskDataset(data, gen.cfg.grid)
        calibration.update(fit_label_offsets(gen, corpus.labels, corpus.volumes_ml, guidance=guidance, steps=steps))
        gen.label_offsets = label_offsets(calibration)
    elif gen.label_offsets is not None:
        calibration.update({k: v for k, v in gen.calibration.items() if k.startswith("label_offset")})
    lo, hi = gen.cfg.volume_range_ml
    conditions = np.geomspace(lo, hi, points)
    on = {"model": gen.grid, **{name: GRIDS[name] for name in grids}}
    generated = {name: [] for name in on}
    for c in conditions:
        scores = draw_scores(gen.autoencoder, gen.unet, gen.cfg, gen.scale_factor,
                             DrawSettings(float(c), guidance, steps, n=seeds, seed=CALIBRATION_SEED), gen.device)
        for name, grid in on.items():
            maps = scores_to_maps(scores, gen.label_offsets, grid.shape)
            generated[name].append(float(np.median([gen.ventricle_ml(Volume(m, grid.affine((0, 0, 0))))
                                                    for m in maps])))
    calibration.update({"guidance": guidance, "ddim_steps": steps, "seeds": [CALIBRATION_SEED, CALIBRATION_SEED + seeds - 1],
                        "condition_ml": [round(float(c), 3) for c in conditions],
                        "generated_ml": [round(g, 3) for g in generated.pop("model")]})
    if generated:
        calibration["generated_ml_by_grid"] = {name: [round(g, 3) for g in curve] for name, curve in generated.items()}
    write_text(Path(folder) / CALIBRATION_FILE, json.dumps(calibration, indent=1))
    card = {k: v for k, v in gen.card.items() if k != "files"}
    write_card(folder, card, [WEIGHTS_FILE, CALIBRATION_FILE])
    return calibration
