"""Follow-up between visits: repeatability of the measured change and accuracy on known changes (issue 34).

    python bench/follow_up.py [--model augmented | --model-dir FOLDER] [--repeats 3] [--contrasts t1]
                              [--cache DIR] [--write-card] [--per-scan]

Each scan is a SynthSeg-style render on the paper's grid (1.67 x 1.75 x 1.67 mm) with its own acquisition
(bias field, noise, slice thickness 1-6 mm, and contrast: by default a T1 drawn afresh from the T1 tissue
table at every visit, as a follow-up repeats the baseline's sequence; `--contrasts t1 random` also mixes in
SynthSeg's randomized contrasts) and head position (turned up to 10 degrees, moved up to 10 mm), segmented
with test-time passes as `ventkit change` does. With `--cache`, each scan's volumes are kept there (keyed
by the model's weights and the image itself) and a stopped run goes on where it stopped.

- Repeatability: the same brain scanned twice. Fitted on the 12 training subjects (per structure, the RMS
  of the measured change beyond what both visits' test-time spreads explain: `--write-card` stores it in
  the model's cards as `follow_up`, where `ventkit change` reads it), then checked on the 4 hold-out
  subjects: the SD of their measured change and how many of these unchanged pairs are flagged as changed
  (target: SD <= 2 mL, no flag in >= 95 %). The smallest change detected with 95 % confidence is 1.96 x
  the SD of the change.
- Known change: each hold-out subject and the same brain with its ventricles enlarged or shrunk by 5, 10
  and 20 mL (the ventricle flow of `corpus build`): the measured change against the true one (target:
  within 2 mL or 15 %, whichever is larger, and the truth inside the reported 95 % interval in >= 80 %).
"""
from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ventkit.anatomy.corpus import make_labels
from ventkit.anatomy.deform import DeformationSpec
from ventkit.anatomy.grid import GRIDS
from ventkit.anatomy.render import RenderSpec, load_generation_classes, render
from ventkit.anatomy.subjects import default_label_dir, default_priors_dir, list_subjects, load_subject, split_subjects
from ventkit.change import Z_95, compare
from ventkit.evaluation import cached_row, model_identity
from ventkit.io import Volume
from ventkit.labels import VENTRICLE_IDS, to_segmentation
from ventkit.segmentation.segment import load_segmenter, segment_volume
from ventkit.training.segmenter import update_cards
from ventkit.volumetry import REPORT_ROWS

CHANGES_ML = (-20.0, -10.0, -5.0, 5.0, 10.0, 20.0)
HEAD_POSITION = DeformationSpec(rotation_deg=10.0, scaling=0.0, shearing=0.0, translation_mm=10.0, elastic_std_mm=0.0)
MAX_SD_ML = 2.0


def scan(source: Volume, rng: np.random.Generator, classes, contrasts: tuple[str, ...],
         target_ml: float | None = None) -> tuple[Volume, float, dict]:
    """One acquisition of `source` (its ventricles resized to `target_ml` first): image, true total mL and
    the acquisition's parameters."""
    grid = GRIDS["paper"]
    generation, _ = make_labels(source, grid, target_ml, rng, deformation=HEAD_POSITION)
    spec = RenderSpec(contrast=contrasts[int(rng.integers(len(contrasts)))], thickness_mm=(1.0, 6.0))
    image, acquisition = render(generation.array, grid.spacing, rng, spec, classes)
    truth = float(np.isin(to_segmentation(generation.array), VENTRICLE_IDS).sum()) * float(np.prod(grid.spacing)) / 1000
    return generation.with_array(image), truth, acquisition


class Visits:
    """Measures scans as `ventkit change` does (volumes and their SDs), each kept in `cache` when given."""

    def __init__(self, segmenter, cache: str | None, per_scan: bool = False):
        self.segmenter, self.cache, self.per_scan = segmenter, Path(cache) if cache else None, per_scan
        self.seen: dict[str, dict] = {}  # a baseline compared with several follow-ups is segmented once

    def measure(self, image: Volume) -> SimpleNamespace:
        """Volumes and SDs of `image`; the cache keeps the SDs before the card's calibrated scale."""
        key = hashlib.sha256(image.array.tobytes() + np.asarray(image.affine).tobytes()).hexdigest()[:24]

        def compute() -> dict:
            report = segment_volume(image, self.segmenter, uncertainty=True)[1]
            scale = report.uncertainty["sd_scale"]
            return {"ml": report.ventricles_ml, "raw_sd_ml": {k: v / scale for k, v in report.ventricles_sd_ml.items()}}

        if key not in self.seen:
            passes = self.segmenter.card.get("uncertainty", {}).get("passes")
            self.seen[key] = cached_row(self.cache / f"{key}.json" if self.cache else None,
                                        f"{model_identity(self.segmenter)} passes:{passes}", compute)
        row = self.seen[key]
        scale = float(self.segmenter.card.get("uncertainty", {}).get("sd_scale", 1.0))
        return SimpleNamespace(ventricles_ml=row["ml"], uncertainty={"sd_scale": scale},
                               ventricles_sd_ml={k: scale * v for k, v in row["raw_sd_ml"].items()})

    def change(self, first: tuple, second: tuple, repeat_sd: dict, label: str = "") -> dict:
        """Per structure, `compare` of two `scan`s; with `per_scan` and a `label`, each scan's truth and error
        printed."""
        rows = compare(self.measure(first[0]), self.measure(second[0]), repeat_sd)
        if self.per_scan and label:
            for visit, (image, truth, acq) in enumerate((first, second), 1):
                ml = self.measure(image).ventricles_ml["total"]
                print(f"  {label} visit {visit}: {acq['thickness_mm']:.1f} mm slices along axis {acq['slice_axis']}, "
                      f"noise {acq['noise']:.3f}; true {truth:.1f} mL, measured {ml:.1f} mL ({ml - truth:+.1f})")
        return {r["structure"]: r for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="augmented")
    ap.add_argument("--model-dir")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3, help="unchanged pairs per hold-out subject")
    ap.add_argument("--contrasts", nargs="+", default=["t1"], choices=["t1", "random"],
                    help="contrasts each visit is drawn from (default: T1 at every visit)")
    ap.add_argument("--cache", help="folder that keeps each scan's volumes, so that a stopped run goes on")
    ap.add_argument("--write-card", action="store_true", help="store the fitted repeatability in the model's cards")
    ap.add_argument("--per-scan", action="store_true", help="print each unchanged scan's acquisition, truth and error")
    args = ap.parse_args()
    segmenter = load_segmenter(args.model, args.device, notify=lambda _: None, folder=args.model_dir)
    segmenter.card = {k: v for k, v in segmenter.card.items() if k != "follow_up"}  # measured afresh here
    label_dir = default_label_dir()
    paths, split = list_subjects(label_dir), split_subjects(label_dir)
    classes = load_generation_classes(default_priors_dir(label_dir))
    visits, contrasts = Visits(segmenter, args.cache, args.per_scan), tuple(args.contrasts)
    t0 = time.time()

    fit = []  # the repeatability, from training subjects
    for k, name in enumerate(split["train"]):
        source = load_subject(str(paths[name]))
        rng = np.random.default_rng([7, k])
        fit.append(visits.change(scan(source, rng, classes, contrasts), scan(source, rng, classes, contrasts), {}, name))
    repeat_sd = {key: float(np.sqrt(max(0.0, np.mean([f[key]["change_ml"] ** 2 - f[key]["change_sd_ml"] ** 2
                                                      for f in fit])))) for key in REPORT_ROWS}
    print(f"repeatability fitted on {len(fit)} unchanged pairs of training subjects (mL; the RMS change beyond "
          "the test-time spreads): " + ", ".join(f"{k} {v:.2f}" for k, v in repeat_sd.items()))

    unchanged, known = [], []
    for k, name in enumerate(split["holdout"]):
        source = load_subject(str(paths[name]))
        for r in range(args.repeats):
            rng = np.random.default_rng([8, k, r])
            unchanged.append(visits.change(scan(source, rng, classes, contrasts),
                                           scan(source, rng, classes, contrasts), repeat_sd, name)["total"])
        rng = np.random.default_rng([9, k])
        base = scan(source, rng, classes, contrasts)  # one baseline visit, several follow-ups
        for delta in CHANGES_ML:
            target = base[1] + delta
            if not 5 <= target <= 300:
                continue
            follow = scan(source, rng, classes, contrasts, target)
            row = visits.change(base, follow, repeat_sd)["total"]
            known.append({**row, "true_change_ml": follow[1] - base[1], "subject": name})
            print(f"{name}: true change {follow[1] - base[1]:+6.1f} mL, measured {row['change_ml']:+6.1f} ± "
                  f"{Z_95 * row['change_sd_ml']:.1f} mL", flush=True)

    changes = np.array([u["change_ml"] for u in unchanged])
    sd = float(np.std(changes, ddof=1)) if len(changes) > 1 else float("nan")
    flagged = float(np.mean([u["changed"] for u in unchanged]))
    print(f"\nunchanged hold-out pairs: {len(unchanged)}; SD of the measured total change {sd:.2f} mL "
          f"(target <= {MAX_SD_ML:g}); flagged as changed {100 * flagged:.0f} % (target <= 5 %)")
    print(f"smallest total change detected with 95 % confidence: {Z_95 * sd:.2f} mL (1.96 x SD of the change)")
    ok = [abs(k["change_ml"] - k["true_change_ml"]) <= max(2.0, 0.15 * abs(k["true_change_ml"])) for k in known]
    inside = [k["change_low_ml"] <= k["true_change_ml"] <= k["change_high_ml"] for k in known]
    print(f"known changes: {len(known)}; within 2 mL or 15 %: {100 * np.mean(ok):.0f} % (target 100 %); "
          f"truth inside the 95 % interval: {100 * np.mean(inside):.0f} % (target >= 80 %)")
    print(f"{time.time() - t0:.0f} s")
    if args.write_card:
        update_cards(segmenter.folder, {"follow_up": {
            "repeatability_sd_ml": {k: round(v, 3) for k, v in repeat_sd.items()},
            "fitted_on": f"{len(fit)} unchanged pairs of training subjects, bench/follow_up.py",
            "holdout": {"unchanged_pairs": len(unchanged), "change_sd_ml": round(sd, 3), "flagged": round(flagged, 3),
                        "known_changes": len(known), "known_within_2ml_or_15pct": round(float(np.mean(ok)), 3),
                        "known_inside_95pct_interval": round(float(np.mean(inside)), 3),
                        "contrasts": list(contrasts), "test_time_passes": segmenter.card.get("uncertainty", {}).get("passes")}}})
        print(f"wrote the repeatability into the cards of {segmenter.folder}")


if __name__ == "__main__":
    main()
