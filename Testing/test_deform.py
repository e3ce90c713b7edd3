import numpy as np

from ventkit.anatomy.deform import DeformationSpec, RandomDeformation
from ventkit.anatomy.grid import Grid, sample_labels


def test_identity_resampling_returns_the_same_labels(tiny_labels):
    out = sample_labels(tiny_labels, tiny_labels.affine, tiny_labels.array.shape)
    np.testing.assert_array_equal(out, tiny_labels.array)


def test_random_deformation_is_smooth_and_does_not_fold():
    rng = np.random.default_rng(0)
    grid = Grid((40, 40, 40), (4.0, 4.0, 4.0))
    deform = RandomDeformation.draw(rng, (0, 0, 0), grid.extent_mm, DeformationSpec(elastic_std_mm=4.0))
    idx = np.indices(grid.shape).reshape(3, -1).astype(np.float32)
    aff = grid.affine((0, 0, 0))
    pts = aff[:3, :3] @ idx + aff[:3, 3:4]
    mapped = deform(pts).reshape(3, *grid.shape)
    jac = np.stack([np.stack(np.gradient(mapped[i], 4.0)) for i in range(3)])  # (3, 3, X, Y, Z)
    det = np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1))[2:-2, 2:-2, 2:-2])
    assert det.min() > 0, "the deformation folds"
    assert 0.5 < det.mean() < 1.6
    assert np.abs(mapped.reshape(3, -1) - pts).max() > 1.0  # it does move things


def test_antialiased_resampling_matches_a_brute_force_argmax():
    """The bounding-box shortcut gives exactly the per-label linear-interpolation argmax."""
    from scipy.ndimage import map_coordinates

    from ventkit.anatomy.grid import argmax_labels

    rng = np.random.default_rng(0)
    src = np.zeros((30, 30, 30), np.int16)
    for value in (2, 3, 4, 17, 43):
        lo = rng.integers(0, 20, 3)
        src[lo[0]:lo[0] + rng.integers(3, 10), lo[1]:lo[1] + rng.integers(3, 10), lo[2]:lo[2] + 8] = value
    vox = rng.uniform(-2, 31, (3, 5000)).astype(np.float32)
    best = np.zeros(5000, np.float32)
    expected = np.zeros(5000, np.int16)
    for value in np.unique(src):
        frac = map_coordinates((src == value).astype(np.float32), vox, order=1, mode="constant",
                               cval=float(value == 0), prefilter=False)
        expected[frac > best], best = value, np.maximum(best, frac)
    np.testing.assert_array_equal(argmax_labels(src, vox), expected)
