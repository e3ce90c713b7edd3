"""Mask generator plumbing with tiny networks: training resumes, conditioning matters, seeds reproduce,
weights are checksum-verified, out-of-range requests are clamped with a warning."""
import json

import numpy as np
import pytest
import torch

from ventkit.anatomy.corpus import build_corpus
from ventkit.models import WeightsError
from ventkit.paths import models_dir
from ventkit.synthesis.mask_generator import MaskGenerator, export_weights
from ventkit.synthesis.mask_model import MaskModelConfig, build_unet, encode_volume
from ventkit.training.latent import diffusion_weights
from ventkit.training.loop import LoopSettings, Run
from ventkit.training.mask import train_mask_ae, train_mask_ldm
from ventkit.training.mask_data import MaskDataset

TINY = MaskModelConfig(ae_channels=(8, 8, 8), ae_norm_groups=8, ldm_channels=(16, 16, 16),
                       ldm_attention=(False, False, True), ldm_head_channels=8, ldm_norm_groups=8,
                       train_timesteps=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("mask")
    build_corpus(root / "corpus", n=2, volumes="natural", seed=0, grid="mask", quiet=True)
    data = MaskDataset([root / "corpus"])
    settings = LoopSettings(max_steps=2, quiet=True, preview_every=2)
    assert train_mask_ae(data, root / "ae", settings, TINY, device="cpu") == 2
    settings4 = LoopSettings(max_steps=4, quiet=True, preview_every=1000)
    assert train_mask_ae(data, root / "ae", settings4, TINY, device="cpu") == 4  # resumed from step 2
    assert train_mask_ldm(data, root / "ae", root / "ldm", settings, TINY, batch_size=2, device="cpu") == 2
    ldm = Run(root / "ldm").load()
    export_weights(ldm["autoencoder"], diffusion_weights(ldm), TINY, ldm["scale_factor"], root / "model",
                   {"training": "test"})
    return root, data


def test_training_resumes_and_logs(trained):
    root, data = trained
    rows = (root / "ae" / "loss_log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,ce") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert (root / "ae" / "preview_000002.png").is_file()
    assert len(data) == 2 and all(5 < v < 150 for v in data.volumes_ml)


def test_conditioning_changes_the_output():
    torch.manual_seed(0)
    unet = build_unet(TINY).eval()
    for p in unet.parameters():  # MONAI zero-initializes output layers; give them weights
        if p.dim() > 1 and not p.any():
            torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 3, 12, 16, 12)
    t = torch.tensor([50, 50])
    with torch.no_grad():
        small = unet(x, timesteps=t, context=encode_volume([15, 15], TINY))
        large = unet(x, timesteps=t, context=encode_volume([250, 250], TINY))
    assert not torch.allclose(small, large)


def test_seeds_reproduce_and_differ(trained):
    gen = MaskGenerator(trained[0] / "model", device="cpu")
    a = gen.sample(100, n=1, seed=1, steps=3)[0]
    b = gen.sample(100, n=1, seed=1, steps=3)[0]
    c = gen.sample(100, n=1, seed=2, steps=3)[0]
    batch = gen.sample(100, n=2, seed=1, steps=3)  # map i of a batch is the map of seed + i
    np.testing.assert_array_equal(a.array, b.array)
    assert (batch[0].array == a.array).mean() > 0.99 and (batch[1].array == c.array).mean() > 0.99
    assert a.array.shape == (48, 64, 48) and np.allclose(a.spacing, gen.grid.spacing)
    assert set(np.unique(a.array)) <= set(range(61))
    assert not np.array_equal(a.array, c.array)


def test_out_of_range_request_is_refused_and_another_guidance_warns(trained):
    from ventkit.errors import InputError, VentkitWarning

    gen = MaskGenerator(trained[0] / "model", device="cpu")
    with pytest.raises(InputError, match="outside the trained range"):
        gen.sample(500)
    defaults = gen.defaults
    assert defaults.volume_range_ml == tuple(gen.cfg.volume_range_ml)
    if gen.calibration is not None:
        assert (defaults.guidance, defaults.steps) == (gen.calibration["guidance"], gen.calibration["ddim_steps"])
        with pytest.warns(VentkitWarning, match="not the calibrated"):
            gen.sample(100, guidance=defaults.guidance + 1, steps=2)


def test_corrupted_weights_are_rejected(trained, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(trained[0] / "model", folder)
    raw = bytearray((folder / "weights.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / "weights.pt").write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        MaskGenerator(folder, device="cpu")
    (folder / "model_card.json").unlink()
    with pytest.raises(WeightsError, match="model card not found"):
        MaskGenerator(folder, device="cpu")


def test_calibration_is_fitted_checksummed_inverted_and_dropped_with_new_weights(trained, tmp_path):
    import shutil

    from ventkit.training.mask_calibration import calibrate

    folder = tmp_path / "model"
    shutil.copytree(trained[0] / "model", folder)
    cal = calibrate(folder, seeds=1, points=3, steps=2, device="cpu")
    assert len(cal["generated_ml"]) == 3 and cal["guidance"] == 3.0
    gen = MaskGenerator(folder, device="cpu")
    assert gen.calibration == cal and "calibration.json" in gen.card["files"]
    gen.calibration = {**cal, "condition_ml": [10.0, 100.0], "generated_ml": [20.0, 200.0]}
    assert gen.condition_ml(50.0, 3.0) == pytest.approx(25.0) and gen.condition_ml(50.0, 1.0) == 50.0
    fitted = (folder / "calibration.json").read_text()
    (folder / "calibration.json").write_text(json.dumps({**cal, "guidance": 2.0}))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        MaskGenerator(folder, device="cpu")
    (folder / "calibration.json").write_text(fitted)
    ldm = Run(trained[0] / "ldm").load()
    other = {k: v + 1 if v.is_floating_point() else v for k, v in diffusion_weights(ldm).items()}
    export_weights(ldm["autoencoder"], other, TINY, 1.0, folder, {"training": "test"})
    assert not (folder / "calibration.json").exists() and MaskGenerator(folder, device="cpu").calibration is None


def test_a_finer_grid_gets_its_own_volume_curve_from_the_same_draws(trained, tmp_path):
    import shutil

    from ventkit.anatomy.grid import GRIDS
    from ventkit.errors import InputError
    from ventkit.training.mask_calibration import CALIBRATION_SEED, calibrate

    folder = tmp_path / "model"
    shutil.copytree(trained[0] / "model", folder)
    with pytest.raises(InputError, match="seg2mm: give grids of the model grid's field of view"):
        calibrate(folder, seeds=1, points=2, steps=2, device="cpu", grids=["seg2mm"])
    cal = calibrate(folder, seeds=1, points=2, steps=2, device="cpu", grids=["fine"])
    gen = MaskGenerator(folder, device="cpu")
    fine = GRIDS["fine"]
    drawn = [gen.ventricle_ml(gen.sample(c, 1, seed=CALIBRATION_SEED, steps=2, calibrated=False, grid=fine)[0])
             for c in cal["condition_ml"]]
    assert cal["generated_ml_by_grid"]["fine"] == pytest.approx(drawn, abs=1e-3)  # what sampling there draws
    gen.calibration = {**cal, "condition_ml": [10.0, 100.0], "generated_ml": [20.0, 200.0],
                       "generated_ml_by_grid": {"fine": [10.0, 50.0]}}
    assert gen.condition_ml(50.0, 3.0) == pytest.approx(25.0)
    assert gen.condition_ml(50.0, 3.0, fine) == pytest.approx(100.0, rel=1e-5)
    assert gen.condition_ml(50.0, 3.0, GRIDS["mask"]) == pytest.approx(25.0)  # no curve of its own


def test_label_offsets_move_drawn_volumes_toward_the_training_maps(trained, tmp_path, capsys):
    import shutil

    from ventkit.cli import main
    from ventkit.labels import SEGMENTATION_IDS
    from ventkit.training.mask_calibration import FIXED_LABELS, calibrate, label_volume_error

    root, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(root / "model", folder)
    assert main(["train", "calibrate-mask", "--model", str(folder), "--seeds", "1", "--points", "2", "--steps", "2",
                 "--device", "cpu", "--data", str(root / "corpus")]) == 0
    assert "label  26: offset" in capsys.readouterr().out
    cal = json.loads((folder / "calibration.json").read_text())
    offsets = cal["label_offsets"]
    assert set(offsets) == {str(i) for i in SEGMENTATION_IDS}
    assert all(offsets[str(i)] == 0 for i in FIXED_LABELS) and any(offsets.values())
    # the fit moves the mean voxel counts of the fitted labels toward the training maps'
    target, before, after = np.array(list(cal["label_offset_fit"]["mean_voxels"].values())).T
    free = ~np.isin(SEGMENTATION_IDS, FIXED_LABELS)
    assert label_volume_error(after, target, free) < label_volume_error(before, target, free)
    gen = MaskGenerator(folder, device="cpu")
    with_offsets = gen.sample(60.0, 1, seed=3, steps=2)[0].array
    gen.label_offsets = None
    assert not np.array_equal(with_offsets, gen.sample(60.0, 1, seed=3, steps=2)[0].array)
    # refitting the volume curve alone keeps the offsets
    assert calibrate(folder, seeds=1, points=2, steps=2, device="cpu")["label_offsets"] == offsets


def test_export_writes_losses_and_benchmark_metrics_into_the_card(trained, tmp_path):
    import json

    from ventkit.cli import main

    root, _ = trained
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"mask_generator": {"guidance_3": {"pearson_r": 0.97}}}))
    assert main(["train", "export-mask", "--ae-run", str(root / "ae"), "--ldm-run", str(root / "ldm"),
                 "--out", str(tmp_path / "model"), "--metrics", str(bench)]) == 0
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["metrics"]["guidance_3"]["pearson_r"] == 0.97
    assert set(card["training"]["final_losses"]["autoencoder"]) == {"loss", "ce", "dice"}
    MaskGenerator(tmp_path / "model", device="cpu")  # checksum of what was written
    bench.write_text(json.dumps({"image_generator": {}}))
    assert main(["train", "export-mask", "--ae-run", str(root / "ae"), "--ldm-run", str(root / "ldm"),
                 "--out", str(tmp_path / "other"), "--metrics", str(bench)]) == 2  # no mask_generator entry
    assert not (tmp_path / "other").exists()


def test_samples_and_exports_come_from_the_moving_average(trained):
    ldm = Run(trained[0] / "ldm").load()
    ema, raw = diffusion_weights(ldm), ldm["modules"]["unet"]
    assert ema.keys() == raw.keys() and int(ldm["modules"]["ema"]["n_averaged"]) == 2
    assert any(not torch.equal(ema[k], raw[k]) for k in raw)


def test_slim_checkpoint_resumes_with_a_fresh_optimizer(trained, tmp_path):
    from ventkit.training.loop import slim_checkpoint

    root, data = trained
    (tmp_path / "ldm").mkdir()
    slim = slim_checkpoint(Run(root / "ldm"), tmp_path / "ldm" / "checkpoint.pt")
    state = torch.load(slim, weights_only=False)
    assert "optimizers" not in state and all(v.dtype == torch.float16 for v in state["modules"]["unet"].values()
                                             if v.is_floating_point())
    settings = LoopSettings(max_steps=3, quiet=True, preview_every=1000)
    assert train_mask_ldm(data, root / "ae", tmp_path / "ldm", settings, TINY, batch_size=2, device="cpu") == 3


def test_a_terminated_run_keeps_its_steps(tmp_path):
    from ventkit.training.loop import train_loop

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters())

    def step(i):
        if i == 2:
            raise KeyboardInterrupt  # what SIGTERM (the panels' Cancel) raises in ventkit
        return {"loss": float(i)}

    run = Run(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train_loop(run, {"net": net}, {"net": opt}, step, LoopSettings(max_steps=10, quiet=True, checkpoint_minutes=60))
    assert run.load()["step"] == 2 and len(run.loss_log.read_text().splitlines()) == 3


def test_a_resumed_run_continues_as_if_never_stopped(trained, tmp_path):
    _, data = trained

    def losses(run):
        return [r.split(",")[1] for r in (run / "loss_log.csv").read_text().splitlines()[1:]]

    quiet = dict(quiet=True, preview_every=1000)
    train_mask_ae(data, tmp_path / "once", LoopSettings(max_steps=4, **quiet), TINY, device="cpu")
    train_mask_ae(data, tmp_path / "twice", LoopSettings(max_steps=2, **quiet), TINY, device="cpu")
    train_mask_ae(data, tmp_path / "twice", LoopSettings(max_steps=4, **quiet), TINY, device="cpu")
    assert losses(tmp_path / "once") == losses(tmp_path / "twice")  # same maps, noise and weights per step


def test_diffusion_stage_encodes_once_and_previews_samples(trained, tmp_path, monkeypatch):
    import shutil

    from monai.networks.nets import AutoencoderKL

    root, data = trained
    assert all((root / "ldm" / f"preview_000002_{v}ml.png").is_file() for v in (30, 200))
    encoded = torch.load(root / "ldm" / "latents.pt", weights_only=True)
    assert len(encoded["latents"]) == len(encoded["volumes_ml"]) == 2 * len(data)  # every map and its mirror
    z = encoded["latents"]
    torch.testing.assert_close(z.mean((0, 2, 3, 4)), torch.zeros(3), atol=1e-5, rtol=0)  # standardized
    torch.testing.assert_close(z.std((0, 2, 3, 4)), torch.ones(3), atol=1e-5, rtol=0)
    shutil.copytree(root / "ldm", tmp_path / "ldm")

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(AutoencoderKL, "encode", no_encoding)
    settings = LoopSettings(max_steps=3, quiet=True, preview_every=1000)
    assert train_mask_ldm(data, root / "ae", tmp_path / "ldm", settings, TINY, batch_size=2, device="cpu") == 3
    with pytest.raises(AssertionError, match="encoded again"):  # other maps: other latents
        train_mask_ldm(MaskDataset([root / "corpus", root / "corpus"]), root / "ae", tmp_path / "ldm",
                       LoopSettings(max_steps=4, quiet=True), TINY, batch_size=2, device="cpu")


def test_diffusion_pairs_render_a_t1_while_the_image_generator_is_not_shipped(trained, tmp_path, monkeypatch):
    from ventkit.synthesis.pairs import DiffusionSynthesizer, write_pair

    monkeypatch.setenv("VENTKIT_MODELS", str(tmp_path / "none"))
    root, _ = trained
    synth = DiffusionSynthesizer(mask_model=root / "model", steps=5)
    a, b = synth.sample(80.0, seed=3), synth.sample(80.0, seed=3)
    assert a.info["backend"] == "diffusion" and a.info["image"] == "rendered" and "rendered" in synth.description
    np.testing.assert_array_equal(a.segmentation.array, b.segmentation.array)
    np.testing.assert_array_equal(a.image.array, b.image.array)
    np.testing.assert_allclose(a.image.affine, a.segmentation.affine)
    assert a.image.array.shape == a.segmentation.array.shape and a.image.array.std() > 0
    files = write_pair(a, tmp_path / "out", "p")
    assert json.loads(files["info"].read_text())["measured_ml"] == a.info["measured_ml"]


def test_finer_spacing_keeps_the_field_of_view_and_the_map(trained, tmp_path, monkeypatch):
    from ventkit.errors import InputError
    from ventkit.synthesis.pairs import Appearance, DiffusionSynthesizer
    from ventkit.volumetry import ventricle_volumes_ml

    monkeypatch.setenv("VENTKIT_MODELS", str(tmp_path / "none"))
    root, _ = trained
    gen = MaskGenerator(root / "model", "cpu")
    coarse = gen.sample(80.0, 1, seed=2, steps=3)[0]
    fine = gen.sample(80.0, 1, seed=2, steps=3, spacing_mm=2.0)[0]
    np.testing.assert_allclose(fine.spacing, 2.0, atol=0.05)
    extent = lambda v: np.array(v.array.shape) * v.spacing  # noqa: E731
    np.testing.assert_allclose(extent(fine), extent(coarse), atol=1e-6)
    np.testing.assert_allclose(fine.affine[:3, :3] @ (np.array(fine.array.shape) - 1) / 2 + fine.affine[:3, 3], 0,
                               atol=1e-6)  # centred at the origin like the model grid
    # the same drawn map: per-label volumes agree up to boundary interpolation
    a, b = ventricle_volumes_ml(coarse), ventricle_volumes_ml(fine)
    assert abs(a["total"] - b["total"]) <= 0.15 * a["total"] + 1.0
    with pytest.raises(InputError, match="spacing"):
        gen.sample(80.0, 1, spacing_mm=10.0)
    with pytest.raises(InputError, match="spacing"):
        DiffusionSynthesizer(mask_model=root / "model", spacing_mm=0.1)
    # a training appearance: randomized contrast and thick slices, said in the pair's info
    synth = DiffusionSynthesizer(mask_model=root / "model", steps=3, spacing_mm=2.5,
                                 appearance=Appearance("random", (4.0, 6.0)))
    pair = synth.sample(80.0, seed=1)
    assert pair.info["contrast"] == "random" and 4.0 <= pair.info["thickness_mm"] <= 6.0
    assert pair.image.array.shape == pair.segmentation.array.shape and pair.info["spacing_mm"][0] == 2.5
    with pytest.raises(InputError, match="thickness"):
        Appearance("t1", (0.2, 1.0))
    with pytest.raises(InputError, match="acquisition"):
        Appearance("t1", acquisition="blurry")


def test_cli_synth_mask_writes_maps_and_prints_volumes(trained, tmp_path, capsys):
    from ventkit.cli import main
    from ventkit.io import read_volume
    from ventkit.volumetry import ventricle_volumes_ml

    root, _ = trained
    assert main(["synth", "mask", "--model", str(root / "model"), "--volume", "100", "--n", "2", "--seed", "4",
                 "--steps", "3", "--device", "cpu", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["mask_100ml_seed4", "mask_100ml_seed5"]
    maps = read_volume(tmp_path / "mask_100ml_seed5.nii.gz", labels=True)
    assert maps.array.shape == (48, 64, 48) and np.allclose(maps.spacing, (10 / 3, 3.0625, 10 / 3))
    assert lines[1].endswith(f"generated {ventricle_volumes_ml(maps)['total']:.1f} mL")  # measured on the file
    assert (tmp_path / "mask_100ml_seed4.png").is_file()


def test_standardized_latents_decode_the_same():
    from ventkit.synthesis.mask_model import build_autoencoder
    from ventkit.training.latent import standardize_latents

    torch.manual_seed(0)
    ae = build_autoencoder(TINY).eval()
    x = torch.rand(2, 33, 16, 16, 16)
    with torch.no_grad():
        mu, sigma = ae.encode(x)
        before = ae.decode(mu)
        mean, std = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 0.5, 3.0])
        standardize_latents(ae, mean, std)
        mu2, sigma2 = ae.encode(x)
        torch.testing.assert_close(mu2, (mu - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1))
        torch.testing.assert_close(sigma2, sigma / std.view(1, 3, 1, 1, 1))
        torch.testing.assert_close(ae.decode(mu2), before, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not (models_dir() / "mask_generator" / "model_card.json").is_file(),
                    reason="the mask generator is not shipped")
def test_shipped_mask_generator_follows_the_requested_volume():
    """Seeds the benchmark does not use; 25 DDIM steps keep it quick, so the margins are wide."""
    gen = MaskGenerator(device="cpu")
    assert "guidance_3" in gen.card.get("metrics", {}), "card without benchmark figures"
    small, large = ([gen.ventricle_ml(m) for m in gen.sample(v, n=2, seed=1000, steps=25)] for v in (30, 200))
    print(f"requested 30 mL: {small}; requested 200 mL: {large}")
    assert max(small) < min(large)
    assert all(abs(v - 30) <= 0.4 * 30 for v in small) and all(abs(v - 200) <= 0.4 * 200 for v in large)
