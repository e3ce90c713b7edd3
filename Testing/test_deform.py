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
