"""Left/right assignment of the side-agnostic nnU-Net classes from the anatomy (mid-sagittal plane)."""
import numpy as np
import pytest

from ventkit.anatomy.nnunet import ventricle_classes
from ventkit.io import reorient_to_ras
from ventkit.labels import to_segmentation
from ventkit.segmentation.sides import assign_sides


def rotation_z(degrees):
    t = np.radians(degrees)
    r = np.eye(4)
    r[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return r


@pytest.mark.parametrize("orientation", ["ras", "lps", "yaw20"])
def test_real_anatomy_gets_its_sides_back(subject01, orientation):
    ras = reorient_to_ras(subject01)
    truth, affine = to_segmentation(ras.array), ras.affine.copy()
    if orientation == "lps":  # same voxels stored with I and J reversed
        truth = truth[::-1, ::-1]
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[0, 3], flip[1, 3] = truth.shape[0] - 1, truth.shape[1] - 1
        affine = affine @ flip
    elif orientation == "yaw20":  # head turned 20 degrees in the scanner
        affine = rotation_z(20) @ affine
    labels = assign_sides(ventricle_classes(truth), affine)
    for fs in (4, 43, 5, 44, 14, 15):
        agree = (labels[truth == fs] == fs).mean()
        assert agree > 0.99, f"label {fs}: {agree:.3f}"


def test_touching_ventricles_are_cut_at_the_midline():
    classes = np.zeros((40, 30, 30), np.uint8)
    classes[8:20, 5:25, 10:20] = 1  # left lateral, x 8..19
    classes[20:32, 5:25, 10:20] = 1  # right lateral, touching at x = 19.5
    classes[19:21, 10:20, 3:9] = 3  # a slit-like 3rd ventricle on the midline
    labels = assign_sides(classes, np.eye(4))
    assert (labels[8:20, 5:25, 10:20] == 4).all() and (labels[20:32, 5:25, 10:20] == 43).all()
    assert (labels[classes == 3] == 14).all()


def test_without_third_ventricle_components_take_their_side():
    classes = np.zeros((40, 30, 30), np.uint8)
    classes[5:15, 5:25, 10:20] = 1
    classes[24:36, 5:25, 10:20] = 1
    classes[4:7, 5:8, 2:5] = 2  # inferior lateral beside the first block
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])  # voxel x runs right-to-left: sides follow world x
    labels = assign_sides(classes, flipped)
    assert (labels[5:15, 5:25, 10:20] == 43).all() and (labels[24:36, 5:25, 10:20] == 4).all()
    assert (labels[4:7, 5:8, 2:5] == 44).all()
