"""The realism measures of `ventkit.realism` tell a sharp T1 from a blurred one of the same brain."""
import numpy as np
import pytest
from scipy import ndimage

from ventkit.anatomy.render import RenderSpec, render
from ventkit.anatomy.subjects import load_subject
from ventkit.io import Volume
from ventkit.labels import to_segmentation
from ventkit.realism import MeasureImage, auc, boundary_sharpness, patch_auc, spectrum_slope


@pytest.fixture(scope="module")
def sharp_and_blurred(subjects):
    """Two brains, each rendered at 1 mm and the same render blurred (Gaussian, 1.5 mm)."""
    out = []
    for name in ("training_seg_01", "training_seg_02"):
        source = load_subject(str(subjects[name]))
        labels = Volume(to_segmentation(source.array), source.affine, name)
        image, _ = render(labels.array, (1.0,) * 3, np.random.default_rng(0), RenderSpec(thickness_mm=(1, 1)))
        out.append(tuple(MeasureImage.from_volumes(f"{name} {kind}", Volume(im, source.affine), labels)
                         for kind, im in (("sharp", image), ("blurred", ndimage.gaussian_filter(image, 1.5)))))
    return out


def test_blur_softens_borders_and_steepens_the_spectrum(sharp_and_blurred):
    for sharp, blurred in sharp_and_blurred:
        assert np.median(sharp.image[np.isin(sharp.labels, (2, 41))]) == pytest.approx(1.0, abs=0.02)
        assert boundary_sharpness(blurred) < 0.7 * boundary_sharpness(sharp)
        assert spectrum_slope(blurred) < spectrum_slope(sharp) - 3


def test_auc():
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5


def test_patch_classifier_tells_blurred_patches_of_an_unseen_brain(sharp_and_blurred):
    (sharp1, blurred1), (sharp2, blurred2) = sharp_and_blurred
    assert patch_auc([sharp1], [blurred1], [sharp2], [blurred2], steps=40, per_image=16) > 0.9


def test_an_image_without_white_matter_is_refused(subjects):
    source = load_subject(str(subjects["training_seg_01"]))
    seg = to_segmentation(source.array)
    labels = Volume(np.where(np.isin(seg, (2, 41)), 0, seg), source.affine)
    with pytest.raises(ValueError, match="white matter"):
        MeasureImage.from_volumes("no white matter", Volume(np.ones(source.array.shape, np.float32), source.affine),
                                  labels)
