import subprocess
import sys

import numpy as np
import pytest

from conftest import SHARED_PRIORS
from ventkit.anatomy.render import RenderSpec, load_generation_classes, render
from ventkit.io import read_volume


@pytest.mark.parametrize("thickness", [1.0, 5.0])
def test_t1_orders_wm_gm_csf_and_keeps_affine(subjects, tmp_path, thickness):
    out = tmp_path / "t1.nii.gz"
    subprocess.run([sys.executable, "-m", "ventkit", "render", str(subjects["training_seg_02"]), "--out", str(out),
                    "--thickness", str(thickness), "--seed", "3", "--preview", str(tmp_path / "p.png")], check=True)
    labels = read_volume(subjects["training_seg_02"], labels=True)
    image = read_volume(out)
    np.testing.assert_allclose(image.affine, labels.affine, atol=1e-5)
    assert image.array.shape == labels.array.shape
    lab = labels.array
    wm, gm, csf = (image.array[np.isin(lab, ids)].mean() for ids in ((2, 41), (3, 42), (4, 43, 24)))
    assert wm > gm > csf, (wm, gm, csf)
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_seeds_and_random_contrast(subject01):
    lab = subject01.array[60:140, 60:160, 60:140]
    a, pa = render(lab, (1, 1, 1), np.random.default_rng(0))
    b, _ = render(lab, (1, 1, 1), np.random.default_rng(0))
    c, _ = render(lab, (1, 1, 1), np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    classes = load_generation_classes(SHARED_PRIORS)
    r, params = render(lab, (1, 1, 1), np.random.default_rng(0), RenderSpec(contrast="random"), classes)
    assert params["contrast"] == "random" and not np.allclose(r, a)
    with pytest.raises(ValueError, match="unknown contrast"):
        render(lab, (1, 1, 1), np.random.default_rng(0), RenderSpec(contrast="t2"))


def test_head_texture_varies_extra_cerebral_tissue_only(subject01):
    lab = subject01.array[40:200:2, 40:220:2, 40:200:2]
    flat = RenderSpec(thickness_mm=(1.0, 1.0), bias_std=0.0, noise_std=(0.0, 0.0), blur_voxels=0.0, gamma_std=0.0)
    textured = RenderSpec(**{**flat.__dict__, "head_texture": 0.7})
    plain, _ = render(lab, (2, 2, 2), np.random.default_rng(0), flat)
    tex, params = render(lab, (2, 2, 2), np.random.default_rng(0), textured)
    assert params["head_texture"] == 0.7 and "head_texture" not in render(lab, (2, 2, 2), np.random.default_rng(0), flat)[1]

    def spread(img, label):  # coefficient of variation of 8-voxel block means inside one label
        inside = lab == label
        blocks = [img[i:i + 8, j:j + 8, k:k + 8][inside[i:i + 8, j:j + 8, k:k + 8]].mean()
                  for i in range(0, lab.shape[0], 8) for j in range(0, lab.shape[1], 8) for k in range(0, lab.shape[2], 8)
                  if inside[i:i + 8, j:j + 8, k:k + 8].sum() > 100]
        return np.std(blocks) / np.mean(blocks)

    head = 507  # SynthSeg's largest extra-cerebral label ("head" soft tissue)
    assert spread(tex, head) > 3 * spread(plain, head)
    assert spread(tex, 2) < 0.05 and spread(plain, 2) < 0.05  # white matter keeps one intensity
