"""`ventkit train calibrate-uncertainty`: scale the test-time SD of a segmenter's volumes to its errors.

The spread of the test-time passes (`segment --uncertainty`) measures how much the network's answer moves
under mirroring, not how far it is from the truth: alone it is too narrow. Segmenting cases of known
volume that the model never saw, the SD is scaled so that 95 % of the total-volume errors lie within
±2 SD (`sd_scale`, written into the model's cards). Fit on renders of training subjects only (new seeds);
`ventkit evaluate --uncertainty` then checks the calibration on the hold-out subjects.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import read_volume
from ..labels import VENTRICLE_IDS
from ..progress import track
from ..segmentation.predictor import MIRRORINGS, VentricleSegmenter
from .segmenter import source_cases, update_cards

COVERAGE = 0.95  # share of the fitting cases whose error lies within ±2 SD after scaling


def fit_sd_scale(model_dir: str | Path, data: list[str | Path], max_cases: int = 24, device: str = "auto",
                 quiet: bool = False, passes: int = len(MIRRORINGS)) -> dict:
    """Segment up to `max_cases` training cases of `data` (ventkit corpora of training subjects) with
    `passes` test-time passes; the scale of the SD that covers COVERAGE of the total-volume errors at ±2 SD."""
    from ..segmentation.segment import uncertainty_of

    cases = []
    for src in map(Path, data):
        _, ids = source_cases(src)
        for case in ids:
            meta = json.loads((src / "meta" / f"{case}.json").read_text()) if (src / "meta").is_dir() else {}
            if meta.get("split", "train") != "train":
                raise InputError(src, "calibrate on training subjects only: the hold-out checks the result")
            cases.append((src / "imagesTr" / f"{case}_0000.nii.gz", src / "labelsFullTr" / f"{case}.nii.gz"))
    if not cases:
        raise InputError(", ".join(map(str, data)), "no cases")
    cases = [cases[i] for i in np.linspace(0, len(cases) - 1, min(max_cases, len(cases))).round().astype(int)]
    segmenter = VentricleSegmenter(model_dir, device)
    segmenter.card = {k: v for k, v in segmenter.card.items() if k != "uncertainty"}  # fit the raw SD
    ratios, errors, sds = [], [], []
    for image_path, truth_path in track(cases, len(cases), "calibrate uncertainty", quiet=quiet):
        image, truth = read_volume(image_path), read_volume(truth_path, labels=True)
        labels, each = segmenter.segment_with_uncertainty(image, passes)
        error = abs(float(np.isin(labels.array, VENTRICLE_IDS).sum() - np.isin(truth.array, VENTRICLE_IDS).sum())
                    * image.voxel_ml)
        sd = uncertainty_of(segmenter, each)[0]["total"]
        errors.append(error)
        sds.append(sd)
        ratios.append(error / max(sd, 1e-3))
    scale = max(1.0, float(np.quantile(ratios, COVERAGE)) / 2)
    return {"sd_scale": round(scale, 3), "passes": passes, "coverage_target": COVERAGE,
            "fitted_on": f"{len(cases)} cases of {', '.join(Path(d).name for d in data)} (training subjects)",
            "raw_within_2sd": round(float(np.mean(np.array(errors) <= 2 * np.array(sds))), 3),
            "mean_raw_sd_ml": round(float(np.mean(sds)), 3), "mae_ml": round(float(np.mean(errors)), 3)}


def calibrate_uncertainty(model_dir: str | Path, data: list[str | Path], max_cases: int = 24,
                          device: str = "auto", passes: int = len(MIRRORINGS)) -> dict:
    """Fit `fit_sd_scale` and write it into the model's cards as `uncertainty` (its `passes` are then
    what `--uncertainty` runs)."""
    fitted = fit_sd_scale(model_dir, data, max_cases, device, passes=passes)
    update_cards(model_dir, {"uncertainty": fitted})
    return fitted
