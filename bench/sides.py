"""Left and right on real anatomy through the whole segmenter: mirrored, turned and LPS-stored heads.

    python bench/sides.py [--subjects training_seg_01 ...] [--model augmented] [--model-dir FOLDER] [--passes N]

Each shared label map is rendered as a 1 mm T1 and segmented as it is, mirrored left-right in its voxels
(a brain with its sides swapped: the left and right volumes must swap), stored LPS (nothing may change),
and turned by 15 and 30 degrees about each axis (the sides must hold: each volume within 5 %). Prints
every variant's left and right lateral-ventricle volumes, the worst deviation of each kind, and issue 30's
verdict. The truth (the rendered map's own volumes) is printed beside them, with the share of the true
lateral ventricles' voxels given the wrong side (swapped) and no lateral label at all (missed).
`--passes N` segments with N test-time passes (nnU-Net's mirrorings, as `--uncertainty` does; with an
even N a mirrored scan's segmentation is the mirror image of the scan's) instead of one.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

from head_variants import TURNS, lateral_ml, mirrored, stored_lps, turned  # noqa: E402
from ventkit.anatomy.render import RenderSpec, render  # noqa: E402
from ventkit.anatomy.subjects import default_label_dir, list_subjects, load_subject  # noqa: E402
from ventkit.io import Volume  # noqa: E402
from ventkit.labels import mirror_labels, to_segmentation  # noqa: E402
from ventkit.segmentation.segment import load_segmenter  # noqa: E402

MAX_SWAP_PERCENT = 3.0  # mirrored: each side within this of the other side's volume unmirrored
MAX_TURN_PERCENT = 5.0


def deviation(a, b) -> float:
    """Largest relative difference (%) between two (left, right) pairs."""
    return float(np.max(np.abs(np.subtract(a, b)) / np.maximum(np.abs(b), 1e-6)) * 100)


def side_errors(found: Volume, truth: Volume) -> tuple[float, float]:
    """Shares (%) of the true lateral ventricles' voxels labelled the other side, and labelled neither: a
    wrong side against a segmentation miss."""
    true_left, true_right = truth.array == 4, truth.array == 43
    n = max(int(true_left.sum() + true_right.sum()), 1)
    swapped = int((true_left & (found.array == 43)).sum() + (true_right & (found.array == 4)).sum())
    missed = int(((true_left | true_right) & ~np.isin(found.array, (4, 43))).sum())
    return 100 * swapped / n, 100 * missed / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", nargs="*", help="label map names (default: all shared maps)")
    ap.add_argument("--model", default="augmented")
    ap.add_argument("--model-dir")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--passes", type=int, default=1, help="test-time passes (1: as `ventkit segment`)")
    args = ap.parse_args()
    segmenter = load_segmenter(args.model, args.device, notify=lambda _: None, folder=args.model_dir)

    def segment(volume: Volume) -> Volume:
        if args.passes > 1:
            return segmenter.segment_with_uncertainty(volume, args.passes)[0]
        return segmenter.segment(volume)
    maps = list_subjects(default_label_dir())
    worst = {"mirrored": 0.0, "lps": 0.0, "turned": 0.0}
    print(f"{'subject':<18}{'variant':<12}{'left mL':>9}{'right mL':>9}{'truth L':>9}{'truth R':>9}{'off %':>8}"
          f"{'swapped %':>10}{'missed %':>9}")
    for k, name in enumerate(args.subjects or sorted(maps)):
        labels = load_subject(str(maps[name]))
        labels = labels.with_array(to_segmentation(labels.array))
        image, _ = render(labels.array, labels.spacing, np.random.default_rng(k), RenderSpec(thickness_mm=(1, 1)))
        image = Volume(image, labels.affine, name)
        t0 = time.time()
        base_labels = segment(image)
        base = lateral_ml(base_labels)
        # the mirrored brain's truth: its left structures, now on the other side of the volume, are left
        variants = {"as is": (image, labels, base),
                    "mirrored": (mirrored(image, labels)[0], labels.with_array(mirror_labels(labels.array)),
                                 base[::-1]),
                    "lps": (stored_lps(image), stored_lps(labels), base)}
        for axis, degrees in TURNS:
            variants[f"{axis} {degrees}"] = (*turned(image, labels, axis, degrees), base)
        for variant, (img, lab, expected) in variants.items():
            found_labels = base_labels if variant == "as is" else segment(img)
            found = lateral_ml(found_labels)
            swapped, missed = side_errors(found_labels, lab)
            off = deviation(found, expected)
            kind = "turned" if variant[0] in "xyz" else variant
            if kind in worst:
                worst[kind] = max(worst[kind], off)
            truth = lateral_ml(lab)
            print(f"{name:<18}{variant:<12}{found[0]:9.1f}{found[1]:9.1f}{truth[0]:9.1f}{truth[1]:9.1f}{off:8.1f}"
                  f"{swapped:10.1f}{missed:9.1f}",
                  flush=True)
        print(f"{name:<18}{len(variants)} segmentations in {time.time() - t0:.0f} s")
    print(f"\nworst change: mirrored {worst['mirrored']:.1f} % (the sides must swap; target < {MAX_SWAP_PERCENT:g} %), "
          f"stored LPS {worst['lps']:.2f} %, turned {worst['turned']:.1f} % (target < {MAX_TURN_PERCENT:g} %)")
    met = worst["mirrored"] < MAX_SWAP_PERCENT and worst["lps"] < 0.5 and worst["turned"] < MAX_TURN_PERCENT
    print("issue 30 sides target: " + ("met" if met else "missed"))


if __name__ == "__main__":
    main()
