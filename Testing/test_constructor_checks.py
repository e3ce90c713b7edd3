"""Public constructors and configs refuse clearly invalid arguments with a ValueError naming them."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from ventkit.anatomy.deform import DeformationSpec
from ventkit.anatomy.grid import Grid
from ventkit.anatomy.nnunet import NnUNetDatasetWriter
from ventkit.anatomy.render import RenderSpec
from ventkit.errors import InputError
from ventkit.io import Volume
from ventkit.jobs import ChildJob
from ventkit.synthesis.image_model import ImageModelConfig
from ventkit.synthesis.mask_generator import DrawSettings, SamplingDefaults
from ventkit.synthesis.mask_model import MaskModelConfig
from ventkit.synthesis.pairs import AnatomySynthesizer, Appearance, DiffusionSynthesizer
from ventkit.training.loop import LoopSettings

MODELS = Path(__file__).resolve().parents[1] / "Resources" / "Models"


def test_render_spec():
    assert RenderSpec(contrast="real", thickness_mm=(1, 1), noise_std=(0.0, 0.0), head_texture=0.7).contrast == "real"
    with pytest.raises(ValueError, match=r"thickness_mm must be \(lo, hi\) with 0 < lo <= hi, got \(6.0, 1.0\)"):
        RenderSpec(thickness_mm=(6.0, 1.0))
    with pytest.raises(ValueError, match="thickness_mm must be"):
        RenderSpec(thickness_mm=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"noise_std must be \(lo, hi\) with 0 <= lo <= hi"):
        RenderSpec(noise_std=(0.0, math.nan))
    with pytest.raises(ValueError, match="bias_std must be finite and >= 0, got -0.1"):
        RenderSpec(bias_std=-0.1)
    with pytest.raises(ValueError, match="unknown contrast 't2'"):
        RenderSpec(contrast="t2")


def test_deformation_spec():
    assert DeformationSpec(scaling=0.0, elastic_std_mm=0.0).elastic_std_mm == 0.0
    with pytest.raises(ValueError, match="rotation_deg must be finite and >= 0, got -1"):
        DeformationSpec(rotation_deg=-1)
    with pytest.raises(ValueError, match="scaling must be below 1"):
        DeformationSpec(scaling=1.0)
    with pytest.raises(ValueError, match="field_spacing_mm must be above 0"):
        DeformationSpec(field_spacing_mm=0.0)
    with pytest.raises(ValueError, match="elastic_std_mm must be finite"):
        DeformationSpec(elastic_std_mm=math.inf)


def test_grid():
    assert Grid((2, 3, 4), (1.0, 1.5, np.float64(2.0))).extent_mm.tolist() == [2.0, 4.5, 8.0]
    with pytest.raises(ValueError, match="shape must be three integers >= 1"):
        Grid((48, 0, 48), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="shape must be three integers >= 1"):
        Grid((48, 48), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"spacing must be three finite numbers > 0 \(mm\)"):
        Grid((4, 4, 4), (1.0, -1.0, 1.0))


def test_nnunet_writer(tmp_path):
    assert NnUNetDatasetWriter(tmp_path / "ds", "a description").cases() == []
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="root must be a folder, got the file"):
        NnUNetDatasetWriter(tmp_path / "file")
    with pytest.raises(ValueError, match="description must be a string, got int"):
        NnUNetDatasetWriter(tmp_path / "ds", 3)


def test_volume():
    v = Volume(np.zeros((2, 3, 4)), np.eye(4), "ok")
    assert v.with_array(np.ones((2, 3, 4, 1))).array.ndim == 4  # a trailing axis of 1 is left to `validate`
    with pytest.raises(InputError, match="flat: expected a 3-D volume, got 2-D data of shape"):
        Volume(np.zeros((4, 4)), np.eye(4), "flat")
    with pytest.raises(ValueError, match="affine must be a 4x4 matrix, got shape"):
        Volume(np.zeros((2, 2, 2)), np.eye(3))
    affine = np.eye(4)
    affine[0, 3] = np.nan
    with pytest.raises(ValueError, match="affine must be finite"):
        Volume(np.zeros((2, 2, 2)), affine)


@pytest.mark.parametrize("name, cls", [("mask_generator", MaskModelConfig), ("image_generator", ImageModelConfig)])
def test_shipped_model_configs_are_valid(name, cls):
    cfg = cls.from_dict(json.loads((MODELS / name / "model_card.json").read_text())["config"])
    assert cls.from_dict(cfg.to_dict()) == cfg


def test_mask_model_config():
    assert MaskModelConfig(ae_channels=(8, 8, 8), ldm_channels=(16, 16, 16), ldm_attention=(False, False, True),
                           ldm_head_channels=8, ldm_norm_groups=8, train_timesteps=100).train_timesteps == 100
    with pytest.raises(ValueError, match="grid must be one of"):
        MaskModelConfig(grid="tiny")
    with pytest.raises(ValueError, match="ldm_attention must be a tuple of 3 booleans"):
        MaskModelConfig(ldm_attention=(False, True))
    with pytest.raises(ValueError, match=r"volume_range_ml must be \(lo, hi\) with 0 < lo < hi"):
        MaskModelConfig(volume_range_ml=(300.0, 5.0))
    with pytest.raises(ValueError, match="latent_channels must be an integer >= 1, got 0"):
        MaskModelConfig(latent_channels=0)
    with pytest.raises(ValueError, match="prediction_type must be one of epsilon, v_prediction"):
        MaskModelConfig.from_dict({"prediction_type": "noise"})


def test_image_model_config():
    assert ImageModelConfig(spade_channels=4).spade_channels == 4
    with pytest.raises(ValueError, match="spade_channels must be an integer >= 1"):
        ImageModelConfig(spade_channels=-8)
    with pytest.raises(ValueError, match="ae_channels must be a non-empty tuple of integers >= 1"):
        ImageModelConfig(ae_channels=())
    fine = ImageModelConfig(grid="fine", ae_channels=(16, 32, 64, 128))
    assert fine.downsampling == 8 and fine.latent_shape((96, 128, 96)) == (3, 12, 16, 12)
    with pytest.raises(ValueError, match=r"each side must be divisible by 64 \(x16 autoencoder"):
        ImageModelConfig(grid="fine", ae_channels=(8, 8, 8, 8, 8))


def test_sampling_defaults():
    assert SamplingDefaults(3.0, 50, (5.0, 300.0)).steps == 50
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        SamplingDefaults(3.0, 0, (5.0, 300.0))
    with pytest.raises(ValueError, match="guidance must be finite and >= 0, got nan"):
        SamplingDefaults(math.nan, 50, (5.0, 300.0))
    with pytest.raises(ValueError, match="volume_range_ml must be"):
        SamplingDefaults(3.0, 50, (0.0, 300.0))


def test_draw_settings():
    s = DrawSettings([10, 20], guidance=3, steps=5, n=2, seed=4, out_shape=np.array([48, 64, 48]))
    assert s.volume_ml == (10.0, 20.0) and s.out_shape == (48, 64, 48)
    assert DrawSettings(np.float32(30.0), 1.0, 25).volume_ml == 30.0
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        DrawSettings(30.0, 3.0, 25, n=0)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        DrawSettings(30.0, 3.0, 0)
    with pytest.raises(ValueError, match="volume_ml must be a finite volume > 0"):
        DrawSettings(math.nan, 3.0, 25)
    with pytest.raises(ValueError, match="or 2 of them"):
        DrawSettings([10.0, 20.0, 30.0], 3.0, 25, n=2)
    with pytest.raises(ValueError, match="guidance must be finite and >= 0"):
        DrawSettings(30.0, -1.0, 25)
    with pytest.raises(ValueError, match="out_shape must be three integers >= 1"):
        DrawSettings(30.0, 3.0, 25, out_shape=(48, 64))


def test_appearance():
    assert Appearance("mixed", (1.0, 6.0), {2: 1}, "clean").contrast == "mixed"
    with pytest.raises(ValueError, match="unknown contrast 't2'"):
        Appearance("t2")
    with pytest.raises(ValueError, match=r"thickness_mm must be \(lo, hi\) in mm"):
        Appearance("t1", (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="classes must be a dict"):
        Appearance("random", classes=[2, 3])


def test_anatomy_synthesizer(subjects):
    assert AnatomySynthesizer(grid="mask").grid == "mask"
    with pytest.raises(ValueError, match="unknown grid 'tiny'"):
        AnatomySynthesizer(grid="tiny")
    with pytest.raises(ValueError, match="appearance must be an Appearance, got str"):
        AnatomySynthesizer(appearance="t1")


@pytest.mark.parametrize("kw, message", [
    ({"device": "gpu"}, "device must be one of auto, cpu, cuda, got 'gpu'"),
    ({"guidance": math.inf}, "guidance must be finite and >= 0"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"spacing_mm": -1.0}, "spacing_mm must be finite and > 0"),
    ({"appearance": None}, "appearance must be an Appearance"),
])
def test_diffusion_synthesizer_checks_before_loading(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        DiffusionSynthesizer(tmp_path / "no model", **kw)  # refused before any weights are looked for


@pytest.mark.parametrize("kw, message", [
    ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
    ({"tile_step_size": 0.0}, r"tile_step_size must be in \(0, 1\], got 0.0"),
    ({"tile_step_size": 1.5}, r"tile_step_size must be in \(0, 1\]"),
])
def test_segmenter_checks_before_loading(tmp_path, kw, message):
    from ventkit.segmentation.predictor import VentricleSegmenter

    with pytest.raises(ValueError, match=message):
        VentricleSegmenter(tmp_path / "no model", **kw)


def test_loop_settings():
    assert LoopSettings(max_steps=0, minutes=0.25, checkpoint_minutes=0).max_steps == 0
    with pytest.raises(ValueError, match="max_steps must be an integer >= 0, got -1"):
        LoopSettings(max_steps=-1)
    with pytest.raises(ValueError, match="minutes must be finite and >= 0, got nan"):
        LoopSettings(max_steps=10, minutes=math.nan)
    with pytest.raises(ValueError, match="preview_every must be an integer >= 1, got 0"):
        LoopSettings(max_steps=10, preview_every=0)


def test_child_job(tmp_path):
    job = ChildJob([[sys.executable, "-c", "pass"]], tmp_path)
    job.wait()
    assert job.succeeded()
    with pytest.raises(ValueError, match="commands must hold at least one command"):
        ChildJob([], tmp_path)
    with pytest.raises(ValueError, match="each command must be a non-empty list of arguments, got 'ls -l'"):
        ChildJob(["ls -l"], tmp_path)
    with pytest.raises(ValueError, match="work_dir must be an existing folder"):
        ChildJob([[sys.executable, "-c", "pass"]], tmp_path / "missing")
