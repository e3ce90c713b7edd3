"""VentSynth's Logic against Slicer's real MRML (slicer-core), running `ventkit` in child processes as the GUI does."""
import json
import os
import unittest

import numpy as np
import pytest
import slicer
import vtk
from slicer_harness import load_module

from ventkit.io import read_volume
from ventkit.labels import LABEL_BY_ID
from ventkit.paths import models_dir

VentSynth = load_module("VentSynth")


@pytest.fixture
def scene():
    slicer.mrmlScene.Clear(0)
    return slicer.mrmlScene


@pytest.fixture
def logic(subjects, tmp_path, monkeypatch):
    """The anatomy backend (no generator in an empty models folder): exact volumes, quick."""
    monkeypatch.setenv("VENTKIT_MODELS", str(tmp_path / "no_models"))
    lg = VentSynth.VentSynthLogic()
    lg.grid = "mask"  # the coarse grid keeps the tests quick
    return lg


def node_affine(node):
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])


def test_generated_pair_arrives_as_volume_and_named_segments(scene, logic):
    (volume, seg, info), = logic.synthesizeAndLoad(90.0, seed=2)
    assert volume.GetName() == "VentSynth 90 mL seed 2 #0 T1" and seg.GetName() == "VentSynth 90 mL seed 2 #0 labels"
    assert info["backend"] == "anatomy" and abs(info["ventricles_ml"]["total"] - 90.0) <= 0.03 * 90.0
    image = slicer.util.arrayFromVolume(volume)
    assert image.shape == (48, 64, 48)[::-1] and image.std() > 0
    assert np.allclose(np.sqrt((node_affine(volume)[:3, :3] ** 2).sum(0)), (10 / 3, 3.0625, 10 / 3))
    s = seg.GetSegmentation()
    segments = {s.GetNthSegment(i).GetLabelValue(): s.GetNthSegment(i) for i in range(s.GetNumberOfSegments())}
    assert len(segments) >= 30 and set(segments) <= set(LABEL_BY_ID)
    assert segments[4].GetName() == "Left lateral ventricle"
    assert np.allclose(segments[43].GetColor(), [c / 255 for c in LABEL_BY_ID[43].rgb])
    # the segmentation's ventricles, voxel by voxel, are the ventricles the info reports
    voxel_ml = float(np.prod(np.sqrt((node_affine(volume)[:3, :3] ** 2).sum(0)))) / 1000
    lateral = slicer.util.arrayFromSegmentBinaryLabelmap(seg, s.GetSegmentIdBySegmentName("Left lateral ventricle"),
                                                         volume)
    assert lateral.sum() * voxel_ml == pytest.approx(info["ventricles_ml"]["left_lateral"], rel=1e-3)


@pytest.mark.skipif(not (models_dir() / "mask_generator" / "model_card.json").is_file(),
                    reason="the mask generator is not shipped")
def test_shipped_mask_generator_draws_the_pair(scene, subjects):
    lg = VentSynth.VentSynthLogic()
    assert lg.backendIsDiffusion() and lg.volumeRangeMl()[1] >= 250
    (volume, seg, info), = lg.synthesizeAndLoad(120.0, seed=1, steps=10)
    assert info["backend"] == "diffusion" and info["requested_ml"] == 120.0
    image_shipped = (models_dir() / "image_generator" / "model_card.json").is_file()
    assert info["image"] == ("spade-ldm" if image_shipped else "rendered")
    assert abs(info["ventricles_ml"]["total"] - 120.0) <= 0.5 * 120.0  # 10 DDIM steps: roughly
    assert slicer.util.arrayFromVolume(volume).shape == (48, 64, 48)[::-1]  # the mask generator's grid
    assert slicer.util.arrayFromVolume(volume).std() > 0
    s = seg.GetSegmentation()
    voxel_ml = float(np.prod(np.sqrt((node_affine(volume)[:3, :3] ** 2).sum(0)))) / 1000
    lateral = slicer.util.arrayFromSegmentBinaryLabelmap(seg, s.GetSegmentIdBySegmentName("Right lateral ventricle"),
                                                         volume)
    assert lateral.sum() * voxel_ml == pytest.approx(info["ventricles_ml"]["right_lateral"], rel=1e-3)


def test_several_pairs_and_progress(scene, logic):
    job = logic.startSynthesis(40.0, seed=1, count=2)
    job.wait()
    assert logic.progress(job) == 1.0
    pairs = logic.loadPairs(job)
    job.cleanup()
    assert [p[2]["index"] for p in pairs] == [0, 1]
    assert not np.array_equal(slicer.util.arrayFromVolume(pairs[0][0]), slicer.util.arrayFromVolume(pairs[1][0]))


def test_cancel_leaves_no_files_and_no_nodes(scene, logic):
    before = scene.GetNumberOfNodes()
    job = logic.startSynthesis(150.0, seed=0, count=3)
    work = job.work_dir
    job.cleanup()
    assert not os.path.exists(work) and scene.GetNumberOfNodes() == before


def test_failure_reports_ventkit_message(scene, logic, tmp_path):
    job = logic.startSynthesis(150.0, labelMaps=str(tmp_path / "missing"))
    job.wait()
    with pytest.raises(RuntimeError, match="label-map folder not found"):
        logic.loadPairs(job)
    job.cleanup()


def test_export_writes_dataset_and_histogram(scene, logic, tmp_path):
    out = tmp_path / "Dataset300_VentSynth"
    job = logic.startExport(str(out), 2, "30,200", seed=3)
    job.wait()
    chart = logic.loadExport(job)
    job.cleanup()
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["numTraining"] == 2 and chart.GetAttribute("VentSynth.cases") == "2"
    table = chart.GetNthPlotSeriesNode(0).GetTableNode().GetTable()
    assert sum(table.GetValue(r, 1).ToDouble() for r in range(table.GetNumberOfRows())) == 2
    for meta in (out / "meta").glob("*.json"):
        info = json.loads(meta.read_text())
        labels = read_volume(out / "labelsFullTr" / f"{info['case_id']}.nii.gz", labels=True)
        assert labels.array.shape == (48, 64, 48)
        assert min(abs(info["measured_ml"] - v) for v in (30, 200)) <= 0.03 * 200


def test_export_refuses_bad_volume_spec(logic, tmp_path):
    from ventkit.errors import InputError

    with pytest.raises(InputError, match="volumes"):
        logic.startExport(str(tmp_path / "x"), 2, "uniform:1:900")
    assert not (tmp_path / "x").exists()


def test_module_self_test_runs_under_slicer_core(scene):
    result = unittest.TextTestRunner(verbosity=0).run(VentSynth.VentSynthTest("runTest"))
    assert result.wasSuccessful(), result.failures + result.errors
