"""What an image autoencoder run keeps of real texture: realism measures of its inputs and reconstructions.

    python bench/image_autoencoder.py --run RUN --data CORPUS [CORPUS ...] [--cases 0 7]

For the chosen cases of each corpus (on the run's grid, as it trains on them), the white/grey border
sharpness and the 2-10 mm spectrum slope (`ventkit.realism`, on its 1 mm measure grid) of the image and
of the autoencoder's reconstruction, and their mean absolute difference. The diffusion model draws in
this autoencoder's latent space, so a reconstruction that loses texture sets the floor for the generated
images' realism (issue 32).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ventkit.anatomy.grid import GRIDS
from ventkit.io import Volume
from ventkit.realism import MeasureImage, boundary_sharpness, spectrum_slope
from ventkit.synthesis.image_model import build_image_autoencoder
from ventkit.synthesis.mask_model import one_hot
from ventkit.training.image import run_image_config
from ventkit.training.mask import load_stage
from ventkit.training.mask_data import MaskDataset


def measures(image: np.ndarray, labels: np.ndarray, affine: np.ndarray) -> str:
    m = MeasureImage.from_volumes("", Volume(image.astype(np.float32), affine), Volume(labels.astype(np.int16), affine))
    return f"sharpness {boundary_sharpness(m):.3f}/mm, slope {spectrum_slope(m):+.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="an image autoencoder run folder (`ventkit train image-ae`)")
    ap.add_argument("--data", nargs="+", required=True, help="corpus folders, each measured on its own")
    ap.add_argument("--cases", nargs="+", type=int, default=[0, 7], help="case indices of each corpus")
    args = ap.parse_args()
    cfg = run_image_config(args.run)
    ae = load_stage(args.run, "autoencoder", cfg, build_image_autoencoder)
    affine = GRIDS[cfg.grid].affine(np.zeros(3))
    print(f"{args.run}: grid {cfg.grid}, autoencoder channels {cfg.ae_channels} (x{cfg.downsampling})")
    for folder in args.data:
        data = MaskDataset([folder], grid=cfg.grid, images=True)
        for i in args.cases:
            image, labels = data.images[i], data.labels[i]
            with torch.no_grad():
                recon = ae.reconstruct(torch.from_numpy(image)[None, None].float(),
                                       one_hot(labels)[None].float())[0, 0].numpy()
            print(f"{folder} case {i}: input {measures(image, labels, affine)}; reconstruction "
                  f"{measures(recon, labels, affine)}; mean |difference| {np.abs(recon - image).mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
