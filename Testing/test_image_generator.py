"""Image generator plumbing with tiny SPADE networks: pairs on the model grid, training resumes and logs,
the diffusion model is conditioned on the label map."""
import numpy as np
import pytest
import torch

from ventkit.anatomy.corpus import build_corpus
from ventkit.synthesis.image_model import ImageModelConfig, build_image_unet, normalize_intensities
from ventkit.synthesis.mask_model import one_hot
from ventkit.training.image import train_image_ae, train_image_ldm
from ventkit.training.loop import LoopSettings, Run
from ventkit.training.mask_data import MaskDataset

TINY = ImageModelConfig(ae_channels=(8, 8, 8), ae_norm_groups=8, spade_channels=8, ldm_channels=(16, 16, 16),
                        ldm_head_channels=8, ldm_norm_groups=8, train_timesteps=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("image")
    build_corpus(root / "corpus", n=2, volumes="natural", seed=0, grid="mask", quiet=True)
    data = MaskDataset([root / "corpus"], images=True)
    settings = LoopSettings(max_steps=2, quiet=True, preview_every=2)
    assert train_image_ae(data, root / "ae", settings, TINY, device="cpu") == 2
    assert train_image_ae(data, root / "ae", LoopSettings(max_steps=3, quiet=True), TINY, device="cpu") == 3
    assert train_image_ldm(data, root / "ae", root / "ldm", settings, TINY, device="cpu") == 2
    return root, data


def test_pairs_share_the_model_grid(trained):
    _, data = trained
    assert len(data.images) == len(data.labels) == 2
    for image, labels in zip(data.images, data.labels):
        assert image.shape == labels.shape == (48, 64, 48)
        assert 0 <= image.min() and image.max() <= 1
        # the rendered T1 follows its labels: white matter brighter than the ventricles
        assert image[np.isin(labels, (2, 41))].mean() > image[np.isin(labels, (4, 43))].mean() + 0.2


def test_training_resumes_and_logs(trained):
    root, _ = trained
    rows = (root / "ae" / "loss_log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,l1") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    assert (root / "ae" / "preview_000002.png").is_file()
    ldm = Run(root / "ldm").load()
    assert ldm["stage"] == "image-ldm" and ldm["scale_factor"] > 0 and "autoencoder" in ldm


def test_diffusion_model_depends_on_the_label_map(trained):
    root, data = trained
    unet = build_image_unet(TINY)
    unet.load_state_dict(Run(root / "ldm").load()["modules"]["unet"])
    unet.eval()
    z = torch.randn(1, TINY.latent_channels, 12, 16, 12)
    t = torch.tensor([50])
    with torch.no_grad():
        a = unet(z, timesteps=t, seg=one_hot(data.labels[0])[None])
        b = unet(z, timesteps=t, seg=one_hot(np.flip(data.labels[0], 2).copy())[None])
    assert not torch.allclose(a, b)


def test_image_training_refuses_maps_without_images(trained):
    root, _ = trained
    with pytest.raises(ValueError, match="images=True"):
        train_image_ae(MaskDataset([root / "corpus"]), root / "x", LoopSettings(max_steps=1, quiet=True), TINY,
                       device="cpu")


def test_normalize_intensities():
    image = np.linspace(0, 10, 1000).reshape(10, 10, 10)
    out = normalize_intensities(image)
    assert out.max() == 1.0 and out.min() == 0.0 and out.dtype == np.float32
