"""VentSegment's Logic against Slicer's real MRML (slicer-core), with the tiny nnU-Net of conftest.

The Logic runs `python -m ventkit segment` in child processes exactly as the GUI does; the tests check
that results land as named segments and a volumes table on the input's own geometry (RAS and LPS).
"""
import os
import unittest

import numpy as np
import pytest
import slicer
from slicer_harness import load_module

from ventkit.io import read_volume
from ventkit.labels import VENTRICLE_IDS

VentSegment = load_module("VentSegment")


@pytest.fixture
def scene():
    slicer.mrmlScene.Clear(0)
    return slicer.mrmlScene


@pytest.fixture(scope="module")
def scan(tiny_model):
    image = sorted((tiny_model.parent / "Dataset001_Tiny" / "imagesTr").glob("*.nii.gz"))[0]
    return read_volume(image)


@pytest.fixture
def logic(tiny_model):
    lg = VentSegment.VentSegmentLogic()
    lg.modelDir = str(tiny_model)
    return lg


def add_volume_node(volume, name, lps=False):
    """A scalar volume node; with `lps` the voxels are stored in reversed I and J order (same anatomy)."""
    array, affine = volume.array, volume.affine.copy()
    if lps:
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[0, 3], flip[1, 3] = array.shape[0] - 1, array.shape[1] - 1
        array, affine = array[::-1, ::-1], affine @ flip
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    VentSegment.nodeGeometryFromAffine(node, affine)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array.transpose(2, 1, 0)))
    return node


def table_column(table, title):
    t = table.GetTable()
    col = [t.GetColumn(c).GetName() for c in range(t.GetNumberOfColumns())].index(title)
    return {t.GetValue(r, 0).ToString(): t.GetValue(r, col).ToString() for r in range(t.GetNumberOfRows())}


@pytest.mark.parametrize("lps", [False, True], ids=["ras", "lps"])
def test_segment_gives_named_segments_and_table_on_input_geometry(scene, scan, logic, lps, tmp_path):
    node = add_volume_node(scan, "case", lps=lps)
    seg, table, warnings = logic.segmentAndLoad(node, reference="none", device="cpu")
    assert all("left and right are uncertain" in w for w in warnings)  # the tiny model's ventricles are noise
    names = {seg.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(seg.GetSegmentation().GetNumberOfSegments())}
    assert names and names <= {"Left lateral ventricle", "Right lateral ventricle", "Left inferior lateral ventricle",
                               "Right inferior lateral ventricle", "3rd ventricle", "4th ventricle"}
    out = logic.exportSegmentation(seg, node, str(tmp_path / "seg.nii.gz"))
    labels = read_volume(out, labels=True)
    ref = VentSegment.volumeFromNode(node)
    assert labels.array.shape == ref.array.shape and np.allclose(labels.affine, ref.affine, atol=1e-5)
    total = float(table_column(table, "VentSegment (mL)")["Total"])
    assert total == pytest.approx(np.isin(labels.array, VENTRICLE_IDS).sum() * ref.voxel_ml, abs=0.01)
    left = float(table_column(table, "VentSegment (mL)")["Left lateral"])
    assert left == pytest.approx((labels.array == 4).sum() * ref.voxel_ml, abs=0.01)


def test_an_edited_segmentation_is_remeasured(scene, scan, logic):
    node = add_volume_node(scan, "case")
    seg, table, _ = logic.segmentAndLoad(node, reference="none", device="cpu")
    before = float(table_column(table, "VentSegment (mL)")["Total"])
    segmentation = seg.GetSegmentation()
    first = segmentation.GetNthSegmentID(0)
    drawn = logic.segmentationLabels(seg, node)
    erased = (drawn.array == segmentation.GetSegment(first).GetLabelValue()).sum() * drawn.voxel_ml
    assert erased > 0
    segmentation.RemoveSegment(first)  # an edit: one structure erased
    report = logic.remeasure(seg, node, table)
    after = float(table_column(table, "VentSegment (mL)")["Total"])
    assert after == pytest.approx(before - erased, rel=1e-4) and report.total_ml == pytest.approx(after, rel=1e-4)


def test_ras_and_lps_nodes_give_the_same_anatomy(scene, scan, logic, tmp_path):
    results = []
    for lps in (False, True):
        node = add_volume_node(scan, f"case{lps}", lps=lps)
        seg, _, _ = logic.segmentAndLoad(node, reference="none", device="cpu")
        results.append(read_volume(logic.exportSegmentation(seg, node, str(tmp_path / f"{lps}.nii.gz")), labels=True))
    assert np.array_equal(results[0].array, results[1].array[::-1, ::-1])


def test_reference_column_and_disagreement_warning(scene, scan, logic, tmp_path, fake_reference):
    fake = fake_reference("synthseg", (40, 40, 40), {4: (5, 15, 5, 15, 5, 15)}, own_grid=True)
    node = add_volume_node(scan, "case")
    seg, table, warnings = logic.segmentAndLoad(node, reference="synthseg", device="cpu", thresholdPercent=10)
    ref_col = [c for c in (table.GetTable().GetColumn(i).GetName() for i in range(5)) if "SynthSeg" in c]
    assert ref_col == ["SynthSeg (installed: " + str(fake) + ") (mL)"]
    ours = float(table_column(table, "VentSegment (mL)")["Total"])
    theirs = float(table_column(table, ref_col[0])["Total"])
    assert theirs == pytest.approx(1000 * node.GetSpacing()[0] * node.GetSpacing()[1] * node.GetSpacing()[2] / 1000,
                                   rel=0.01)
    assert (abs(ours - theirs) > max(1.0, 0.1 * theirs)) == any("Total" in w for w in warnings)
    csv_path = logic.exportTable(table, str(tmp_path / "volumes.csv"))
    assert open(csv_path).read().splitlines()[0].startswith("Structure,VentSegment (mL)")


def test_cancel_leaves_no_files_and_no_nodes(scene, scan, logic):
    node = add_volume_node(scan, "case")
    before = scene.GetNumberOfNodes()
    job = logic.startSegmentation(node, reference="none", device="cpu")
    work = job.work_dir
    job.cancel()
    assert not job.running() and not job.succeeded()
    with pytest.raises(RuntimeError, match="failed"):  # what the panel would load, had it not been cancelled
        logic.loadResults(job)
    assert scene.GetNumberOfNodes() == before
    job.cleanup()
    assert not os.path.exists(work)


def test_failure_reports_ventkit_message(scene, scan, logic, tmp_path):
    logic.modelDir = str(tmp_path / "no_model")
    node = add_volume_node(scan, "case")
    job = logic.startSegmentation(node, reference="none", device="cpu")
    job.wait()
    with pytest.raises(RuntimeError, match="no_model: no such folder"):
        logic.loadResults(job)
    job.cleanup()


def test_batch_csv(scan, logic, tmp_path):
    from ventkit.io import write_volume

    folder = tmp_path / "scans"
    for i in range(2):
        write_volume(scan, folder / f"s{i}.nii.gz")
    (folder / "s2.nii.gz").write_bytes(b"not a scan")  # one bad scan: its reason in the CSV, the others go on
    job = logic.startBatch(str(folder), str(tmp_path / "v.csv"), device="cpu")
    assert job.expected == 3 and logic.batchDone(job) == 0
    job.wait()
    assert job.succeeded() and logic.batchDone(job) == 2
    job.cleanup()
    rows = (tmp_path / "v.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[1].startswith("s0.nii.gz,") and "cannot read" in rows[3]


def test_module_self_test_runs_under_slicer_core(scene):
    result = unittest.TextTestRunner(verbosity=0).run(VentSegment.VentSegmentTest("runTest"))
    assert result.wasSuccessful(), result.failures + result.errors


def test_model_choice_lists_the_shipped_models_only(tmp_path, monkeypatch):
    monkeypatch.setenv("VENTKIT_MODELS", str(tmp_path))
    for name in ("real", "augmented", "synthetic"):
        (tmp_path / f"ventsegment_{name}").mkdir()
        (tmp_path / f"ventsegment_{name}" / "model_card.json").write_text("{}")
    assert VentSegment.VentSegmentLogic.availableModels() == ["augmented", "real"]  # the baseline on request only
    assert VentSegment.VentSegmentLogic.availableModels(baselines=True) == ["augmented", "real", "synthetic"]


def test_reference_is_its_own_segmentation_and_defaults_to_none_without_references(scene, scan, logic,
                                                                                    fake_reference, monkeypatch):
    from ventkit.segmentation import references

    monkeypatch.setattr(references, "find_synthseg", lambda: None)
    monkeypatch.setattr(references, "find_samseg", lambda: None)
    assert logic.availableReferences() == ["none", "synthseg_recipe"]
    assert logic.defaultReference() == "none"
    monkeypatch.undo()
    fake_reference("synthseg", (40, 40, 40), {4: (5, 15, 5, 15, 5, 15)}, own_grid=True)
    assert logic.defaultReference() == "synthseg"
    node = add_volume_node(scan, "case")
    job = logic.startSegmentation(node, reference="synthseg", device="cpu")
    job.wait()
    seg, table, _ = logic.loadResults(job)
    job.cleanup()
    ref = job.referenceSegmentation
    assert ref is not None and ref is not seg and "SynthSeg" in ref.GetName()
    assert ref.GetSegmentation().GetNthSegment(0).GetName() == "Left lateral ventricle"
    assert table.GetTable().GetColumn(1).GetClassName() == "vtkDoubleArray"
    assert "Evans index" in table.GetAttribute("VentSegment.Notes")


def test_compare_two_visits(scene, scan, logic):
    """The same scan as both visits (the second stored LPS): a table of changes near zero and both visits'
    segmentations in the scene."""
    first, second = add_volume_node(scan, "visit1"), add_volume_node(scan, "visit2", lps=True)
    with pytest.raises(ValueError, match="two different scans"):
        logic.startChange(first, first)
    job = logic.startChange(first, second, device="cpu")
    job.wait()
    table, warnings = logic.loadChange(job)
    job.cleanup()
    t = table.GetTable()
    assert t.GetColumn(5).GetName() == "Change (mL)" and t.GetValue(t.GetNumberOfRows() - 1, 0).ToString() == "Total"
    assert abs(t.GetValue(t.GetNumberOfRows() - 1, 5).ToDouble()) < 1e-6
    segs = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    assert {segs.GetItemAsObject(i).GetName() for i in range(segs.GetNumberOfItems())} == {"visit1 ventricles",
                                                                                         "visit2 ventricles"}
