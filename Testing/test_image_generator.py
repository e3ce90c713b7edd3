"""Image generator plumbing with tiny SPADE networks: pairs on the model grid, training resumes and logs,
the diffusion model is conditioned on the label map."""
import numpy as np
import pytest
import torch

from ventkit.anatomy.corpus import build_corpus
from ventkit.paths import models_dir
from ventkit.synthesis.image_model import ImageModelConfig, build_image_unet, normalize_intensities
from ventkit.synthesis.mask_model import one_hot
from ventkit.training.image import train_image_ae, train_image_ldm
from ventkit.training.latent import diffusion_weights
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
    assert (root / "ldm" / "preview_000002.png").is_file()  # a DDIM sample of the diffusion model
    ldm = Run(root / "ldm").load()
    assert ldm["stage"] == "image-ldm" and ldm["scale_factor"] > 0 and "autoencoder" in ldm


def test_autoencoder_resumed_with_a_spectral_term_logs_it_and_keeps_it(trained, tmp_path):
    import csv
    import shutil

    from ventkit.errors import InputError

    root, data = trained
    shutil.copytree(root / "ae", tmp_path / "ae")
    assert train_image_ae(data, tmp_path / "ae", LoopSettings(max_steps=4, quiet=True), TINY, device="cpu",
                          spectral_weight=1.0) == 4
    with open(tmp_path / "ae" / "loss_log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["step", "loss", "l1", "spectral", "seconds"]
    assert [r["spectral"] for r in rows][:3] == ["", "", ""] and float(rows[3]["spectral"]) > 0
    assert float(rows[3]["loss"]) >= float(rows[3]["l1"]) + float(rows[3]["spectral"])  # plus the KL term
    assert Run(tmp_path / "ae").recent_losses()["spectral"] == round(float(rows[3]["spectral"]), 5)
    # resumed without a weight, the run goes on with the one it was given
    assert Run(tmp_path / "ae").load()["spectral_weight"] == 1.0
    assert train_image_ae(data, tmp_path / "ae", LoopSettings(max_steps=5, quiet=True), TINY, device="cpu") == 5
    with open(tmp_path / "ae" / "loss_log.csv", newline="") as fh:
        assert float(list(csv.DictReader(fh))[4]["spectral"]) > 0
    for bad in (-1.0, float("nan")):
        with pytest.raises(InputError, match="spectral weight"):
            train_image_ae(data, tmp_path / "ae", LoopSettings(max_steps=5, quiet=True), TINY, device="cpu",
                           spectral_weight=bad)


def test_every_training_image_is_also_seen_under_other_acquisitions(trained):
    from ventkit.training.image import APPEARANCE_VARIANTS, appearance_variants

    root, data = trained
    rounds = list(appearance_variants(data.images, 3, seed=1))
    assert len(rounds) == 3 * len(data.images)
    for k, image in enumerate(data.images):
        assert rounds[k] is image  # the first round is the data itself
        brain = data.labels[k] > 0
        for variant in rounds[k + len(data.images)::len(data.images)]:
            assert variant.shape == image.shape and 0 <= variant.min() and variant.max() <= 1
            r = np.corrcoef(variant[brain], image[brain])[0, 1]
            assert 0.8 < r < 0.9999  # another bias field and gamma, the same anatomy
    latents = torch.load(root / "ldm" / "latents.pt", weights_only=True)["latents"]
    assert len(latents) == APPEARANCE_VARIANTS * len(data)  # what the diffusion model was trained on


def test_diffusion_model_depends_on_the_label_map(trained):
    root, data = trained
    unet = build_image_unet(TINY)
    unet.load_state_dict(diffusion_weights(Run(root / "ldm").load()))
    unet.eval()
    z = torch.randn(1, TINY.latent_channels, 12, 16, 12)
    t = torch.tensor([50])
    with torch.no_grad():
        a = unet(z, timesteps=t, seg=one_hot(data.labels[0])[None])
        b = unet(z, timesteps=t, seg=one_hot(np.flip(data.labels[0], 2).copy())[None])
    assert not torch.allclose(a, b)


def test_decoder_tuning_leaves_the_diffusion_models_latents_alone(trained):
    from ventkit.errors import VentkitError
    from ventkit.training.image import DECODER_KEYS, image_base, train_image_decoder, with_tuned_decoder

    root, data = trained
    settings = LoopSettings(max_steps=2, quiet=True, preview_every=2)
    assert train_image_decoder(data, root / "ldm", root / "decoder", settings, device="cpu", variants=2,
                               latent_noise=0.3) == 2
    assert (root / "decoder" / "preview_000002.png").is_file()
    base, decoder = image_base(root / "ldm"), Run(root / "decoder").load()
    assert decoder["latent_noise"] == 0.3 and decoder["base"] == str(root / "ldm")
    tuned = with_tuned_decoder(base, decoder)
    changed = [k for k in tuned if not torch.equal(tuned[k], base["autoencoder"][k])]
    assert changed and all(k.startswith(DECODER_KEYS) for k in changed)
    encoder_key = next(k for k in tuned if k.startswith("encoder."))
    moved = {**tuned, encoder_key: tuned[encoder_key] + 1}
    with pytest.raises(VentkitError, match="another autoencoder"):
        with_tuned_decoder(base, dict(decoder, modules={"autoencoder": moved}))
    with pytest.raises(VentkitError, match="image-decoder"):
        with_tuned_decoder(base, Run(root / "ldm").load())
    with pytest.raises(VentkitError, match="neither a generator folder"):
        image_base(root / "ae")


def test_a_shipped_generators_decoder_is_tuned_and_shipped_with_the_rest_unchanged(trained, tmp_path):
    from ventkit.cli import main
    from ventkit.synthesis.image_generator import ImageGenerator
    from ventkit.training.image import DECODER_KEYS, image_base

    root, _ = trained
    shipped, tuned = tmp_path / "shipped", tmp_path / "tuned"
    assert main(["train", "export-image", "--ae-run", str(root / "ae"), "--ldm-run", str(root / "ldm"),
                 "--out", str(shipped)]) == 0
    assert main(["train", "image-decoder", "--data", str(root / "corpus"), "--base", str(shipped),
                 "--run", str(tmp_path / "run"), "--steps", "2", "--appearance-variants", "1"]) == 0
    assert main(["train", "export-image", "--decoder-run", str(tmp_path / "run"), "--out", str(tuned)]) == 0
    before, after = image_base(shipped), image_base(tuned)
    assert [r["steps"] for r in after["training"]["decoder_tuning"]] == [2]
    assert main(["train", "image-decoder", "--data", str(root / "corpus"), "--base", str(tuned), "--run",
                 str(tmp_path / "again"), "--steps", "1", "--appearance-variants", "1", "--latent-noise", "1"]) == 0
    assert main(["train", "export-image", "--decoder-run", str(tmp_path / "again"), "--out", str(tmp_path / "t2")]) == 0
    rounds = image_base(tmp_path / "t2")["training"]["decoder_tuning"]
    assert [(r["steps"], r["latent_noise"]) for r in rounds] == [(2, 0.5), (1, 1.0)]
    assert after["training"]["diffusion_steps"] == before["training"]["diffusion_steps"]
    assert all(torch.equal(after["unet"][k], v) for k, v in before["unet"].items())
    keys = before["autoencoder"]
    assert all(torch.equal(after["autoencoder"][k], keys[k]) for k in keys if not k.startswith(DECODER_KEYS))
    assert any(not torch.equal(after["autoencoder"][k], keys[k]) for k in keys if k.startswith(DECODER_KEYS))
    ImageGenerator(tuned, device="cpu")  # its card's checksum holds


def test_image_training_refuses_maps_without_images(trained):
    root, _ = trained
    with pytest.raises(ValueError, match="images=True"):
        train_image_ae(MaskDataset([root / "corpus"]), root / "x", LoopSettings(max_steps=1, quiet=True), TINY,
                       device="cpu")


def test_normalize_intensities():
    image = np.linspace(0, 10, 1000).reshape(10, 10, 10)
    out = normalize_intensities(image)
    assert out.max() == 1.0 and out.min() == 0.0 and out.dtype == np.float32


@pytest.fixture(scope="module")
def generator(trained):
    from ventkit.synthesis.image_generator import ImageGenerator, export_image_weights

    root, _ = trained
    ldm = Run(root / "ldm").load()
    export_image_weights(ldm["autoencoder"], diffusion_weights(ldm), TINY, ldm["scale_factor"], root / "model",
                         {"training": "test"})
    return ImageGenerator(root / "model", device="cpu")


def test_generated_image_lies_on_the_label_maps_grid(generator, subject01):
    from ventkit.io import Volume

    crop = subject01.array[40:200, 30:220, 20:180]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    labels = Volume(crop[::-1, ::-1].copy(), lps @ subject01.affine, "lps crop")
    a, b = generator.sample(labels, seed=0, steps=3), generator.sample(labels, seed=1, steps=3)
    assert a.array.shape == labels.array.shape and np.allclose(a.affine, labels.affine)
    assert 0 <= a.array.min() and a.array.max() <= 1
    assert not np.array_equal(a.array, b.array)


def test_bad_label_maps_are_refused(generator):
    from ventkit.errors import InputError
    from ventkit.io import Volume

    with pytest.raises(InputError, match="unknown label values"):
        generator.sample(Volume(np.full((20, 20, 20), 999, np.int16), np.eye(4), "odd"), steps=2)
    with pytest.raises(InputError):
        generator.sample(Volume(np.zeros((20, 20), np.int16), np.eye(3), "flat"), steps=2)


def test_cli_export_and_synth_image(trained, tmp_path, capsys):
    from ventkit.cli import main
    from ventkit.io import Volume, read_volume, write_volume

    root, data = trained
    model = tmp_path / "image_generator"
    assert main(["train", "export-image", "--ae-run", str(root / "ae"), "--ldm-run", str(root / "ldm"),
                 "--out", str(model)]) == 0
    labels = Volume(data.labels[0], np.diag([3.0, 3.0, 3.0, 1.0]), "map")
    write_volume(labels, tmp_path / "map.nii.gz", dtype="int16")
    assert main(["synth", "image", str(tmp_path / "map.nii.gz"), "--out", str(tmp_path / "t1.nii.gz"),
                 "--model", str(model), "--steps", "2", "--device", "cpu"]) == 0
    image = read_volume(tmp_path / "t1.nii.gz")
    assert image.array.shape == labels.array.shape and np.allclose(image.affine, labels.affine)


def test_diffusion_pairs_share_grid_and_name_their_backend(trained, generator, tmp_path):
    import json

    from ventkit.synthesis.mask_generator import export_weights
    from ventkit.synthesis.mask_model import MaskModelConfig
    from ventkit.synthesis.pairs import DiffusionSynthesizer, write_pair
    from ventkit.training.mask import train_mask_ae, train_mask_ldm

    root, data = trained
    tiny_mask = MaskModelConfig(ae_channels=(8, 8, 8), ae_norm_groups=8, ldm_channels=(16, 16, 16),
                                ldm_attention=(False, False, True), ldm_head_channels=8, ldm_norm_groups=8,
                                train_timesteps=100)
    settings = LoopSettings(max_steps=1, quiet=True)
    train_mask_ae(data, tmp_path / "mask_ae", settings, tiny_mask, device="cpu")
    train_mask_ldm(data, tmp_path / "mask_ae", tmp_path / "mask_ldm", settings, tiny_mask, batch_size=1, device="cpu")
    ldm = Run(tmp_path / "mask_ldm").load()
    export_weights(ldm["autoencoder"], diffusion_weights(ldm), tiny_mask, ldm["scale_factor"], tmp_path / "mask",
                   {"training": "test"})
    synth = DiffusionSynthesizer(tmp_path / "mask", root / "model", device="cpu", steps=2)
    pair = synth.sample(100.0, seed=4)
    assert pair.image.array.shape == pair.segmentation.array.shape == (48, 64, 48)
    assert np.allclose(pair.image.affine, pair.segmentation.affine)
    files = write_pair(pair, tmp_path / "out", "p", preview=False)
    info = json.loads(files["info"].read_text())
    assert info["backend"] == "diffusion" and info["requested_ml"] == 100.0


def test_all_generator_stages_in_one_budget(tmp_path):
    from test_mask_generator import TINY as TINY_MASK
    from ventkit.training.generators import STAGES, train_generators

    build_corpus(tmp_path / "corpus", n=2, volumes="natural", seed=0, grid="mask", quiet=True)
    corpus = [tmp_path / "corpus"]
    steps = dict.fromkeys(STAGES, 2)
    kw = dict(device="cpu", mask_cfg=TINY_MASK, image_cfg=TINY, log=lambda *_: None)
    assert train_generators(corpus, corpus, tmp_path / "runs", 10, steps, **kw) == steps
    more = {**steps, "mask_ae": 3}
    assert train_generators(corpus, corpus, tmp_path / "runs", 10, more, **kw) == more  # resumed, not redone
    # a stage that misses its target within the budget stops the chain: no diffusion on a half autoencoder
    reached = train_generators(corpus, None, tmp_path / "short", 0.25, {**steps, "mask_ae": 10**6}, **kw)
    assert list(reached) == ["mask_ae"] and reached["mask_ae"] < 10**6
    assert not (tmp_path / "short" / "mask_ldm").exists()


def test_packed_dataset_loads_the_same_pairs(trained, tmp_path):
    from ventkit.errors import InputError

    root, data = trained
    packed = MaskDataset([data.pack(tmp_path / "pairs.npz")], images=True)
    assert packed.volumes_ml == data.volumes_ml and packed.subjects == data.subjects
    for a, b, ia, ib in zip(packed.labels, data.labels, packed.images, data.images):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(ia, ib, atol=0.5 / 255 + 1e-6)  # 8-bit images
    with pytest.raises(InputError, match="not the 'seg2mm' grid"):
        MaskDataset([tmp_path / "pairs.npz"], grid="seg2mm")
    maps = MaskDataset([root / "corpus"]).pack(tmp_path / "maps.npz")
    assert len(MaskDataset([maps])) == 2  # maps only: enough for the mask generator, not the image one
    with pytest.raises(InputError, match="without images"):
        MaskDataset([maps], images=True)
    mixed = MaskDataset([maps, root / "corpus"])  # a pack extended by a folder: the pack's maps first
    assert len(mixed) == 4 and mixed.volumes_ml == data.volumes_ml * 2
    np.testing.assert_array_equal(mixed.labels[2], data.labels[0])


def test_standardized_spade_latents_decode_the_same():
    from ventkit.synthesis.image_model import build_image_autoencoder
    from ventkit.training.latent import standardize_latents

    torch.manual_seed(0)
    ae = build_image_autoencoder(TINY).eval()
    x, seg = torch.rand(1, 1, 16, 16, 16), torch.rand(1, 33, 16, 16, 16)
    with torch.no_grad():
        mu, _ = ae.encode(x)
        before = ae.decode(mu, seg)
        mean, std = torch.linspace(-1, 1, mu.shape[1]), torch.linspace(0.5, 2, mu.shape[1])
        standardize_latents(ae, mean, std)
        mu2, _ = ae.encode(x)
        torch.testing.assert_close(ae.decode(mu2, seg), before, atol=1e-5, rtol=1e-4)


def test_autoencoder_patches_lie_on_the_brain_inside_the_map():
    from ventkit.training.image import brain_patch

    labels = np.zeros((48, 64, 48), np.int16)
    labels[40:46, 2:8, 1:5] = 2  # brain only in a corner: patches are pushed back inside the map
    rng = np.random.default_rng(0)
    for _ in range(20):
        box = brain_patch(labels, (32, 32, 32), rng)
        assert labels[box].shape == (32, 32, 32) and (labels[box] > 0).any()


@pytest.mark.skipif(not (models_dir() / "image_generator" / "model_card.json").is_file(),
                    reason="the image generator is not shipped")
def test_shipped_image_generator_follows_a_holdout_map(subjects):
    """A hold-out subject's real map (never trained on), 25 DDIM steps: the tissues keep a T1's order."""
    from ventkit.anatomy.subjects import load_subject
    from ventkit.labels import VENTRICLE_IDS, to_segmentation
    from ventkit.synthesis.image_generator import ImageGenerator

    gen = ImageGenerator(device="cpu")
    assert "tissue_classifier_agreement" in gen.card.get("metrics", {}), "card without benchmark figures"
    source = load_subject(str(subjects["training_seg_03"]))
    labels = source.with_array(to_segmentation(source.array))
    image = gen.sample(labels, seed=7, steps=25)
    assert image.array.shape == labels.array.shape and np.allclose(image.affine, labels.affine)
    seg = labels.array
    wm, gm = image.array[np.isin(seg, (2, 41))].mean(), image.array[np.isin(seg, (3, 42))].mean()
    csf = image.array[np.isin(seg, VENTRICLE_IDS)].mean()
    print(f"white {wm:.3f}, grey {gm:.3f}, ventricles {csf:.3f}")
    assert wm > gm + 0.05 and gm > csf + 0.05  # 1 mm map: small ventricles blur into grey at 3.3 mm


@pytest.mark.skipif(not (models_dir() / "mask_generator" / "model_card.json").is_file(),
                    reason="the mask generator is not shipped")
def test_pairs_use_the_image_generator_unless_a_randomized_look_is_asked_for(generator, trained):
    from ventkit.synthesis.pairs import Appearance, DiffusionSynthesizer

    root, _ = trained
    pair = DiffusionSynthesizer(image_model=root / "model", device="cpu", steps=2).sample(60.0, seed=0)
    assert pair.info["image"] == "spade-ldm"
    assert pair.image.array.shape == pair.segmentation.array.shape
    assert np.allclose(pair.image.affine, pair.segmentation.affine)
    synth = DiffusionSynthesizer(image_model=root / "model", device="cpu", steps=2, appearance=Appearance("random"))
    assert synth.images is None and "randomized appearance" in synth.description
    assert synth.sample(60.0, seed=0).info["image"] == "rendered"


def test_fine_grid_generator_compresses_x8_and_resumes_only_with_its_sizes(tmp_path, capsys):
    from ventkit.cli import main

    build_corpus(tmp_path / "corpus", n=1, volumes="natural", seed=0, grid="fine", quiet=True)
    data, ae, ldm = str(tmp_path / "corpus"), str(tmp_path / "ae"), str(tmp_path / "ldm")
    small = ["--ae-channels", "8", "8", "8", "8", "--steps", "1", "--device", "cpu"]
    assert main(["train", "image-ae", "--data", data, "--run", ae, "--grid", "fine", *small]) == 0
    assert main(["train", "image-ae", "--data", data, "--run", ae, "--ae-channels", "8", "8", "8", "--steps", "2"]) == 2
    assert "was started with grid fine" in capsys.readouterr().err
    assert main(["train", "image-ldm", "--data", data, "--ae-run", ae, "--run", ldm, "--steps", "1",
                 "--device", "cpu"]) == 0
    state = Run(ldm).load()
    cfg = ImageModelConfig.from_dict(state["config"])
    assert (cfg.grid, cfg.downsampling) == ("fine", 8)
    latents = torch.load(tmp_path / "ldm" / "latents.pt", weights_only=True)["latents"]
    assert tuple(latents.shape[1:]) == cfg.latent_shape((96, 128, 96)) == (3, 12, 16, 12)  # the mask grid's latent size
    # pairs from the shipped mask generator and this image generator: both on the fine grid
    from ventkit.anatomy.grid import GRIDS
    from ventkit.synthesis.pairs import DiffusionSynthesizer

    assert main(["train", "export-image", "--ae-run", ae, "--ldm-run", ldm, "--out", str(tmp_path / "fine")]) == 0
    pair = DiffusionSynthesizer(image_model=tmp_path / "fine", device="cpu", steps=2).sample(60.0, seed=1)
    assert pair.segmentation.array.shape == pair.image.array.shape == GRIDS["fine"].shape
    assert np.allclose(pair.segmentation.spacing, GRIDS["fine"].spacing)
    assert np.allclose(pair.image.affine, pair.segmentation.affine)
