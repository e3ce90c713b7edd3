"""`ventkit evaluate`: the paper's experiment on the fixed hold-out subjects.

The hold-out set is rendered from the subjects no model trains on (`anatomy.subjects.split_subjects`): their
natural ventricles and ventricles inflated to 100-300 mL, with T1 and randomized contrast and slice
thicknesses of 1-6 mm. Every model segments every case; the table gives the total ventricle volume's
mean absolute error ± SD (mL) and the Dice of the ventricles ± SD, as in Ruschke et al.
"""
from __future__ import annotations

import csv
import io as _io
import json
from pathlib import Path
from typing import Callable

import numpy as np

from .anatomy.corpus import build_corpus
from .anatomy.nnunet import FILE_ENDING, case_metas
from .anatomy.subjects import default_priors_dir
from .io import read_volume, write_text
from .preview import pyplot, save_figure
from .labels import VENTRICLE_GROUPS, VENTRICLE_IDS
from .progress import Callback, track
from .segmentation.segment import Segmenter, uncertainty_of

# sub-dataset -> (cases, volumes, contrast)
HOLDOUT_RECIPE: dict[str, tuple[int, str, str]] = {
    "natural_t1": (8, "natural", "t1"),
    "enlarged_t1": (16, "uniform:100:300", "t1"),
    "enlarged_random_contrast": (8, "uniform:100:300", "random"),
}
LATERAL = VENTRICLE_GROUPS["lateral"]
HOLDOUT_TITLES = {"natural_t1": "natural volumes, T1", "enlarged_t1": "inflated to 100–300 mL, T1",
                  "enlarged_random_contrast": "inflated to 100–300 mL, random contrast"}


def build_holdout(root: str | Path, seed: int = 1000, label_dir=None, priors_dir=None, scale: float = 1.0,
                  grid: str = "paper", quiet: bool = False) -> list[Path]:
    """Render the hold-out sub-datasets under `root` (resumable); `scale` shrinks the case counts."""
    priors_dir = priors_dir or default_priors_dir(label_dir)
    folders = []
    for i, (name, (n, volumes, contrast)) in enumerate(HOLDOUT_RECIPE.items()):
        folder = Path(root) / f"Dataset9{i:02d}_Holdout_{name}"
        build_corpus(folder, max(1, round(n * scale)), volumes, seed + i, "holdout", grid, contrast,
                     label_dir, priors_dir, quiet=quiet)
        folders.append(folder)
    return folders


def holdout_cases(folders: list[Path]) -> list[dict]:
    """Test cases (image, 33-label truth, meta) of hold-out datasets written by `build_holdout`."""
    cases = []
    for folder in folders:
        for info in case_metas(folder):
            if not info.get("test"):
                continue
            case = info["case_id"]
            cases.append({"set": folder.name, "case": case, "subject": info.get("subject"),
                          "image": folder / "imagesTs" / f"{case}_0000{FILE_ENDING}",
                          "truth": folder / "labelsFullTs" / f"{case}{FILE_ENDING}"})
    return cases


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def score(pred: np.ndarray, truth: np.ndarray, voxel_ml: float) -> dict:
    """Total ventricle volumes, their error, and Dice of all ventricles and of the lateral ventricles."""
    p, t = np.isin(pred, VENTRICLE_IDS), np.isin(truth, VENTRICLE_IDS)
    return {"true_ml": float(t.sum() * voxel_ml), "pred_ml": float(p.sum() * voxel_ml),
            "error_ml": float((p.sum() - t.sum()) * voxel_ml), "dice": dice(p, t),
            "dice_lateral": dice(np.isin(pred, LATERAL), np.isin(truth, LATERAL))}


def model_identity(seg: Segmenter) -> str:
    """What a segmenter's output depends on: its description and, for an nnU-Net model, its weights' sha256."""
    files = getattr(seg, "card", {}).get("files", {})
    return seg.description + "".join(f" {k}:{v}" for k, v in sorted(files.items()))


def score_identity(seg: Segmenter, case: dict) -> str:
    """What a cached score depends on: `model_identity` and the case's image and truth files (path, size,
    modification time)."""
    stats = [(Path(case[k]).resolve(), Path(case[k]).stat()) for k in ("image", "truth")]
    return model_identity(seg) + "".join(f" {p}:{st.st_size}:{st.st_mtime_ns}" for p, st in stats)


def cached_row(path: str | Path | None, identity: str, compute: Callable[[], dict]) -> dict:
    """`compute()`, kept in `path` (JSON, written atomically) beside `identity` and read back from there on
    later calls while `identity` is the same: a long benchmark that stops goes on where it stopped."""
    if path is not None and Path(path).is_file():
        saved = json.loads(Path(path).read_text())
        if saved.get("identity") == identity:
            return saved["row"]
    row = compute()
    if path is not None:
        write_text(path, json.dumps({"identity": identity, "row": row}))
    return row


def segment_scored(seg: Segmenter, image, truth, uncertainty: bool) -> dict:
    """`score` of one case; with `uncertainty` (for segmenters that give one) also the SD of the total
    volume (`sd_ml`, see `segment.uncertainty_of`)."""
    if uncertainty and hasattr(seg, "segment_with_uncertainty"):
        pred, passes = seg.segment_with_uncertainty(image)
        return {**score(pred.array, truth.array, image.voxel_ml), "sd_ml": uncertainty_of(seg, passes)[0]["total"]}
    return score(seg.segment(image).array, truth.array, image.voxel_ml)


def run_evaluation(cases: list[dict], segmenters: dict[str, Segmenter], callback: Callback | None = None,
                   quiet: bool = False, cache_dir: str | Path | None = None,
                   uncertainty: tuple[str, ...] = ()) -> list[dict]:
    """One row per (case, model). With `cache_dir`, each row is also kept there (`<model>/<set>/<case>.json`,
    `cached_row`) and reused on the next call while the model and the case files are the same
    (`score_identity`): an interrupted evaluation, or a slow reference such as SAMSEG, goes on where it stopped.
    The models named in `uncertainty` (VentSegment's) give each total volume an SD (`sd_ml`)."""
    rows = []
    for case in track(cases, len(cases), "evaluate", callback, quiet):
        loaded: list = []

        def compute(name: str, seg: Segmenter) -> dict:
            if not loaded:
                loaded.extend((read_volume(case["image"]), read_volume(case["truth"], labels=True)))
            return {"model": name, "set": case["set"], "case": case["case"], "subject": case["subject"],
                    **segment_scored(seg, *loaded, name in uncertainty)}

        for name, seg in segmenters.items():
            cached = Path(cache_dir) / name / case["set"] / f"{case['case']}.json" if cache_dir else None
            identity = score_identity(seg, case) + (" with uncertainty" if name in uncertainty else "")
            rows.append(cached_row(cached, identity, lambda: compute(name, seg)))
    return rows


def summarize(rows: list[dict], by: tuple[str, ...] = ("model",)) -> list[dict]:
    """Per group of `by` (model, or model and hold-out set): n, volume MAE ± SD (mL), mean signed error,
    Dice ± SD, lateral Dice."""
    out = []
    for group in dict.fromkeys(tuple(r[k] for k in by) for r in rows):
        r = [x for x in rows if tuple(x[k] for k in by) == group]
        err = np.array([x["error_ml"] for x in r])
        d = np.array([x["dice"] for x in r])
        out.append({**dict(zip(by, group)), "n": len(r), "mae_ml": float(np.abs(err).mean()),
                    "mae_sd_ml": float(np.abs(err).std(ddof=1)) if len(r) > 1 else 0.0,
                    "bias_ml": float(err.mean()), "dice": float(d.mean()),
                    "dice_sd": float(d.std(ddof=1)) if len(r) > 1 else 0.0,
                    "dice_lateral": float(np.mean([x["dice_lateral"] for x in r])),
                    **calibration(r)})
    return out


def calibration(rows: list[dict]) -> dict:
    """For rows with an SD: the mean SD (mL) and how often the truth lies within ±2 SD of the volume."""
    sd = np.array([x["sd_ml"] for x in rows if x.get("sd_ml") is not None])
    if len(sd) < len(rows) or not len(sd):
        return {}
    err = np.abs([x["error_ml"] for x in rows])
    return {"mean_sd_ml": float(sd.mean()), "within_2sd": float((err <= 2 * sd).mean())}


def markdown_table(summary: list[dict]) -> str:
    """The paper's table; with a `set` column when the summary is per hold-out set."""
    by_set = "set" in summary[0]
    sd = any("within_2sd" in s for s in summary)
    lines = ["| model |" + (" hold-out set |" if by_set else "") + " cases | volume MAE ± SD (mL) | bias (mL) | "
             "Dice ± SD | lateral Dice |" + (" mean SD (mL) | truth within ±2 SD |" if sd else ""),
             "|---|" + ("---|" if by_set else "") + "---|---|---|---|---|" + ("---|---|" if sd else "")]
    for s in summary:
        lines.append(f"| {s['model']} |" + (f" {s['set']} |" if by_set else "") +
                     f" {s['n']} | {s['mae_ml']:.2f} ± {s['mae_sd_ml']:.2f} | {s['bias_ml']:+.2f} | "
                     f"{s['dice']:.3f} ± {s['dice_sd']:.3f} | {s['dice_lateral']:.3f} |" +
                     ((f" {s['mean_sd_ml']:.2f} | {100 * s['within_2sd']:.0f} % |" if "within_2sd" in s else " | |")
                      if sd else ""))
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict]) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot(rows: list[dict], path: Path) -> Path:
    """Bland-Altman (left) and predicted-vs-true scatter (right), one colour per model."""
    plt = pyplot()
    fig, (ba, sc) = plt.subplots(1, 2, figsize=(11, 4.5))
    top = max(max(r["true_ml"], r["pred_ml"]) for r in rows) * 1.05
    for model in dict.fromkeys(r["model"] for r in rows):
        t = np.array([r["true_ml"] for r in rows if r["model"] == model])
        p = np.array([r["pred_ml"] for r in rows if r["model"] == model])
        diff = p - t
        (line,) = ba.plot((p + t) / 2, diff, "o", ms=4, alpha=0.7, label=model)
        ba.axhline(diff.mean(), color=line.get_color(), lw=1)
        for k in (-1.96, 1.96):
            ba.axhline(diff.mean() + k * diff.std(), color=line.get_color(), lw=0.7, ls="--")
        sc.plot(t, p, "o", ms=4, alpha=0.7, color=line.get_color(), label=model)
    ba.set(xlabel="mean of predicted and true volume (mL)", ylabel="predicted - true (mL)",
           title="Bland-Altman: total ventricle volume")
    sc.plot([0, top], [0, top], "k-", lw=0.8)
    sc.set(xlim=(0, top), ylim=(0, top), xlabel="true volume (mL)", ylabel="predicted volume (mL)",
           title="predicted vs true")
    ba.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_results(rows: list[dict], out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    summary, per_set = summarize(rows), summarize(rows, by=("model", "set"))
    files = {"cases": write_text(out / "cases.csv", _csv(rows)),
             "summary": write_text(out / "summary.csv", _csv(summary)),
             "summary_by_set": write_text(out / "summary_by_set.csv", _csv(per_set)),
             "table": write_text(out / "table.md", markdown_table(summary) + "\n" + markdown_table(per_set)),
             "plot": plot(rows, out / "bland_altman_scatter.png"),
             "metrics": write_text(out / "metrics.json", json.dumps(metrics_by_model(summary, per_set), indent=1))}
    return files


def metrics_by_model(summary: list[dict], per_set: list[dict]) -> dict:
    """{model: {"holdout": overall summary + "by_set"}}: what `train export-segment --metrics` puts in a card."""
    strip = lambda row: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "model"}  # noqa: E731
    return {s["model"]: {"holdout": {**strip(s), "by_set": [strip(x) for x in per_set if x["model"] == s["model"]]}}
            for s in summary}


def set_title(folder_name: str) -> str:
    """`Dataset901_Holdout_enlarged_t1` -> "inflated to 100–300 mL, T1" (other names as they are)."""
    return HOLDOUT_TITLES.get(folder_name.split("_Holdout_", 1)[-1], folder_name)


def card_results(cards: dict[str, dict]) -> str:
    """The hold-out tables (overall, then per hold-out set) of the models whose cards are given, from the
    `evaluate` figures stored in them (`holdout`), then those measured with `--uncertainty`
    (`holdout_uncertainty`: the test-time mean, its SD and how often the truth lies within ±2 SD): the
    README's results tables."""
    return "\n".join(filter(None, (_card_tables(cards, "holdout"), _card_tables(cards, "holdout_uncertainty"))))


def _card_tables(cards: dict[str, dict], key: str) -> str:
    summary, per_set = [], []
    for name, card in cards.items():
        holdout = card.get("metrics", {}).get(key)
        if holdout:
            summary.append({"model": name, **{k: v for k, v in holdout.items() if k != "by_set"}})
            per_set += [{"model": name, **s, "set": set_title(s["set"])} for s in holdout["by_set"]]
    if not summary:
        return ""
    order = list(dict.fromkeys(s["set"] for s in per_set))
    per_set.sort(key=lambda s: order.index(s["set"]))
    return markdown_table(summary) + "\n" + markdown_table(per_set)


def real_mri_results(cards: dict[str, dict]) -> str:
    """Per case of `bench/real_mri.py` (stored in the cards by `train segment-metrics`): truth, volume found,
    error and lateral Dice of each model, and its references' (`real_mri.references`)."""
    rows = {}
    for name, card in cards.items():
        real = card.get("metrics", {}).get("real_mri")
        if real:
            rows.setdefault(name, real)
            for ref, summary in real.get("references", {}).items():
                rows.setdefault(ref, summary)
    if not rows:
        return ""
    cases = list(next(iter(rows.values()))["cases"])
    lines = ["| case | truth (mL) | " + " | ".join(f"{m}: mL (error) | {m}: lateral Dice" for m in rows) + " |",
             "|---|---|" + "---|---|" * len(rows)]
    for case in cases:
        truth = next(r["cases"][case]["true_ml"] for r in rows.values() if case in r["cases"])
        cells = []
        for r in rows.values():
            c = r["cases"].get(case)
            cells += [f"{c['pred_ml']:.1f} ({c['error_percent']:+.1f} %)", f"{c['lateral_dice']:.3f}"] if c else ["", ""]
        lines.append(f"| {case.replace('_', ' ')} | {truth:.1f} | " + " | ".join(cells) + " |")
    lines.append("| volume MAE (mL) / mean Dice | | " + " | ".join(
        f"**{r['mae_ml']:.2f}** | {r['lateral_dice']:.3f}" if len(r["cases"]) == len(cases) else " | "
        for r in rows.values()) + " |")
    return "\n".join(lines) + "\n"
