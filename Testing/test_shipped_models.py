"""The VentSegment weights we ship segment hold-out subjects (which no model trained on) as well as
their model cards say (checksum refusal of corrupted weights: test_segment.py).

One case of each hold-out set (natural volume; inflated to 100-300 mL; random contrast), rendered at
the paper's grid, the first case of what `ventkit evaluate` scored for the card. On natural volumes
each model must reach its card's Dice of that set minus two SD, with a volume error below its card's
MAE plus two SD; on enlarged ventricles and unusual contrasts, where the real and SynthSeg-recipe models
fail as the paper says, every model must at least find ventricles, and the augmented model must err
less than the real one on the enlarged T1 case (the paper's point).
"""
import numpy as np
import pytest

from ventkit.evaluation import build_holdout, holdout_cases, score
from ventkit.io import read_volume
from ventkit.labels import VENTRICLE_IDS
from ventkit.models import read_card
from ventkit.segmentation.segment import load_segmenter, model_folder, shipped_models

# the VentSegment models and the SynthSeg-recipe baseline (`--model synthseg` without mri_synthseg)
SHIPPED = shipped_models()
MIN_FOUND_ML = 5.0  # enlarged ventricles, any contrast


@pytest.fixture(scope="module")
def holdout_cases_one_each(tmp_path_factory, subjects):
    root = tmp_path_factory.mktemp("holdout")
    return holdout_cases(build_holdout(root, scale=0.01, quiet=True))


@pytest.fixture(scope="module")
def scores(holdout_cases_one_each):
    """(model, hold-out set) -> score of the model's prediction (every shipped model, each case once)."""
    cache: dict[tuple[str, str], dict] = {}

    def get(name: str) -> dict[str, dict]:
        if not any(k[0] == name for k in cache):
            segmenter = load_segmenter(name, device="cpu", folder=model_folder(name))
            for case in holdout_cases_one_each:
                image, truth = read_volume(case["image"]), read_volume(case["truth"], labels=True)
                pred = segmenter.segment(image).array
                assert set(np.unique(pred)) <= {0, *VENTRICLE_IDS}
                cache[name, case["set"]] = score(pred, truth.array, image.voxel_ml)
        return {k[1]: v for k, v in cache.items() if k[0] == name}

    return get


@pytest.mark.skipif(not SHIPPED, reason="no VentSegment model is shipped yet (issue 5)")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_segments_holdout_subjects(name, scores):
    card = read_card(model_folder(name))
    assert card["files"] and "holdout" in card.get("metrics", {}), "card without checksums or hold-out metrics"
    by_set = {row["set"]: row for row in card["metrics"]["holdout"]["by_set"]}
    for hold_out_set, s in scores(name).items():
        print(f"{name} {hold_out_set}: Dice {s['dice']:.3f}, {s['pred_ml']:.1f} vs {s['true_ml']:.1f} mL")
        if "natural" in hold_out_set:
            card_set = by_set[hold_out_set]
            assert s["dice"] >= card_set["dice"] - 2 * card_set["dice_sd"]
            assert abs(s["error_ml"]) <= card_set["mae_ml"] + 2 * card_set["mae_sd_ml"]
        assert s["pred_ml"] >= MIN_FOUND_ML, hold_out_set


@pytest.mark.skipif(not {"augmented", "real"} <= set(SHIPPED), reason="needs the augmented and real models")
def test_augmented_errs_less_than_real_on_enlarged_ventricles(scores):
    augmented, real = scores("augmented"), scores("real")
    enlarged = [k for k in augmented if "enlarged_t1" in k]
    assert enlarged
    for k in enlarged:
        assert abs(augmented[k]["error_ml"]) < abs(real[k]["error_ml"])


def test_every_shipped_weights_file_has_its_card_beside_it():
    from ventkit.paths import models_dir

    weights = [p for ext in ("*.pt", "*.pth") for p in models_dir().rglob(ext)]
    for path in weights:
        card = read_card(path.parent)
        assert path.name in card["files"], f"{path}: not checksummed by the card beside it"
        assert (path.parent / "README.md").read_text().startswith("# Model card"), f"{path}: no readable card"
