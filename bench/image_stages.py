"""Where the image generator loses tissue contrast, stage by stage, on maps it never trained on.

    python bench/image_stages.py [--image-model DIR] [--cases 4] [--steps 50] [--device auto]

For clean T1 renders (the generator's training acquisition) of the hold-out subjects, prints the
nearest-mean tissue classifier of bench/image_fidelity.py (fitted the same way) and each tissue's mean
and spread (white-matter-median units) on: the render; its reconstruction by the shipped autoencoder
(encode, then decode with the map as SPADE's seg); a T1 the full generator draws for the same map.
The autoencoder bounds what the diffusion model can reach; the gap after it is the diffusion model's.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from image_fidelity import classifier_agreement, fit_tissue_means, normalized_brain, tissue_of, training_renders
from ventkit.anatomy.corpus import ACQUISITIONS, make_case
from ventkit.anatomy.grid import GRIDS
from ventkit.anatomy.subjects import HOLDOUT_SUBJECTS, list_subjects, load_subject
from ventkit.io import Volume
from ventkit.synthesis.image_generator import ImageGenerator
from ventkit.synthesis.image_model import normalize_intensities
from ventkit.synthesis.mask_model import one_hot


def tissue_stats(image: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """(mean, SD) of CSF, grey and white matter, in units of the white-matter median."""
    t, v = tissue_of(seg)[seg > 0], normalized_brain(image, seg)
    return np.array([[v[t == k].mean(), v[t == k].std()] for k in (1, 2, 3)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-model")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    gen = ImageGenerator(args.image_model, args.device)
    grid = GRIDS[gen.cfg.grid]
    means = fit_tissue_means(training_renders(gen.cfg.grid))
    paths = list_subjects()
    stages: dict[str, list] = {"render": [], "autoencoder": [], "generated": []}
    for i in range(args.cases):
        subject = HOLDOUT_SUBJECTS[i % len(HOLDOUT_SUBJECTS)]
        rng = np.random.default_rng([7, i])
        case = make_case(load_subject(str(paths[subject])), grid, float(rng.uniform(20, 250)), rng,
                         ACQUISITIONS["clean"])
        image, seg = normalize_intensities(case.image.array), case.segmentation.array
        with torch.no_grad():
            x = torch.from_numpy(image)[None, None].to(gen.device)
            onehot = one_hot(seg)[None].to(gen.device)
            recon = gen.autoencoder.decode(gen.autoencoder.encode(x)[0], onehot)[0, 0].clamp(0, 1).cpu().numpy()
        drawn = gen.sample(Volume(seg, case.segmentation.affine), seed=i, steps=args.steps).array
        for name, im in (("render", image), ("autoencoder", recon), ("generated", drawn)):
            stages[name].append((classifier_agreement(im, seg, means), tissue_stats(im, seg)))
    print(f"{args.cases} clean renders of hold-out subjects, {args.steps} DDIM steps, on {gen.device}")
    print(f"{'stage':<13}{'classifier':>11}   mean (SD) of CSF, grey, white matter")
    for name, rows in stages.items():
        stats = np.mean([s for _, s in rows], axis=0)
        cells = "  ".join(f"{m:.2f} ({sd:.2f})" for m, sd in stats)
        print(f"{name:<13}{np.mean([a for a, _ in rows]):11.1%}   {cells}")


if __name__ == "__main__":
    main()
