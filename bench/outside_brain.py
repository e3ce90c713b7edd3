"""Ventricle voxels a segmenter puts outside the brain, on heads rendered flat and with a textured head.

    python bench/outside_brain.py [--models augmented real] [--model-dir NAME=FOLDER ...] [--texture 0.7] [--seeds 3]

The SynthSeg maps have one coarse label for most of the head and neck; rendered flat, it never shows a
segmenter the dark, uneven tissue of a real head (air, bone, muscle). Each hold-out subject (never
trained on) is rendered twice per seed on the seg2mm grid (random deformation, T1 contrast, natural
volumes): once flat, once with `RenderSpec.head_texture`. Printed per model and head: over the renders,
the mL labelled ventricle where the map has no brain (islands removed, as `ventkit segment` does; mean
and worst) and how many renders have more than 1 mL there, and the mean ventricle Dice.
"""
from __future__ import annotations

import argparse

import numpy as np

from ventkit.anatomy.corpus import make_case
from ventkit.anatomy.grid import GRIDS
from ventkit.anatomy.render import RenderSpec
from ventkit.anatomy.subjects import list_subjects, load_subject, split_subjects
from ventkit.errors import VentkitError
from ventkit.evaluation import dice
from ventkit.labels import VENTRICLE_IDS
from ventkit.segmentation.segment import load_segmenter


def cases(texture: float, seeds: int):
    """(head texture, case) for every hold-out subject and seed, flat and textured from the same seed."""
    paths = list_subjects(None)
    for subject in split_subjects(None)["holdout"]:
        for seed in range(seeds):
            for tex in (0.0, texture):
                rng = np.random.default_rng([seed, int(subject.rsplit("_", 1)[-1])])
                spec = RenderSpec(contrast="t1", head_texture=tex)
                yield tex, make_case(load_subject(str(paths[subject])), GRIDS["seg2mm"], None, rng, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["augmented", "real"])
    ap.add_argument("--model-dir", action="append", default=[], metavar="NAME=FOLDER")
    ap.add_argument("--texture", type=float, default=0.7)
    ap.add_argument("--seeds", type=int, default=3, help="renders per hold-out subject and head")
    args = ap.parse_args()
    data = list(cases(args.texture, args.seeds))
    wanted = [(m, None) for m in args.models] + [tuple(s.split("=", 1)) for s in args.model_dir]
    print(f"{'model':<16}{'head':<10}{'renders':>8}{'outside mL: mean':>18}{'worst':>7}{'> 1 mL':>8}{'Dice':>7}")
    for name, folder in wanted:
        try:
            segmenter = load_segmenter(name, notify=lambda _: None, folder=folder)
        except VentkitError as exc:
            print(f"{name:<16}not run: {exc}")
            continue
        scores = {0.0: [], args.texture: []}
        for tex, case in data:
            pred = segmenter.segment(case.image).array > 0
            truth = np.isin(case.segmentation.array, VENTRICLE_IDS)
            outside = (pred & (case.segmentation.array == 0)).sum() * case.image.voxel_ml
            scores[tex].append((outside, dice(pred, truth)))
        for tex, rows in scores.items():
            out, dices = np.array(rows).T
            head = "flat" if tex == 0 else f"tex {tex:g}"
            print(f"{name:<16}{head:<10}{len(rows):8d}{out.mean():18.2f}{out.max():7.2f}{(out > 1).sum():8d}{dices.mean():7.3f}")


if __name__ == "__main__":
    main()
