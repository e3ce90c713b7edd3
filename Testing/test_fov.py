"""Fields of view of training images: skull-stripped, defaced and cropped variants of real anatomy."""
import json

import numpy as np
import pytest

from ventkit.anatomy.corpus import build_corpus
from ventkit.anatomy.fov import FOVS, apply_fov, brain_mask, draw_fov
from ventkit.anatomy.grid import GRIDS, sample_labels
from ventkit.anatomy.corpus import brain_center
from ventkit.errors import InputError
from ventkit.io import read_volume
from ventkit.labels import VENTRICLE_IDS, to_segmentation


@pytest.fixture(scope="module")
def head(subject01):
    """Subject 01's generation labels on the 2 mm segmentation grid, and a flat image of the head."""
    grid = GRIDS["seg2mm"]
    affine = grid.affine(brain_center(subject01))
    generation = sample_labels(subject01, affine, grid.shape)
    return generation, affine, (generation > 0).astype(np.float32) + 0.5


def test_stripped_keeps_the_brain_and_drops_the_head(head):
    generation, affine, image = head
    seg = to_segmentation(generation)
    out = apply_fov(image, generation, affine, "stripped", np.random.default_rng(0))
    brain = (seg != 0) & (seg != 24)
    assert (out[brain] > 0).mean() > 0.97
    scalp = (generation > 0) & (seg == 0)  # labelled head tissue outside the brain
    assert (out[scalp] > 0).mean() < 0.15
    assert (out[np.isin(seg, VENTRICLE_IDS)] > 0).all()


def test_stripped_with_csf_keeps_more_than_without(head):
    generation, affine, _ = head
    seg = to_segmentation(generation)
    tight = [brain_mask(seg, (2, 2, 2), np.random.default_rng(s), with_csf=False).sum() for s in range(3)]
    wide = [brain_mask(seg, (2, 2, 2), np.random.default_rng(s), with_csf=True).sum() for s in range(3)]
    assert min(wide) > max(tight)


def test_defaced_removes_the_face_not_the_brain(head):
    generation, affine, image = head
    seg = to_segmentation(generation)
    out = apply_fov(image, generation, affine, "defaced", np.random.default_rng(1))
    assert (out[seg != 0] > 0).mean() > 0.99
    removed = (image > 0.5) & (out == 0)
    assert removed.sum() > 1000
    idx = np.argwhere(removed)
    ras = idx @ affine[:3, :3].T + affine[:3, 3]
    brain = np.argwhere(seg != 0) @ affine[:3, :3].T + affine[:3, 3]
    # what is removed lies in front of the brain's centre and below its top
    assert np.median(ras[:, 1]) > brain[:, 1].mean() and np.median(ras[:, 2]) < brain[:, 2].max()


@pytest.mark.parametrize("seed", range(4))
def test_cropped_never_cuts_a_ventricle(head, seed):
    generation, affine, image = head
    seg = to_segmentation(generation)
    out = apply_fov(image, generation, affine, "cropped", np.random.default_rng(seed))
    assert (out[np.isin(seg, VENTRICLE_IDS)] > 0).all()
    assert (out == 0).sum() > (image == 0).sum()


def test_mixed_draws_every_fov_and_refuses_unknown_ones():
    rng = np.random.default_rng(0)
    assert {draw_fov("mixed", rng) for _ in range(200)} == set(FOVS)
    assert draw_fov("defaced", rng) == "defaced"
    with pytest.raises(InputError, match="field of view"):
        draw_fov("helmet", rng)
    with pytest.raises(InputError, match="field of view"):
        build_corpus("/nonexistent/never", 1, fov="helmet")


def test_mixed_corpus_records_each_case_choice(tmp_path):
    out = tmp_path / "Dataset991_Mixed"
    build_corpus(out, 4, "natural", seed=5, grid="mask", contrast="mixed", acquisition="mixed", fov="mixed",
                 quiet=True)
    metas = [json.loads(p.read_text()) for p in sorted((out / "meta").glob("*.json"))]
    assert all(m["fov"] in FOVS and m["acquisition"] in ("varied", "clean") and m["contrast"] in ("t1", "random")
               for m in metas)
    for m in metas:
        image = read_volume(out / "imagesTr" / f"{m['case_id']}_0000.nii.gz").array
        full = read_volume(out / "labelsFullTr" / f"{m['case_id']}.nii.gz", labels=True).array
        assert (image[np.isin(full, VENTRICLE_IDS)] > 0).mean() > 0.99 or m["contrast"] == "random"
        if m["fov"] in ("stripped", "stripped_csf"):
            assert (image[full == 0] == 0).mean() > 0.8
