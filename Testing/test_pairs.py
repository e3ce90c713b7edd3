"""`ventkit synth pair`: labeled T1 pairs at a requested ventricle volume, from training subjects only."""
import json

import numpy as np
import pytest

from ventkit.anatomy.subjects import HOLDOUT_SUBJECTS
from ventkit.cli import main
from ventkit.errors import InputError
from ventkit.labels import SEGMENTATION_LABELS
from ventkit.synthesis.pairs import load_synthesizer, write_pair
from ventkit.volumetry import volume_report


@pytest.fixture(scope="module")
def synth(subjects):
    return load_synthesizer("anatomy", grid="mask")


def test_pair_hits_volume_and_is_reproducible(synth):
    a, b = synth.sample(120.0, seed=5), synth.sample(120.0, seed=5)
    np.testing.assert_array_equal(a.image.array, b.image.array)
    assert a.info["subject"] not in HOLDOUT_SUBJECTS and a.info["backend"] == "anatomy"
    measured = volume_report(a.segmentation).total_ml
    assert abs(measured - 120.0) <= 0.03 * 120.0
    assert set(np.unique(a.segmentation.array)) <= {lab.id for lab in SEGMENTATION_LABELS} | {0}
    np.testing.assert_allclose(a.image.affine, a.segmentation.affine)
    other = synth.sample(120.0, seed=5, index=1)
    assert not np.array_equal(other.image.array, a.image.array)


def test_volume_outside_range_is_refused(synth):
    for bad in (2.0, 400.0):
        with pytest.raises(InputError, match="outside the range"):
            synth.sample(bad)


def test_write_pair_files(synth, tmp_path):
    files = write_pair(synth.sample(60.0, seed=1), tmp_path, "p")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p_labels.nii.gz", "p_preview.png", "p_t1.nii.gz"]
    info = json.loads(files["info"].read_text())
    assert info["requested_ml"] == 60.0 and abs(info["ventricles_ml"]["total"] - 60.0) < 2.0


def test_cli_synth_pair(subjects, tmp_path, capsys):
    assert main(["synth", "pair", "--volume", "80", "--n", "2", "--backend", "anatomy", "--grid", "mask",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "backend: anatomy" in out and out.count("requested 80.0 mL") == 2
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_cli_synth_pair_randomized_appearance(subjects, tmp_path, capsys):
    assert main(["synth", "pair", "--volume", "60", "--n", "2", "--backend", "anatomy", "--grid", "mask",
                 "--contrast", "random", "--thickness", "3", "5", "--out", str(tmp_path)]) == 0
    infos = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert [i["contrast"] for i in infos] == ["random", "random"]
    assert all(3.0 <= i["thickness_mm"] <= 5.0 for i in infos)
    assert main(["synth", "pair", "--volume", "60", "--backend", "anatomy", "--thickness", "9", "12",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "--thickness" in capsys.readouterr().err and not (tmp_path / "bad").exists()
