"""The paper's experiment: scoring, the table, the plots and the one-command CLI (tiny model, tiny hold-out)."""
import json

import numpy as np
import pytest

from ventkit.anatomy.subjects import HOLDOUT_SUBJECTS
from ventkit.cli import main
from ventkit.evaluation import (HOLDOUT_RECIPE, build_holdout, dice, holdout_cases, markdown_table, run_evaluation,
                                score, summarize)


def test_dice_and_score_on_known_arrays():
    truth = np.zeros((10, 10, 10), np.int16)
    truth[2:6, 2:6, 2:6] = 4  # 64 voxels
    pred = np.zeros_like(truth)
    pred[2:6, 2:6, 2:4] = 4  # 32 voxels, all inside
    pred[8, 8, 8] = 17  # not a ventricle
    assert dice(pred == 4, truth == 4) == pytest.approx(2 * 32 / 96)
    s = score(pred, truth, voxel_ml=0.5)
    assert s["true_ml"] == 32.0 and s["pred_ml"] == 16.0 and s["error_ml"] == -16.0
    assert s["dice"] == pytest.approx(2 / 3) and s["dice_lateral"] == pytest.approx(2 / 3)


def test_summary_and_table():
    rows = [{"model": "a", "set": k, "error_ml": e, "dice": d, "dice_lateral": d}
            for k, e, d in (("x", -2, 0.8), ("y", 4, 0.9))] + \
           [{"model": "b", "set": "x", "error_ml": 1, "dice": 0.95, "dice_lateral": 0.96}]
    s = {x["model"]: x for x in summarize(rows)}
    assert s["a"]["mae_ml"] == 3.0 and s["a"]["bias_ml"] == 1.0 and s["a"]["n"] == 2
    assert s["a"]["mae_sd_ml"] == pytest.approx(np.std([2, 4], ddof=1))
    assert s["b"]["dice"] == 0.95
    table = markdown_table(summarize(rows))
    assert "| a | 2 | 3.00 ± 1.41 | +1.00 |" in table
    per_set = summarize(rows, by=("model", "set"))
    assert [(x["model"], x["set"], x["n"], x["mae_ml"]) for x in per_set] == [("a", "x", 1, 2.0), ("a", "y", 1, 4.0),
                                                                            ("b", "x", 1, 1.0)]
    assert "| a | y | 1 | 4.00 ± 0.00 | +4.00 |" in markdown_table(per_set)


@pytest.fixture(scope="module")
def tiny_holdout(tmp_path_factory):
    root = tmp_path_factory.mktemp("holdout")
    folders = build_holdout(root, scale=0.01, grid="mask", quiet=True)
    return root, folders


def test_holdout_uses_only_holdout_subjects(tiny_holdout):
    _, folders = tiny_holdout
    cases = holdout_cases(folders)
    assert len(cases) == len(HOLDOUT_RECIPE)
    assert all(c["subject"] in HOLDOUT_SUBJECTS for c in cases)
    enlarged = [json.loads((f / "meta" / "holdout_0000.json").read_text()) for f in folders if "enlarged" in f.name]
    assert all(100 * 0.98 <= m["measured_ml"] <= 300 * 1.02 for m in enlarged)


class CountingSegmenter:
    """Calls the truth's ventricles lateral ventricle; counts its calls."""

    def __init__(self, description: str):
        self.description, self.calls = description, 0

    def segment(self, volume):
        self.calls += 1
        return volume.with_array(np.where(volume.array > np.median(volume.array), 4, 0).astype(np.int16))


def test_evaluation_resumes_from_cached_rows_of_the_same_model(tiny_holdout, tmp_path):
    cases = holdout_cases(tiny_holdout[1])
    first = CountingSegmenter("fake v1")
    rows = run_evaluation(cases, {"fake": first}, quiet=True, cache_dir=tmp_path)
    assert first.calls == len(cases) == len(list(tmp_path.glob("fake/*/*.json")))
    again = CountingSegmenter("fake v1")
    assert run_evaluation(cases, {"fake": again}, quiet=True, cache_dir=tmp_path) == rows and again.calls == 0
    (tmp_path / "fake" / cases[0]["set"] / f"{cases[0]['case']}.json").unlink()  # as if stopped before it
    assert run_evaluation(cases, {"fake": again}, quiet=True, cache_dir=tmp_path) == rows and again.calls == 1
    changed = CountingSegmenter("fake v2")  # other weights: nothing cached applies
    run_evaluation(cases, {"fake": changed}, quiet=True, cache_dir=tmp_path)
    assert changed.calls == len(cases)


def test_evaluate_command_writes_table_and_plot(tiny_holdout, tiny_model, tmp_path, capsys):
    root, _ = tiny_holdout
    out = tmp_path / "eval"
    assert main(["evaluate", "--holdout", str(root), "--grid", "mask", "--scale", "0.01", "--models",
                 "--model-dir", f"tiny={tiny_model}", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "| tiny | 3 |" in printed
    assert {p.name for p in out.iterdir()} == {"cases.csv", "summary.csv", "summary_by_set.csv", "table.md",
                                            "bland_altman_scatter.png", "metrics.json", "cases"}
    holdout = json.loads((out / "metrics.json").read_text())["tiny"]["holdout"]
    assert holdout["n"] == 3 and len(holdout["by_set"]) == 3 and sum(x["n"] for x in holdout["by_set"]) == 3
    assert (out / "bland_altman_scatter.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_names_the_synthseg_recipe_when_synthseg_is_not_installed(tiny_holdout, tiny_model, tmp_path,
                                                                          monkeypatch, capsys):
    import shutil

    shutil.copytree(tiny_model, tmp_path / "models" / "ventsegment_synthseg_recipe")
    monkeypatch.setenv("VENTKIT_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("VENTKIT_SYNTHSEG", str(tmp_path / "no_such_mri_synthseg"))
    root, _ = tiny_holdout
    assert main(["evaluate", "--holdout", str(root), "--grid", "mask", "--scale", "0.01", "--models", "synthseg",
                 "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "mri_synthseg not found" in printed and "| synthseg_recipe | 3 |" in printed


def test_calibration_counts_the_truth_within_two_sd():
    rows = [{"model": "a", "set": "x", "error_ml": e, "dice": 0.9, "dice_lateral": 0.9, "sd_ml": sd}
            for e, sd in ((1.0, 1.0), (-3.0, 1.0), (2.0, 1.0), (-0.5, 2.0))]
    s = summarize(rows)[0]
    assert s["within_2sd"] == 0.75 and s["mean_sd_ml"] == 1.25
    assert "| 1.25 | 75 % |" in markdown_table([s])
    assert "within_2sd" not in summarize([{**r, "sd_ml": None} for r in rows])[0]


def test_evaluate_refuses_unknown_models_before_rendering_anything(tmp_path, capsys):
    holdout = tmp_path / "holdout"
    assert main(["evaluate", "--holdout", str(holdout), "--out", str(tmp_path / "e"), "--models", "real",
                 "--uncertainty", "augmented"]) == 2
    assert "not among the evaluated models" in capsys.readouterr().err
    assert not holdout.exists() or not any(holdout.rglob("*.nii.gz"))


def test_results_tables_come_from_the_cards():
    from ventkit.evaluation import card_results, real_mri_results

    row = {"n": 2, "mae_ml": 1.5, "mae_sd_ml": 0.5, "bias_ml": -1.0, "dice": 0.9, "dice_sd": 0.01, "dice_lateral": 0.92}
    cases = {"as_is": {"true_ml": 48.8, "pred_ml": 46.7, "error_percent": -4.3, "lateral_dice": 0.874, "holes_ml": 0.0},
             "skull_stripped": {"true_ml": 48.8, "pred_ml": 42.7, "error_percent": -12.5, "lateral_dice": 0.855,
                                "holes_ml": 0.0}}
    samseg = {"mae_ml": 9.0, "lateral_dice": 0.87, "cases": {"as_is": {**cases["as_is"], "pred_ml": 57.8,
                                                                      "error_percent": 18.4, "lateral_dice": 0.866}}}
    cards = {"augmented": {"metrics": {"holdout": {**row, "by_set": [{**row, "set": "Dataset901_Holdout_enlarged_t1"}]},
                                       "real_mri": {"mae_ml": 4.1, "lateral_dice": 0.86, "cases": cases,
                                                    "references": {"samseg": samseg}}}},
             "real": {"metrics": {}}}
    tables = card_results(cards)
    assert "| augmented | 2 | 1.50 ± 0.50 | -1.00 | 0.900 ± 0.010 | 0.920 |" in tables
    assert "| augmented | inflated to 100–300 mL, T1 | 2 |" in tables and "| real |" not in tables
    real = real_mri_results(cards).splitlines()
    assert real[2] == "| as is | 48.8 | 46.7 (-4.3 %) | 0.874 | 57.8 (+18.4 %) | 0.866 |"
    assert real[3].endswith("| 42.7 (-12.5 %) | 0.855 |  |  |")  # SAMSEG did not run this case
    assert real[-1].startswith("| volume MAE (mL) / mean Dice | | **4.10** | 0.860 |")  # SAMSEG's MAE: not on all cases
    assert real_mri_results({"real": {"metrics": {}}}) == ""
