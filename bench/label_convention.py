"""Does a training set's ventricle boundary follow a model's convention? Model volume against label volume.

    python bench/label_convention.py DATASET [DATASET ...] [--model augmented] [--model-dir FOLDER]
                                     [--cases 6] [--stride 7]

Segments every `stride`-th training case (up to `cases`) of each nnU-Net raw dataset with the model and
prints, per case, the ventricle volume of its label map (labelsTr; voxels marked nnU-Net's "ignore" are
shown apart, not counted) and the model's, then per dataset the median and spread of the relative
difference. A dataset whose labels were drawn by another segmenter shows that segmenter's convention as
a consistent offset, which a model trained on it learns; rendered datasets (exact labels) show the
model's own error instead.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from ventkit.io import read_volume
from ventkit.labels import NNUNET_IGNORE
from ventkit.segmentation.segment import load_segmenter
from ventkit.segmentation.sides import SidesWarning


def label_ml(path: Path) -> tuple[float, float]:
    """Ventricle and ignored volume (mL) of an nnU-Net label map."""
    v = read_volume(path)
    ignored = v.array == NNUNET_IGNORE
    return float(((v.array > 0) & ~ignored).sum() * v.voxel_ml), float(ignored.sum() * v.voxel_ml)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", type=Path)
    ap.add_argument("--model", default="augmented")
    ap.add_argument("--model-dir")
    ap.add_argument("--cases", type=int, default=6, help="cases per dataset")
    ap.add_argument("--stride", type=int, default=7, help="take every stride-th training case")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    warnings.simplefilter("ignore", SidesWarning)  # totals only: the sides do not count here
    segmenter = load_segmenter(args.model, args.device, notify=lambda _: None, folder=args.model_dir)
    print(f"{'dataset':<40}{'case':<14}{'labels mL':>10}{'ignored':>9}{'model mL':>10}{'diff %':>8}")
    summary = {}
    for data in args.datasets:
        ending = json.loads((data / "dataset.json").read_text())["file_ending"]
        labels = sorted((data / "labelsTr").glob(f"*{ending}"))[:: args.stride][: args.cases]
        diffs = []
        for label in labels:
            case = label.name[: -len(ending)]
            truth, ignored = label_ml(label)
            found = segmenter.segment(read_volume(data / "imagesTr" / f"{case}_0000{ending}"))
            model = float((found.array > 0).sum() * found.voxel_ml)
            diffs.append((model - truth) / truth * 100)
            print(f"{data.name:<40}{case:<14}{truth:>10.1f}{ignored:>9.1f}{model:>10.1f}{diffs[-1]:>+8.1f}", flush=True)
        summary[data.name] = diffs
    print()
    for name, diffs in summary.items():
        print(f"{name:<40} model vs labels: median {np.median(diffs):+.1f} %, "
              f"range {min(diffs):+.1f} to {max(diffs):+.1f} % ({len(diffs)} cases)")


if __name__ == "__main__":
    sys.exit(main())
