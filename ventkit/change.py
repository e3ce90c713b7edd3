"""`ventkit change`: the ventricles of one patient at two visits, the change between them and its uncertainty.

Both scans are segmented with test-time passes (each volume gets an SD, `segment.uncertainty_of`), the
follow-up is rigidly registered to the baseline (`registration.register_rigid`) to show both on matched
slices and to check that they are the same head, and per structure the change (mL and %) gets an SD
that combines both visits' test-time spreads with the model's repeatability (the part of the change
between repeat scans of unchanged brains that the spreads do not explain, `bench/follow_up.py`, kept in
the model card as `follow_up`). Each visit's reported SD is calibrated for the volume's absolute error,
most of which is a bias that one head keeps at both visits; the change uses the spread before that
calibration (`test_time_spread_ml`). A change beyond 1.96 of its SDs is flagged: more than repeat scanning
alone would explain (95 %).
"""
from __future__ import annotations

import csv
import io as _io
import json
import math
import warnings
from pathlib import Path

import numpy as np

from .errors import VentkitError, VentkitWarning
from .io import Volume, read_volume, stem_of, write_text, write_volume
from .preview import pyplot, save_figure
from .registration import MIN_MATCH, register_rigid, resample_onto
from .segmentation.segment import Segmenter, check_uncertainty, segment_volume
from .volumetry import REPORT_ROWS, VolumeReport

Z_95 = 1.96


class RegistrationWarning(VentkitWarning):
    """The follow-up could not be matched to the baseline: another head, or a failed registration."""


def repeatability_ml(segmenter: Segmenter) -> dict[str, float]:
    """The model's repeat-scan SD of the change per structure (its card's `follow_up`), else zeros."""
    return {k: float(v) for k, v in getattr(segmenter, "card", {}).get("follow_up", {})
            .get("repeatability_sd_ml", {}).items()}


def test_time_spread_ml(report: VolumeReport) -> dict[str, float]:
    """Each volume's SD over the test-time passes, before the calibrated scale of `segment.uncertainty_of`."""
    scale = float((report.uncertainty or {}).get("sd_scale", 1.0))
    return {k: v / scale for k, v in report.ventricles_sd_ml.items()}


def compare(baseline: VolumeReport, followup: VolumeReport, repeat_sd: dict[str, float]) -> list[dict]:
    """One row per structure: volume and SD at both visits, change in mL and %, its SD (both visits'
    test-time spreads and the repeatability `repeat_sd`) and 95 % interval, and whether it exceeds what
    repeat scanning explains."""
    rows = []
    spread1, spread2 = test_time_spread_ml(baseline), test_time_spread_ml(followup)
    for key in REPORT_ROWS:
        v1, v2 = baseline.ventricles_ml[key], followup.ventricles_ml[key]
        s1, s2 = baseline.ventricles_sd_ml[key], followup.ventricles_sd_ml[key]
        sd = math.sqrt(spread1[key] ** 2 + spread2[key] ** 2 + repeat_sd.get(key, 0.0) ** 2)
        change = v2 - v1
        rows.append({"structure": key, "baseline_ml": v1, "baseline_sd_ml": s1, "followup_ml": v2, "followup_sd_ml": s2,
                     "change_ml": change, "change_percent": 100 * change / v1 if v1 else float("nan"),
                     "change_sd_ml": sd, "change_low_ml": change - Z_95 * sd, "change_high_ml": change + Z_95 * sd,
                     "changed": bool(abs(change) > Z_95 * sd)})
    return rows


def change_csv(rows: list[dict]) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def change_figure(path: Path, baseline: Volume, followup_moved: Volume, labels1: Volume, labels2_moved: Volume,
                  rows: list[dict]) -> Path:
    """Both visits on matched axial and coronal slices with their ventricle outlines, and the change per
    structure with its 95 % interval."""
    from .io import reorient_to_ras

    plt = pyplot()
    images = [reorient_to_ras(v).array for v in (baseline, followup_moved)]
    labels = [reorient_to_ras(v).array for v in (labels1, labels2_moved)]
    centre = np.argwhere(labels[0] > 0).mean(0).astype(int) if (labels[0] > 0).any() else np.array(images[0].shape) // 2
    fig = plt.figure(figsize=(13, 7))
    for row, (cut, name) in enumerate(((lambda a: a[:, :, centre[2]], "axial"), (lambda a: a[:, centre[1], :], "coronal"))):
        for col, (img, lab, visit) in enumerate(zip(images, labels, ("baseline", "follow-up (registered)"))):
            ax = fig.add_subplot(2, 3, 3 * row + col + 1)
            ax.imshow(cut(img).T, cmap="gray", origin="lower")
            ax.contour(cut(lab > 0).T, [0.5], colors="orange", linewidths=0.8)
            ax.set_title(f"{visit}, {name}", fontsize=9)
            ax.axis("off")
    ax = fig.add_subplot(1, 3, 3)
    names = [r["structure"].replace("_", " ") for r in rows]
    change = [r["change_ml"] for r in rows]
    err = [Z_95 * r["change_sd_ml"] for r in rows]
    colours = ["tab:red" if r["changed"] else "tab:gray" for r in rows]
    ax.barh(names, change, xerr=err, color=colours, capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("change (mL), 95 % interval; red: beyond repeat-scan variation")
    fig.tight_layout()
    return save_figure(fig, path)


def compare_visits(baseline_path: str | Path, followup_path: str | Path, out_dir: str | Path,
                   segmenter: Segmenter) -> dict:
    """Segment both visits, register the follow-up to the baseline, write `<baseline>_change.json`, `.csv`
    and `.png` (and both segmentations) in `out_dir`; every file is computed before the first is written."""
    check_uncertainty(segmenter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VentkitWarning)
        scans = [read_volume(baseline_path), read_volume(followup_path)]
        (labels1, report1), (labels2, report2) = (segment_volume(s, segmenter, uncertainty=True) for s in scans)
        registration = register_rigid(scans[0], scans[1])
        if registration.match < MIN_MATCH:
            warnings.warn(RegistrationWarning(
                f"the follow-up does not match the baseline after rigid registration (structure correlation "
                f"{registration.match:.2f} < {MIN_MATCH}): not the same head, or the registration failed; the "
                f"volumes are each right, the comparison of the two may not be"))
    moved = resample_onto(scans[1], scans[0], registration.transform)
    labels2_moved = resample_onto(labels2, scans[0], registration.transform, labels=True)
    rows = compare(report1, report2, repeatability_ml(segmenter))
    result = {"baseline": str(baseline_path), "followup": str(followup_path), "model": segmenter.description,
              "registration": {"match": round(registration.match, 4), "rotation_deg": round(registration.rotation_deg, 2),
                               "translation_mm": round(registration.translation_mm, 2)},
              "repeatability_sd_ml": repeatability_ml(segmenter), "structures": rows,
              "warnings": list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, VentkitWarning)))}
    if not np.isfinite([r["change_ml"] for r in rows]).all():
        raise VentkitError("the change could not be computed")
    out, stem = Path(out_dir), stem_of(baseline_path)
    files = {"json": out / f"{stem}_change.json", "csv": out / f"{stem}_change.csv",
             "png": out / f"{stem}_change.png", "baseline_labels": out / f"{stem}_baseline_ventricles.nii.gz",
             "followup_labels": out / f"{stem_of(followup_path)}_followup_ventricles.nii.gz"}
    write_volume(labels1, files["baseline_labels"], dtype=np.int16)
    write_volume(labels2, files["followup_labels"], dtype=np.int16)
    write_text(files["csv"], change_csv(rows))
    change_figure(files["png"], scans[0], moved, labels1, labels2_moved, rows)
    write_text(files["json"], json.dumps({**result, "files": {k: p.name for k, p in files.items()}}, indent=1))
    return {**result, "files": files}
