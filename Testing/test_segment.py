"""VentSegment core: nnU-Net training entry point, export, prediction in the scan's own grid, errors.

The tiny nnU-Net of conftest's `tiny_model` makes meaningless predictions, so these tests check
geometry, bookkeeping and errors, not accuracy.
"""
import json
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ventkit.cli import main
from ventkit.errors import InputError, VentkitError
from ventkit.io import Volume, read_volume, write_volume
from ventkit.labels import VENTRICLE_IDS
from ventkit.models import WeightsError, verified_model
from ventkit.segmentation.predictor import MODEL_FILES, VentricleSegmenter
from ventkit.anatomy.corpus import build_corpus
from ventkit.segmentation.segment import (SYNTHSEG_RECIPE, check_uncertainty, load_segmenter, model_folder,
                                         segment_file, uncertainty_of)
from ventkit.training.segmenter import prepare, use_run_folder
from ventkit.volumetry import VolumeReport
from ventkit.training.uncertainty import calibrate_uncertainty


@pytest.fixture(scope="session")
def segmenter(tiny_model) -> VentricleSegmenter:
    seg = VentricleSegmenter(tiny_model, device="cpu")
    seg.description = "tiny"
    return seg


@pytest.fixture(scope="session")
def scan(tiny_model) -> Volume:
    """A rendered training image (RAS, 3.3 x 3.06 x 3.3 mm)."""
    image = sorted((tiny_model.parent / "Dataset001_Tiny" / "imagesTr").glob("*.nii.gz"))[0]
    return read_volume(image)


def flip_to_lps(v: Volume) -> Volume:
    """Same voxels in space, stored with the first two axes reversed (an LPS-ordered file)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = v.array.shape[0] - 1, v.array.shape[1] - 1
    return Volume(np.ascontiguousarray(v.array[::-1, ::-1]), v.affine @ flip, "lps")


def oblique(v: Volume, degrees: float = 20.0) -> Volume:
    a = np.radians(degrees)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return Volume(v.array, rot @ v.affine, "oblique")


def thick_slices(v: Volume) -> Volume:
    """A 1 x 1 x 5 mm scan: nearest-voxel sampling of `v` on that grid."""
    shape = (160, 192, 32)
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    affine[:3, 3] = v.affine[:3, 3]
    ijk = np.indices(shape).reshape(3, -1)
    src = np.linalg.inv(v.affine) @ (affine @ np.vstack([ijk, np.ones((1, ijk.shape[1]))]))
    idx = np.clip(np.rint(src[:3]).astype(int), 0, np.array(v.array.shape)[:, None] - 1)
    return Volume(v.array[tuple(idx)].reshape(shape), affine, "thick")


@pytest.mark.parametrize("make", [lambda v: v, flip_to_lps, oblique, thick_slices], ids=["ras", "lps", "oblique", "1x1x5"])
def test_output_in_input_grid(make, scan, segmenter, tmp_path):
    vol = make(scan)
    src = write_volume(vol, tmp_path / "scan.nii.gz")
    result = segment_file(src, tmp_path / "out", segmenter)
    written = nib.load(str(result.files["labels"]))
    assert written.shape == vol.array.shape
    assert np.allclose(written.affine, vol.affine, atol=1e-5)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, *VENTRICLE_IDS}


def test_lps_file_gives_the_same_segmentation(scan, segmenter):
    ras = segmenter.segment(scan).array
    lps = segmenter.segment(flip_to_lps(scan)).array
    assert np.array_equal(ras, lps[::-1, ::-1])


def test_nrrd_input(scan, segmenter, tmp_path):
    src = write_volume(scan, tmp_path / "scan.nrrd")
    result = segment_file(src, tmp_path / "out", segmenter)
    assert np.allclose(nib.load(str(result.files["labels"])).affine, read_volume(src).affine, atol=1e-5)


def test_volumes_are_voxel_counts(scan, segmenter, tmp_path):
    vol = thick_slices(scan)
    result = segment_file(write_volume(vol, tmp_path / "s.nii.gz"), tmp_path / "out", segmenter)
    labels = np.asarray(nib.load(str(result.files["labels"])).dataobj)
    report = VolumeReport.from_dict(json.loads(result.files["json"].read_text()))
    voxel_ml = 1 * 1 * 5 / 1000
    assert report.total_ml == pytest.approx(np.isin(labels, VENTRICLE_IDS).sum() * voxel_ml, abs=1e-3)
    assert report.ventricles_ml["left_lateral"] == pytest.approx((labels == 4).sum() * voxel_ml, abs=1e-3)
    csv_rows = dict(line.split(",") for line in result.files["csv"].read_text().splitlines()[1:])
    assert float(csv_rows["total"]) == pytest.approx(report.total_ml, abs=1e-3)


@pytest.mark.parametrize("array,problem", [
    (np.random.rand(20, 20).astype(np.float32), "3-D"),
    (np.random.rand(20, 20, 20, 3).astype(np.float32), "3-D"),
    (np.zeros((20, 20, 20), np.float32), "empty"),
    (np.full((20, 20, 20), np.nan, np.float32), "NaN"),
    (np.random.rand(20, 20, 20).astype(np.float32), "field of view"),
], ids=["2d", "4d", "empty", "nan", "not-a-head"])
def test_bad_input_clear_error_no_output(array, problem, segmenter, tmp_path):
    src = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(src))
    out = tmp_path / "out"
    with pytest.raises(InputError, match=problem):
        segment_file(src, out, segmenter)
    assert not out.exists() or not any(out.iterdir())


def test_corrupted_checkpoint_is_refused(tiny_model, tmp_path):
    import shutil

    copy = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    ckpt = copy / MODEL_FILES[2]
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        VentricleSegmenter(copy, device="cpu")


def test_missing_synthseg_falls_back_with_message(tiny_model, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(tiny_model, tmp_path / f"ventsegment_{SYNTHSEG_RECIPE}")
    monkeypatch.setenv("VENTKIT_MODELS", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.delenv("VENTKIT_SYNTHSEG", raising=False)
    messages = []
    seg = load_segmenter("synthseg", device="cpu", notify=messages.append)
    assert model_folder(SYNTHSEG_RECIPE) == tmp_path / f"ventsegment_{SYNTHSEG_RECIPE}"
    assert "mri_synthseg not found" in messages[0]
    assert "SynthSeg-recipe baseline" in seg.description


@pytest.mark.parametrize("tool", ["synthseg", "samseg"])
def test_installed_reference_is_used_and_resampled(scan, fake_reference, tool):
    """A stand-in `mri_synthseg` / `run_samseg` writing a 1 mm map: its ventricles come back on the scan's grid."""
    fake_reference(tool, (200, 220, 200), {258: (40, 160, 40, 180, 40, 160), 2: (60, 140, 60, 160, 60, 140),
                                           4: (80, 99, 90, 130, 90, 110), 43: (101, 120, 90, 130, 90, 110)})
    seg = load_segmenter(tool, device="cpu")
    assert "installed" in seg.description
    out = seg.segment(scan)
    assert out.array.shape == scan.array.shape and np.allclose(out.affine, scan.affine)
    assert set(np.unique(out.array)) == {0, 4, 43}  # white matter (2) and SAMSEG's head label (258) dropped
    ml = np.isin(out.array, (4, 43)).sum() * scan.voxel_ml
    assert ml == pytest.approx(2 * 19 * 40 * 20 / 1000, rel=0.35)


def test_missing_samseg_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setenv("VENTKIT_HOME", str(tmp_path))
    monkeypatch.delenv("VENTKIT_SAMSEG", raising=False)
    with pytest.raises(VentkitError, match="ventkit install-samseg"):
        load_segmenter("samseg", device="cpu")


def test_failed_samseg_install_leaves_nothing(tmp_path, monkeypatch):
    from ventkit.segmentation.references import install_samseg, samseg_venv

    monkeypatch.setenv("VENTKIT_HOME", str(tmp_path))
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!{sys.executable}\nimport os, sys\nos.makedirs(sys.argv[-1])\nsys.exit('no network')\n")
    fake_python.chmod(0o755)
    with pytest.raises(VentkitError, match="installing SAMSEG failed.*no network"):
        install_samseg(python=str(fake_python))
    assert not samseg_venv().exists()


def test_failing_reference_reports_its_error(scan, tmp_path, monkeypatch):
    fake = tmp_path / "run_samseg"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('atlas registration failed')\n")
    fake.chmod(0o755)
    monkeypatch.setenv("VENTKIT_SAMSEG", str(fake))
    with pytest.raises(VentkitError, match="exit 1.*atlas registration failed"):
        load_segmenter("samseg", device="cpu").segment(scan)


def test_cli_segment(scan, tiny_model, tmp_path, capsys):
    src = write_volume(scan, tmp_path / "case.nii.gz")
    assert main(["segment", str(src), "--out", str(tmp_path / "o"), "--model-dir", str(tiny_model),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "total" in printed and "Evans index" in printed
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "case_ventricles.nii.gz", "case_volumes.csv", "case_volumes.json"]
    assert main(["segment", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "o2"),
                 "--model-dir", str(tiny_model)]) == 2


def test_model_folder_runs_in_stock_nnunet_layout(tiny_model):
    card = json.loads((tiny_model / "model_card.json").read_text())
    assert set(card["files"]) == set(MODEL_FILES)
    assert card["architecture"]["spacing_mm"] == [2.0, 2.0, 2.0]
    assert os.path.getsize(tiny_model / MODEL_FILES[2]) < 16e6


def test_start_from_loads_every_weight_of_the_same_network_else_all_but_the_outputs(tiny_model):
    import copy

    import torch
    from ventkit.segmentation.predictor import VentricleSegmenter
    from ventkit.training.segmenter import start_from

    trained = VentricleSegmenter(tiny_model, device="cpu").predictor.network
    checkpoint = tiny_model / MODEL_FILES[2]
    net = copy.deepcopy(trained)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    start_from(net, checkpoint)  # the same network: a fine-tune starts from every weight, outputs included
    for (name, a), b in zip(net.state_dict().items(), trained.state_dict().values()):
        torch.testing.assert_close(a, b.float(), msg=name)
    other = copy.deepcopy(trained)  # another class count: nnU-Net's transfer, output layers left as they are
    for stage in other.decoder.seg_layers:
        stage.weight = torch.nn.Parameter(torch.zeros(7, *stage.weight.shape[1:]))
        stage.bias = torch.nn.Parameter(torch.zeros(7))
    start_from(other, checkpoint)
    assert all(not s.weight.any() for s in other.decoder.seg_layers)
    torch.testing.assert_close(other.encoder.stages[0][0].convs[0].conv.weight,
                               trained.encoder.stages[0][0].convs[0].conv.weight.float())
    with pytest.raises(InputError, match="cannot start from"):
        start_from(net, tiny_model / "plans.json")


def test_resumed_run_keeps_its_settings(tmp_path):
    """A run resumes only with the schedule it started with; the weights it started from stay on record."""
    from ventkit.training.segmenter import train_segmenter

    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.json").write_text(json.dumps({"name": "X", "epochs": 5, "iterations": 1,
                                                   "init_from": "/elsewhere/checkpoint.pth"}))
    with pytest.raises(InputError, match="was started with"):
        train_segmenter([tmp_path / "data"], run, "X", epochs=6, iterations=1, device="cpu")


def test_shipped_models_offer_the_baselines_only_on_request(tmp_path, monkeypatch):
    from ventkit.segmentation.segment import shipped_models

    monkeypatch.setenv("VENTKIT_MODELS", str(tmp_path))
    assert shipped_models() == []
    for name in ("synthetic", "real", "augmented", "synthseg_recipe"):
        (tmp_path / f"ventsegment_{name}").mkdir()
        (tmp_path / f"ventsegment_{name}" / "model_card.json").write_text("{}")
    assert shipped_models() == ["augmented", "real", "synthetic", "synthseg_recipe"]
    assert shipped_models(baselines=False) == ["augmented", "real"]


def test_ce_class_weights_favour_small_ventricles_then_anneal_to_plain_ce():
    from ventkit.training.segmenter import CE_CLASS_WEIGHTS, ce_class_weights

    assert ce_class_weights(0, 20) == ce_class_weights(12, 20) == CE_CLASS_WEIGHTS
    assert min(CE_CLASS_WEIGHTS[2:]) > CE_CLASS_WEIGHTS[1] > 1
    middle = ce_class_weights(15, 20)
    assert all(1 < m < w for m, w in zip(middle[1:], CE_CLASS_WEIGHTS[1:]))
    assert ce_class_weights(18, 20) == ce_class_weights(19, 20) == (1.0,) * len(CE_CLASS_WEIGHTS)


def test_fine_tunes_weight_the_small_ventricles_mildly():
    """A fine-tune keeps some weight on the inferior lateral class (plain CE lost it), far below a new run's."""
    from ventkit.training.segmenter import CE_CLASS_WEIGHTS, FINE_TUNE_CE_WEIGHTS, ce_class_weights

    assert ce_class_weights(0, 20, FINE_TUNE_CE_WEIGHTS) == FINE_TUNE_CE_WEIGHTS
    assert FINE_TUNE_CE_WEIGHTS[:2] == (1.0, 1.0) and min(FINE_TUNE_CE_WEIGHTS[2:]) > 1
    assert all(f < w for f, w in zip(FINE_TUNE_CE_WEIGHTS[2:], CE_CLASS_WEIGHTS[2:]))
    assert ce_class_weights(19, 20, FINE_TUNE_CE_WEIGHTS) == (1.0,) * len(FINE_TUNE_CE_WEIGHTS)


def test_export_puts_this_models_metrics_in_its_card(tiny_model, tmp_path):
    evaluation = tmp_path / "metrics.json"
    evaluation.write_text(json.dumps({"tiny": {"holdout": {"n": 3, "mae_ml": 1.5}}, "other": {"holdout": {}}}))
    real_mri = tmp_path / "fsaverage.json"
    real_mri.write_text(json.dumps({"tiny": {"fsaverage": {"lateral_dice": 0.9}}}))
    out = tmp_path / "model"
    args = ["train", "export-segment", "--run", str(tiny_model.parent / "run"), "--out", str(out), "--name", "tiny"]
    assert main([*args, "--metrics", str(evaluation), str(real_mri)]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["metrics"] == {"holdout": {"n": 3, "mae_ml": 1.5}, "fsaverage": {"lateral_dice": 0.9}}
    assert main([*args[:-1], "absent", "--metrics", str(evaluation)]) == 2


def test_export_can_ship_the_mean_of_snapshots_of_one_run(tiny_model, tmp_path):
    import torch

    from ventkit.training.segmenter import averaged_weights

    final = next((tiny_model.parent / "run").rglob("checkpoint_final.pth"))
    ckpt = torch.load(final, map_location="cpu", weights_only=False)
    weights = ckpt["network_weights"]
    snapshot = tmp_path / "snapshot.pth"  # the same network, 0.5 added to every weight (aliases stay aliases)
    shifted = {}
    for k, v in weights.items():
        shifted[k] = next((shifted[j] for j, w in weights.items() if j in shifted and w.data_ptr() == v.data_ptr()),
                          v + 0.5 if v.is_floating_point() else v)
    torch.save({**ckpt, "network_weights": shifted, "current_epoch": 0}, snapshot)
    out = tmp_path / "model"
    args = ["train", "export-segment", "--run", str(tiny_model.parent / "run"), "--out", str(out), "--name", "avg"]
    assert main([*args, "--average", str(snapshot)]) == 0
    shipped = torch.load(out / MODEL_FILES[2], map_location="cpu", weights_only=False)["network_weights"]
    key = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
    assert torch.allclose(shipped[key].float(), weights[key] + 0.25, atol=2e-3)
    assert len({v.data_ptr() for v in shipped.values()}) == len({v.data_ptr() for v in weights.values()})
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["weights_averaged_over_epochs"] == [0, ckpt["current_epoch"]]
    torch.save({**ckpt, "network_weights": {k: v for k, v in weights.items() if k != key}}, snapshot)
    with pytest.raises(InputError, match="average checkpoints of one run"):
        averaged_weights([final, snapshot])
    snapshot.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read it as a checkpoint"):
        averaged_weights([final, snapshot])
    assert main([*args, "--average", str(tmp_path / "absent.pth")]) == 2


def test_export_can_ship_a_snapshot_of_the_run_and_refuses_another_runs(tiny_model, tmp_path, capsys):
    import torch

    final = next((tiny_model.parent / "run").rglob("checkpoint_final.pth"))
    ckpt = torch.load(final, map_location="cpu", weights_only=False)
    key = next(k for k, v in ckpt["network_weights"].items() if v.is_floating_point() and v.numel() > 1)
    snapshot = tmp_path / "snapshot.pth"
    torch.save({**ckpt, "current_epoch": 0,
                "network_weights": {**ckpt["network_weights"], key: ckpt["network_weights"][key] + 0.5}}, snapshot)
    out = tmp_path / "model"
    args = ["train", "export-segment", "--run", str(tiny_model.parent / "run"), "--out", str(out), "--name", "snap"]
    assert main([*args, "--checkpoint", str(snapshot)]) == 0
    shipped = torch.load(out / MODEL_FILES[2], map_location="cpu", weights_only=False)
    assert torch.allclose(shipped["network_weights"][key].float(), ckpt["network_weights"][key] + 0.5, atol=2e-3)
    assert json.loads((out / "model_card.json").read_text())["training"]["epochs"] == 0
    plans = ckpt["init_args"]["plans"]
    torch.save({**ckpt, "init_args": {**ckpt["init_args"], "plans": {**plans, "dataset_name": "Dataset999_Other"}}},
               snapshot)
    other = tmp_path / "other"
    capsys.readouterr()
    assert main([*args[:4], "--out", str(other), *args[6:], "--checkpoint", str(snapshot)]) == 2
    assert "is not a checkpoint of the run" in capsys.readouterr().err
    assert not other.exists()


def test_exported_checkpoint_has_its_card_beside_it(tiny_model):
    from ventkit.models import verified_model

    fold = (tiny_model / MODEL_FILES[2]).parent
    assert verified_model(fold)["files"] == {MODEL_FILES[2].split("/")[-1]: verified_model(tiny_model)["files"][MODEL_FILES[2]]}


def test_islands_are_removed_but_each_ventricle_keeps_its_horn():
    """Only the largest component of each ventricle stays (a lateral ventricle together with its
    temporal horn); islands go, unless the segmenter keeps them."""
    from ventkit.segmentation.predictor import keep_largest_components

    labels = np.zeros((30, 20, 20), np.int16)
    labels[2:10, 5:15, 5:15] = 4          # left lateral ventricle
    labels[10:12, 5:8, 5:8] = 5           # its temporal horn, touching it
    labels[20:24, 5:15, 5:15] = 43        # right lateral ventricle
    labels[14, 2, 2] = 4                  # islands: lateral, horn and 3rd ventricle labels
    labels[16, 18, 18] = 44
    labels[26:29, 8:12, 8:12] = 14
    labels[14, 16, 16] = 14
    kept = keep_largest_components(labels)
    assert kept[14, 2, 2] == kept[16, 18, 18] == kept[14, 16, 16] == 0
    for lab in (4, 5, 43, 14):
        assert (kept == lab).sum() == (labels == lab).sum() - {4: 1, 5: 0, 43: 0, 14: 1}[lab]
    assert (labels[14, 2, 2], labels[16, 18, 18]) == (4, 44)  # the input is left as it was


def test_segmenter_keeps_islands_only_when_asked(tiny_model):
    assert not VentricleSegmenter(tiny_model, device="cpu").keep_islands
    assert load_segmenter("tiny", "cpu", folder=tiny_model, keep_islands=True).keep_islands


def test_new_metrics_reach_both_cards_of_a_shipped_model(tiny_model, tmp_path):
    import shutil

    from ventkit.models import verified_model

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    evaluation = tmp_path / "metrics.json"
    evaluation.write_text(json.dumps({"tiny": {"holdout": {"n": 3, "mae_ml": 2.5}}}))
    assert main(["train", "segment-metrics", "--model", str(model), "--name", "tiny", "--metrics", str(evaluation),
                 "--note", "islands removed"]) == 0
    for folder in (model, model / "fold_all"):
        card = verified_model(folder)
        assert card["metrics"]["holdout"] == {"n": 3, "mae_ml": 2.5} and card["postprocessing"] == "islands removed"
    real = tmp_path / "real_mri.json"
    real.write_text(json.dumps({"tiny": {"real_mri": {"mae_ml": 2.0}}, "samseg": {"real_mri": {"mae_ml": 7.0}}}))
    assert main(["train", "segment-metrics", "--model", str(model), "--name", "tiny", "--metrics", str(real),
                 "--references", "samseg"]) == 0
    card = verified_model(model)
    assert card["metrics"]["real_mri"] == {"mae_ml": 2.0, "references": {"samseg": {"mae_ml": 7.0}}}
    assert card["metrics"]["holdout"]["n"] == 3  # the other figures stay
    assert main(["train", "segment-metrics", "--model", str(model), "--name", "tiny", "--metrics", str(real),
                 "--references", "synthseg"]) == 2  # no such reference in the file: nothing written
    (model / MODEL_FILES[2]).write_bytes(b"corrupt")
    assert main(["train", "segment-metrics", "--model", str(model), "--name", "tiny", "--metrics", str(evaluation)]) == 2


def test_uncertainty_reports_an_sd_per_volume(scan, segmenter, tmp_path):
    result = segment_file(write_volume(scan, tmp_path / "s.nii.gz"), tmp_path / "out", segmenter, uncertainty=True)
    report = VolumeReport.from_dict(json.loads(result.files["json"].read_text()))
    assert set(report.ventricles_sd_ml) == set(report.ventricles_ml)
    assert all(v >= 0 for v in report.ventricles_sd_ml.values())
    assert report.uncertainty["method"].startswith("test-time mirroring")
    assert not report.uncertainty["calibrated"]
    header = result.files["csv"].read_text().splitlines()[0]
    assert header == "structure,volume_ml,sd_ml"


def test_network_grid_affine_maps_the_cropped_resampled_grid():
    """A 1 mm RAS scan cropped to voxels x 10-49, y 20-79, z 5-44 (nnU-Net's z, y, x bbox) and resampled to
    2 mm: the first network voxel's centre lies half a voxel inside the crop, the grid steps 2 mm."""
    from ventkit.segmentation.predictor import network_grid_affine

    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-100, -120, -80)
    props = {"bbox_used_for_cropping": [[5, 45], [20, 80], [10, 50]],
             "shape_after_cropping_and_before_resampling": [40, 60, 40], "spacing": [1.0, 1.0, 1.0]}
    grid = network_grid_affine(affine, props, (20, 30, 20))
    assert np.allclose(np.diag(grid)[:3], 2.0)
    assert np.allclose(grid[:3, 3], affine[:3, 3] + (10.5, 20.5, 5.5))
    assert np.allclose(grid @ [19, 29, 19, 1], affine @ [48.5, 78.5, 43.5, 1])


def test_uncertainty_needs_two_passes_or_more(scan, segmenter):
    labels, passes = segmenter.segment_with_uncertainty(scan, passes=2)
    assert len(passes) == 2 and set(passes[0]) >= {"left_lateral", "total"}
    with pytest.raises(InputError, match="passes"):
        segmenter.segment_with_uncertainty(scan, passes=1)


def test_uncertainty_is_refused_for_a_reference(fake_reference, scan, tmp_path):
    fake_reference("samseg", (10, 10, 10), {4: (1, 3, 1, 3, 1, 3)})
    with pytest.raises(InputError, match="no uncertainty"):
        check_uncertainty(load_segmenter("samseg"))


def test_calibration_scales_the_sd_and_signs_the_card(tiny_model, tmp_path):
    import shutil

    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    fitted = calibrate_uncertainty(model, [tiny_model.parent / "Dataset001_Tiny"], max_cases=2, device="cpu")
    assert fitted["sd_scale"] >= 1.0 and fitted["passes"] == 8
    card = verified_model(model)  # re-signed: still passes the checksum check
    assert card["uncertainty"]["sd_scale"] == fitted["sd_scale"]
    seg = VentricleSegmenter(model, device="cpu")
    sd, method = uncertainty_of(seg, [{"total": 1.0}, {"total": 3.0}])
    assert method["calibrated"] and sd["total"] == pytest.approx(fitted["sd_scale"] * np.sqrt(2))


def test_uncertainty_runs_the_passes_it_was_calibrated_with(tiny_model, scan, tmp_path):
    import shutil

    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    fitted = calibrate_uncertainty(model, [tiny_model.parent / "Dataset001_Tiny"], max_cases=1, device="cpu",
                                   passes=2)
    assert fitted["passes"] == 2
    _, passes = VentricleSegmenter(model, device="cpu").segment_with_uncertainty(scan)
    assert len(passes) == 2


def test_training_picks_up_cases_added_to_a_growing_source(tmp_path):
    data = tmp_path / "Dataset002_Growing"
    build_corpus(data, 2, "natural", seed=0, grid="mask", quiet=True)
    (data / "dataset.json").unlink()  # as while a build is still running
    name = prepare([data], tmp_path / "run", "Growing")
    pre = use_run_folder(tmp_path / "run")["nnUNet_preprocessed"] / name / "nnUNetPlansVentkit_3d_fullres"
    assert len(list(pre.glob("*_seg.b2nd"))) == 2
    build_corpus(data, 3, "natural", seed=0, grid="mask", quiet=True)
    prepare([data], tmp_path / "run", "Growing")
    assert len(list(pre.glob("*_seg.b2nd"))) == len(list(pre.glob("*.pkl"))) == 3


def test_output_names_stay_apart_when_stems_collide():
    from ventkit.segmentation.segment import output_stems

    assert output_stems(["/d/sub-01/mri/orig.mgz", "/d/sub-02/mri/orig.mgz"]) == ["sub-01_mri_orig", "sub-02_mri_orig"]
    assert output_stems(["/d/a.nii.gz", "/d/b.nii.gz"]) == ["a", "b"]
    assert len(set(output_stems(["/d/a.nii.gz", "/d/a.nrrd"]))) == 2


def test_training_takes_up_rewritten_cases_and_the_ignore_label(tmp_path):
    """A source that gains nnU-Net's ignore label has every case preprocessed again (nnU-Net then samples
    patches from annotated voxels); a case rewritten later is preprocessed again alone."""
    import pickle

    import blosc2

    from ventkit.anatomy.nnunet import uncertain_boundary
    from ventkit.labels import NNUNET_IGNORE

    data = tmp_path / "Dataset003_Rewritten"
    build_corpus(data, 2, "natural", seed=0, grid="mask", quiet=True)
    name = prepare([data], tmp_path / "run", "Rewritten")
    pre = use_run_folder(tmp_path / "run")["nnUNet_preprocessed"] / name
    cases = pre / "nnUNetPlansVentkit_3d_fullres"

    def written() -> dict:
        return {p.name: p.stat().st_mtime_ns for p in cases.glob("*_seg.b2nd")}

    label = data / "labelsTr" / "train_0000.nii.gz"
    v = read_volume(label)
    write_volume(v.with_array(uncertain_boundary(v.array.astype(np.uint8), 1)), label, dtype=np.uint8)
    ds = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**ds, "labels": {**ds["labels"], "ignore": NNUNET_IGNORE}}))
    before = written()
    prepare([data], tmp_path / "run", "Rewritten")
    after = written()
    assert json.loads((pre / "dataset.json").read_text())["labels"]["ignore"] == NNUNET_IGNORE
    assert all(after[k] > before[k] for k in before) and len(after) == 2
    assert NNUNET_IGNORE in np.unique(blosc2.open(str(cases / "s0_train_0000_seg.b2nd"), mode="r")[:])
    untouched = pickle.loads((cases / "s0_train_0001.pkl").read_bytes())
    assert (-1, 0, 1, 2, 3, 4) in {tuple(int(c) for c in k) if isinstance(k, tuple) else k
                                   for k in untouched["class_locations"]}
    os.utime(label)
    prepare([data], tmp_path / "run", "Rewritten")
    again = written()
    assert [k for k in again if again[k] > after[k]] == ["s0_train_0000_seg.b2nd"]


def test_outside_scan_is_the_border_zero_fill_only():
    from ventkit.segmentation.predictor import outside_scan

    image = np.zeros((20, 20, 20), np.float32)
    image[4:16, 4:16, 4:16] = 1.0
    image[8:12, 8:12, 8:12] = 0.0  # a dark hole inside the head (CSF at zero after skull stripping)
    outside = outside_scan(image)
    assert outside[0, 0, 0] and outside[2, 10, 10] and not outside[5, 5, 5] and not outside[10, 10, 10]


def test_nothing_is_ventricle_in_the_zero_fill_of_a_resliced_scan(scan, segmenter):
    """A scan padded with zeros on every side (as reslicing or cropping leaves it) gets no label there."""
    from ventkit.segmentation.predictor import outside_scan

    padded = np.pad(scan.array, 24)
    affine = scan.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, 24.0)
    labels = segmenter.segment(Volume(padded, affine, "padded")).array
    assert not labels[outside_scan(padded)].any()


def test_a_run_goes_on_elsewhere_from_its_slim_checkpoint(tmp_path, monkeypatch):
    """`train slim-segment` carries a stopped run (fp16, no optimizer state, a checked card) to a new run
    folder, which goes on at its epoch and finishes the schedule; wrong settings or a corrupted file are refused."""
    import torch

    from ventkit.anatomy.corpus import build_corpus
    from ventkit.models import WeightsError
    from ventkit.training.segmenter import SLIM_CHECKPOINT, nnUNetTrainerVentkit, train_segmenter

    data = tmp_path / "Dataset001_Tiny"
    build_corpus(data, 3, "natural", seed=0, grid="mask", quiet=True)
    monkeypatch.setattr(nnUNetTrainerVentkit, "_out_of_time", lambda self, _: self.current_epoch >= 1)
    first = train_segmenter([data], tmp_path / "here", "Tiny", epochs=2, iterations=1, device="cpu")
    assert (first["finished"], first["epoch"]) == (False, 1)
    carried = tmp_path / "carried"
    assert main(["train", "slim-segment", "--run", str(tmp_path / "here"), "--out", str(carried)]) == 0
    card = json.loads((carried / "model_card.json").read_text())
    assert (card["epoch"], card["iterations"], card["run_settings"]["epochs"]) == (1, 1, 2)
    assert card["cases_per_source"] == {"Dataset001_Tiny": 3}
    slim = torch.load(carried / SLIM_CHECKPOINT, map_location="cpu", weights_only=False)
    assert "optimizer_state" not in slim
    assert all(v.dtype == torch.float16 for v in slim["network_weights"].values() if v.is_floating_point())

    with pytest.raises(InputError, match="was trained with"):
        train_segmenter([data], tmp_path / "there", "Tiny", epochs=3, iterations=1, device="cpu", resume_from=carried)
    paused = train_segmenter([data], tmp_path / "there", "Tiny", epochs=2, iterations=1, device="cpu",
                             resume_from=carried)
    assert (paused["finished"], paused["epoch"]) == (False, 1)
    resumed = torch.load(Path(paused["folder"]) / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    for k, v in slim["network_weights"].items():
        torch.testing.assert_close(resumed["network_weights"][k], v.float())
    monkeypatch.undo()
    done = train_segmenter([data], tmp_path / "there", "Tiny", epochs=2, iterations=1, device="cpu",
                           resume_from=carried)
    assert (done["finished"], done["epoch"]) == (True, 2)

    with open(carried / SLIM_CHECKPOINT, "r+b") as f:
        f.seek(2000)
        f.write(b"\0" * 64)
    with pytest.raises(WeightsError, match="checksum mismatch"):
        train_segmenter([data], tmp_path / "third", "Tiny", epochs=2, iterations=1, device="cpu", resume_from=carried)
