"""Benchmark of the shipped mask generator: volume control, plausibility, guidance, time per sample.

    python bench/mask_volume_control.py [--model DIR] [--seeds 8] [--steps 50] [--spacing MM | --grid NAME]
                                        [--device auto]
                                        [--json FILE] [--card]

Prints, for requested volumes 15-250 mL x seeds (each volume's seeds drawn as one batch): median absolute
relative volume error and Pearson r (guidance 3 and 1 as shipped, i.e. through the model's volume
calibration where it was fitted, and guidance 3 without it), label presence, lateral-ventricle
connectivity, left/right placement, and the time per sample, on the model grid, or with `--spacing` at that
voxel size, or on a named grid of the same field of view (`--grid fine`: the grid of pairs from a fine
image generator); the decoded label scores are interpolated before the argmax. Targets (issue 3): median error
<= 10 %, r >= 0.95, each label in >= 95 % of samples, each lateral ventricle one component in >= 90 %.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import ndimage

from ventkit.anatomy.grid import GRIDS, Grid
from ventkit.io import write_text
from ventkit.models import write_card
from ventkit.labels import LEFT_IDS, RIGHT_IDS, SEGMENTATION_IDS
from ventkit.synthesis.mask_generator import MaskGenerator

VOLUMES = (15, 30, 60, 100, 150, 200, 250)


def plausibility(maps) -> dict:
    present = np.mean([[lab in np.unique(m.array) for lab in SEGMENTATION_IDS] for m in maps], axis=0)
    one_piece = []
    sides_ok = []
    for m in maps:
        for lab in (4, 43):
            comps, n = ndimage.label(m.array == lab)
            sizes = np.bincount(comps.ravel())[1:]
            one_piece.append(n >= 1 and sizes.max() >= 0.95 * sizes.sum())
        x = (m.affine[:3, :3] @ np.indices(m.array.shape).reshape(3, -1) + m.affine[:3, 3:4])[0]
        flat = m.array.reshape(-1)
        left_x, right_x = x[np.isin(flat, list(LEFT_IDS))], x[np.isin(flat, list(RIGHT_IDS))]
        sides_ok.append(left_x.size > 0 and right_x.size > 0 and left_x.mean() < right_x.mean())
    return {"min_label_presence": float(present.min()), "least_present_label": int(SEGMENTATION_IDS[present.argmin()]),
            "labels_below_95_percent": int((present < 0.95).sum()), "lateral_one_component": float(np.mean(one_piece)),
            "left_on_left": float(np.mean(sides_ok))}


def run(gen: MaskGenerator, seeds: int, steps: int, guidance: float, calibrated: bool = True,
        grid: Grid | None = None):
    requested, measured, maps, seconds = [], [], [], []
    for v in VOLUMES:
        t0 = time.perf_counter()
        drawn = gen.sample(v, n=seeds, seed=0, guidance=guidance, steps=steps,  # seeds 0..seeds-1, one batch
                           calibrated=calibrated, grid=grid)
        seconds.append((time.perf_counter() - t0) / seeds)
        requested += [v] * seeds
        measured += [gen.ventricle_ml(m) for m in drawn]
        maps += drawn
    req, got = np.array(requested, float), np.array(measured)
    return {"median_rel_error": float(np.median(np.abs(got - req) / req)), "pearson_r": float(np.corrcoef(req, got)[0, 1]),
            "seconds_per_sample": float(np.mean(seconds)), **plausibility(maps)}, req, got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=50)
    drawn_on = p.add_mutually_exclusive_group()
    drawn_on.add_argument("--spacing", type=float, help="voxel size of the drawn maps, mm (default: the model grid)")
    drawn_on.add_argument("--grid", choices=sorted(GRIDS), help="a named grid of the model grid's field of view")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="also write the figures here (for `ventkit train export-mask --metrics`)")
    p.add_argument("--card", action="store_true", help="store the figures as the metrics of the model's card "
                                                       "(it checksums the same files as before)")
    args = p.parse_args()
    gen = MaskGenerator(args.model, device=args.device)
    grid = GRIDS[args.grid] if args.grid else gen.output_grid(args.spacing)
    print(f"mask generator {gen.card['files']['weights.pt'][:12]} on {gen.device}, {args.steps} DDIM steps, maps "
          f"of {grid.shape} voxels of {' x '.join(f'{s:.2f}' for s in grid.spacing)} mm")
    cal = gen.calibration
    own_curve = [n for n in (cal or {}).get("generated_ml_by_grid", {}) if n in GRIDS and GRIDS[n].matches(grid)]
    print("calibration: " + (f"fitted at guidance {cal['guidance']:g} on seeds {cal['seeds'][0]}-{cal['seeds'][1]}, "
                             f"the curve of the {own_curve[0] if own_curve else 'model'} grid" if cal else "none"))
    results = {}
    runs = [("guidance_3", 3.0, True), ("guidance_1", 1.0, True)] + ([("guidance_3_uncalibrated", 3.0, False)]
                                                                     if cal else [])
    for name, g, calibrated in runs:
        results[name], req, got = run(gen, args.seeds, args.steps, g, calibrated, grid)
        applied = calibrated and gen.condition_ml(100.0, g, grid) != 100.0
        print(f"\nguidance {g:g} ({'calibrated' if applied else 'uncalibrated'})")
        for v in VOLUMES:
            sel = req == v
            print(f"  requested {v:5.0f} mL: generated {got[sel].mean():6.1f} ± {got[sel].std():5.1f} mL")
        for k, val in results[name].items():
            print(f"  {k:<24}{val:10.3f}")
    err = {k: r["median_rel_error"] for k, r in results.items()}
    print(f"\nvolume error, guidance 1 / guidance 3 as shipped: {err['guidance_1'] / max(err['guidance_3'], 1e-9):.2f}x"
          " (> 1 means guidance helps)")
    if cal:
        print(f"without the calibration: {err['guidance_1'] / max(err['guidance_3_uncalibrated'], 1e-9):.2f}x")
    t0 = time.perf_counter()
    gen.sample(150, n=1, seed=0, guidance=3.0, steps=args.steps, grid=grid)
    single = time.perf_counter() - t0
    print(f"one sample alone (guidance 3): {single:.2f} s; in batches of {args.seeds}: "
          f"{results['guidance_3']['seconds_per_sample']:.2f} s per sample")
    metrics = {**{name: {k: round(v, 4) for k, v in r.items()} for name, r in results.items()},
               "seeds": args.seeds, "ddim_steps": args.steps, "single_sample_seconds": round(single, 3),
               "spacing_mm": [round(s, 3) for s in grid.spacing],
               "device": str(gen.device)}
    if args.json:
        write_text(args.json, json.dumps({"mask_generator": metrics}, indent=1))
    if args.card:
        card = {k: v for k, v in gen.card.items() if k != "files"}
        write_card(gen.folder, {**card, "metrics": metrics}, list(gen.card["files"]))
        print(f"wrote these figures into {gen.folder / 'model_card.json'}")


if __name__ == "__main__":
    main()
