"""The VentSegment weights we ship segment hold-out subjects (which no model trained on) as well as
their model cards say (checksum refusal of corrupted weights: test_segment.py).

One case of each hold-out set (natural volume; inflated to 100-300 mL; random contrast), rendered at
the paper's grid. Every model must segment natural volumes well (thresholds a margin below what
`ventkit evaluate` measured: the real model's Dice 0.81 ± 0.08, volume error 4.8 mL on natural
volumes); on enlarged ventricles and unusual contrasts the real model fails as the paper says
(Dice 0.24-0.73), so there every model must at least find ventricles.
"""
import numpy as np
import pytest

from ventkit.evaluation import build_holdout, holdout_cases, score
from ventkit.io import read_volume
from ventkit.labels import VENTRICLE_IDS
from ventkit.models import read_card
from ventkit.segmentation.segment import SYNTHSEG_RECIPE, load_segmenter, model_folder, shipped_models

# the VentSegment models and the SynthSeg-recipe baseline (`--model synthseg` without mri_synthseg)
SHIPPED = shipped_models() + [SYNTHSEG_RECIPE] * (model_folder(SYNTHSEG_RECIPE) / "model_card.json").is_file()
MIN_DICE = 0.70  # total ventricles, natural volumes
MAX_ERROR = 0.25  # relative total-volume error, natural volumes
MIN_FOUND_ML = 5.0  # enlarged ventricles, any contrast


@pytest.fixture(scope="module")
def holdout_cases_one_each(tmp_path_factory, subjects):
    root = tmp_path_factory.mktemp("holdout")
    return holdout_cases(build_holdout(root, scale=0.01, quiet=True))


@pytest.mark.skipif(not SHIPPED, reason="no VentSegment model is shipped yet (issue 5)")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_segments_holdout_subjects(name, holdout_cases_one_each):
    card = read_card(model_folder(name))
    assert card["files"] and "holdout" in card.get("metrics", {}), "card without checksums or hold-out metrics"
    segmenter = load_segmenter(name, device="cpu", folder=model_folder(name))
    for case in holdout_cases_one_each:
        image, truth = read_volume(case["image"]), read_volume(case["truth"], labels=True)
        pred = segmenter.segment(image).array
        s = score(pred, truth.array, image.voxel_ml)
        print(f"{name} {case['set']}: Dice {s['dice']:.3f}, {s['pred_ml']:.1f} vs {s['true_ml']:.1f} mL")
        if "natural" in case["set"]:
            assert s["dice"] >= MIN_DICE and abs(s["error_ml"]) <= MAX_ERROR * s["true_ml"]
        assert s["pred_ml"] >= MIN_FOUND_ML, case["set"]
        assert set(np.unique(pred)) <= {0, *VENTRICLE_IDS}


def test_every_shipped_weights_file_has_its_card_beside_it():
    from ventkit.models import models_dir

    weights = [p for ext in ("*.pt", "*.pth") for p in models_dir().rglob(ext)]
    for path in weights:
        card = read_card(path.parent)
        assert path.name in card["files"], f"{path}: not checksummed by the card beside it"
        assert (path.parent / "README.md").read_text().startswith("# Model card"), f"{path}: no readable card"
