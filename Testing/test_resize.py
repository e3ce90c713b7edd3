"""Ventricle resizing reaches its target and keeps every structure."""
import numpy as np
import pytest
from scipy import ndimage

from ventkit.anatomy.corpus import brain_center, make_labels, resize_scan
from ventkit.anatomy.grid import GRIDS, Grid, sample_labels
from ventkit.anatomy.subjects import load_subject
from ventkit.anatomy.ventricles import SubjectFlows, VentricleFlow
from ventkit.io import Volume
from ventkit.labels import EXTRA_CEREBRAL_IDS, SEGMENTATION_IDS, VENTRICLE_IDS, to_segmentation

SUBJECTS = ("training_seg_01", "training_seg_16")


@pytest.fixture(scope="module")
def flows(subjects):
    return {name: SubjectFlows(load_subject(str(subjects[name]))) for name in SUBJECTS}


@pytest.mark.parametrize("name", SUBJECTS)
@pytest.mark.parametrize("target", [20.0, 120.0, 250.0])
def test_resize_reaches_target_on_model_grid(flows, name, target):
    gen, info = make_labels(flows[name].labels, GRIDS["paper"], target, np.random.default_rng(0), flows=flows[name])
    seg = to_segmentation(gen.array)
    voxel_ml = np.prod(GRIDS["paper"].spacing) / 1000
    measured = np.isin(seg, VENTRICLE_IDS).sum() * voxel_ml
    assert abs(measured - target) <= 0.02 * target, (measured, target)
    assert abs(info["measured_ml"] - measured) < 1e-3
    assert set(np.unique(seg)) == set(SEGMENTATION_IDS), "a structure vanished"
    for lab in (2, 3, 10, 11, 16, 17, 41, 42, 49, 50, 4, 43):  # large structures stay one main piece
        comps, n = ndimage.label(seg == lab)
        sizes = np.bincount(comps.ravel())[1:]
        assert sizes.max() >= 0.9 * sizes.sum(), (lab, n)


def test_resize_at_native_1mm_and_tissue_is_pushed_not_relabelled(subject01):
    native = Grid(subject01.array.shape, tuple(subject01.spacing))
    before_gen = make_labels(subject01, native, None, np.random.default_rng(0), deformation=None)[0].array
    before = to_segmentation(before_gen)
    gen, info = make_labels(subject01, native, 150.0, np.random.default_rng(0), deformation=None)
    after = to_segmentation(gen.array)
    assert abs(info["measured_ml"] - 150.0) <= 3.0
    # tissue is compressed, not replaced: cortex loses a little, nothing loses most of its volume
    for lab in (2, 3, 11, 12, 17, 41, 42, 50, 51, 53):
        ratio = (after == lab).sum() / (before == lab).sum()
        assert 0.6 < ratio < 2.0, (lab, ratio)
    # the head outside the brain (skull, scalp, eyes...) does not move
    head = np.isin(before_gen, EXTRA_CEREBRAL_IDS)
    assert (gen.array[head] == before_gen[head]).mean() > 0.97
    assert (gen.array[before_gen == 0] == 0).mean() > 0.999


def test_flow_rejects_a_map_without_ventricles():
    a = np.zeros((20, 20, 20), np.int16)
    a[5:15, 5:15, 5:15] = 2
    with pytest.raises(ValueError, match="no ventricle labels"):
        VentricleFlow(Volume(a, np.eye(4), "noventricles"))


def test_out_of_range_target_is_refused(subject01):
    with pytest.raises(ValueError, match="outside 5-300 mL"):
        make_labels(subject01, GRIDS["mask"], 400.0, np.random.default_rng(0))


def test_cli_resize_writes_labels_image_and_preview(subjects, tmp_path):
    import re
    import subprocess
    import sys

    from ventkit.io import read_volume

    out = subprocess.run([sys.executable, "-m", "ventkit", "resize", str(subjects["training_seg_20"]), "--volume", "100",
                          "--grid", "mask", "--out", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    got = float(re.search(r"got ([\d.]+) mL", out).group(1))
    assert abs(got - 100) <= 2
    labels = read_volume(tmp_path / "training_seg_20_labels.nii.gz", labels=True)
    image = read_volume(tmp_path / "training_seg_20_t1.nii.gz")
    np.testing.assert_allclose(labels.affine, image.affine)
    voxel_ml = abs(np.linalg.det(labels.affine[:3, :3])) / 1000
    assert abs(np.isin(labels.array, VENTRICLE_IDS).sum() * voxel_ml - got) < 0.1
    assert (tmp_path / "training_seg_20_preview.png").is_file()


def test_resize_scan_moves_intensities_with_the_labels(subject01):
    """A scan and its labels resized together: the volume is met and the dark ventricles stay dark."""
    grid = GRIDS["seg2mm"]
    affine = grid.affine(brain_center(subject01))
    labels = Volume(to_segmentation(sample_labels(subject01, affine, grid.shape)), affine, "s01")
    image = labels.with_array(np.where(np.isin(labels.array, VENTRICLE_IDS), 0.1, 0.8).astype(np.float32))
    big_image, big_labels = resize_scan(image, labels, 120.0)
    vent = np.isin(big_labels.array, VENTRICLE_IDS)
    assert vent.sum() * big_labels.voxel_ml == pytest.approx(120.0, rel=0.05)
    assert big_image.array[vent].mean() < 0.3 and big_image.array[~vent & (big_labels.array > 0)].mean() > 0.6
