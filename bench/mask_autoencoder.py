"""How well the mask autoencoder reconstructs label maps it never trained on (the hold-out subjects).

    python bench/mask_autoencoder.py --run RUN --holdout DIR [--cases 12]

Reads the 33-label maps of the hold-out corpora under `DIR` (`labelsFullTs`, as `ventkit evaluate`
writes them), resamples them onto the mask grid, encodes and decodes them with the run's autoencoder
and prints voxel accuracy, the error of the total ventricle volume, the Dice of every label, and in how
many maps each label survives. The diffusion model can draw no finer maps than this decoder: start it
once the small labels come back.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ventkit.anatomy.grid import GRIDS, sample_labels
from ventkit.evaluation import dice
from ventkit.io import read_volume
from ventkit.labels import LABEL_BY_ID, SEGMENTATION_IDS, VENTRICLE_IDS
from ventkit.synthesis.mask_model import MaskModelConfig, build_autoencoder, one_hot, to_label_ids
from ventkit.training.mask import load_stage
from ventkit.training.mask_data import model_affine


def holdout_maps(root: Path, grid: str, cases: int) -> list[np.ndarray]:
    paths = sorted(root.glob("*/labelsFullTs/*.nii.gz"))
    if not paths:
        raise SystemExit(f"{root}: no */labelsFullTs/*.nii.gz (render the hold-out with `ventkit evaluate`)")
    g = GRIDS[grid]
    picked = [paths[i] for i in np.linspace(0, len(paths) - 1, min(cases, len(paths))).astype(int)]
    maps = []
    for p in picked:
        vol = read_volume(p, labels=True)
        maps.append(sample_labels(vol, model_affine(vol, g), g.shape))
    return maps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="mask-ae run folder (checkpoint.pt)")
    p.add_argument("--holdout", required=True)
    p.add_argument("--cases", type=int, default=12)
    args = p.parse_args()
    cfg = MaskModelConfig()
    ae = load_stage(args.run, "autoencoder", cfg, build_autoencoder)
    maps = holdout_maps(Path(args.holdout), cfg.grid, args.cases)
    scores = {lab: [] for lab in SEGMENTATION_IDS}
    kept = dict.fromkeys(SEGMENTATION_IDS, 0)
    accuracy, volume_error = [], []
    with torch.no_grad():
        for m in maps:
            r = to_label_ids(ae.reconstruct(one_hot(m)[None]))[0]
            accuracy.append(float((r == m).mean()))
            true_vox = np.isin(m, VENTRICLE_IDS).sum()
            volume_error.append(abs(float(np.isin(r, VENTRICLE_IDS).sum()) - true_vox) / true_vox)
            for lab in SEGMENTATION_IDS:
                if (m == lab).any():
                    scores[lab].append(dice(r == lab, m == lab))
                kept[lab] += bool((r == lab).any())
    step = torch.load(Path(args.run) / "checkpoint.pt", map_location="cpu", weights_only=False)["step"]
    print(f"{args.run} at step {step}: {len(maps)} hold-out maps on the {cfg.grid} grid")
    print(f"voxel accuracy {np.mean(accuracy):.4f}; total ventricle volume: median relative error "
          f"{np.median(volume_error):.3f} (max {np.max(volume_error):.3f})")
    for lab in SEGMENTATION_IDS[1:]:
        print(f"  {LABEL_BY_ID[lab].name:<34} Dice {np.mean(scores[lab]):.3f}   present in {kept[lab]}/{len(maps)}")
    worst = min(SEGMENTATION_IDS[1:], key=lambda lab: np.mean(scores[lab]))
    print(f"mean label Dice {np.mean([np.mean(scores[lab]) for lab in SEGMENTATION_IDS[1:]]):.3f}; "
          f"worst: {LABEL_BY_ID[worst].name}")


if __name__ == "__main__":
    main()
