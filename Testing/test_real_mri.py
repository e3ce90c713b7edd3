"""VentSegment on a real MRI: FreeSurfer's fsaverage `orig.mgz` against its `aseg.mgz` (see fsaverage.py).

Issue 5's targets: the default model's lateral-ventricle Dice >= 0.80 and total ventricle volume within
15 % of aseg's. `bench/real_mri.py` prints the same numbers for every shipped model.
"""
import pytest

from fsaverage import fetch_fsaverage, score_on_fsaverage
from ventkit.segmentation.segment import load_segmenter, model_folder


@pytest.mark.skipif(not (model_folder("augmented") / "model_card.json").is_file(),
                    reason="the default (augmented) VentSegment model is not shipped yet (issue 5)")
def test_default_model_on_fsaverage():
    s = score_on_fsaverage(load_segmenter("augmented", device="auto"), fetch_fsaverage())
    print(f"fsaverage: lateral Dice {s['lateral_dice']:.3f}, total {s['total_ml']:.1f} mL "
          f"vs aseg {s['aseg_total_ml']:.1f} mL")
    assert s["lateral_dice"] >= 0.80
    assert abs(s["total_ml"] / s["aseg_total_ml"] - 1) <= 0.15
