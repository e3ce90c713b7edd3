import json
import subprocess
import sys

import nibabel as nib
import numpy as np

from ventkit.io import Volume, read_volume
from ventkit.labels import VENTRICLE_IDS
import pytest

from ventkit.volumetry import (REPORT_ROWS, VolumeReport, asymmetry_percent, evans_index, label_volumes_ml, row_fields,
                               volume_report)


def test_volumes_are_voxel_counts_times_voxel_volume_on_shared_maps(subjects):
    for name in ("training_seg_01", "training_seg_13"):
        vol = read_volume(subjects[name], labels=True)
        report = volume_report(vol)
        seg = np.asarray(vol.array)
        from ventkit.labels import to_segmentation
        seg = to_segmentation(seg)
        voxel_ml = abs(np.linalg.det(vol.affine[:3, :3])) / 1000
        assert voxel_ml == 0.001
        expected = np.isin(seg, VENTRICLE_IDS).sum() * voxel_ml
        assert abs(report.total_ml - expected) < 1e-9
        assert 5 < expected < 100
        assert abs(report.structures_ml["left lateral ventricle"] - (seg == 4).sum() * voxel_ml) < 1e-9


def test_volume_uses_voxel_size_from_affine(tiny_labels):
    vols = label_volumes_ml(tiny_labels)
    assert np.isclose(vols[4], 4 * 10 * 8 * (2 * 1.5 * 3) / 1000)
    oblique = Volume(tiny_labels.array, np.array([[0, 0, 3.0, 0], [0, 1.5, 0, 0], [-2.0, 0, 0, 0], [0, 0, 0, 1]]))
    assert np.isclose(label_volumes_ml(oblique)[4], vols[4])


def test_asymmetry():
    assert asymmetry_percent(12, 8) == 40.0
    assert asymmetry_percent(0, 0) == 0.0


def test_evans_index_on_a_phantom():
    """A box skull 140 mm wide with frontal horns whose outer walls are 42 mm apart: EI = 0.3."""
    a = np.zeros((160, 100, 40), np.int16)
    a[10:150, 5:95, :] = 2  # intracranial width 140 voxels of 1 mm
    a[40:50, 40:60, 10:30] = 10  # left thalamus, anterior end at y=59
    a[110:120, 40:60, 10:30] = 49
    a[59:79, 62:80, 20] = 4  # left frontal horn, outer (left) wall at x=59
    a[81:101, 62:80, 20] = 43  # right frontal horn, outer wall at x=100
    ev = evans_index(Volume(a, np.eye(4)))
    assert ev["frontal_horn_width_mm"] == 42.0 and ev["inner_cranial_width_mm"] == 140.0
    assert np.isclose(ev["evans_index"], 0.3) and ev["slice_ras"] == 20
    flipped = Volume(a[::-1], np.diag([-1.0, 1, 1, 1]) @ np.array([[1, 0, 0, -159], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    assert np.isclose(evans_index(flipped)["evans_index"], 0.3)  # same anatomy stored L-R flipped


def test_cli_volumes_json_and_csv(subjects, tmp_path):
    out = subprocess.run([sys.executable, "-m", "ventkit", "volumes", str(subjects["training_seg_01"]), "--json"],
                         capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert len(report["structures_ml"]) == 32 and report["ventricles_total_ml"] > 0
    csv = subprocess.run([sys.executable, "-m", "ventkit", "volumes", str(subjects["training_seg_01"]), "--csv"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(csv) == 2 and "total_ml" in csv[0].split(",") and "left lateral ventricle_ml" in csv[0]


def test_cli_reports_bad_input_clearly(tmp_path):
    bad = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4), np.int16), np.eye(4)), str(bad))
    out = subprocess.run([sys.executable, "-m", "ventkit", "volumes", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert f"{bad}: expected a 3-D volume" in out.stderr and "Traceback" not in out.stderr


def _report(total: float, model: str = "ours", sd: float | None = None) -> VolumeReport:
    volumes = {**dict.fromkeys(REPORT_ROWS, total / 4), "total": total}
    return VolumeReport("scan.nii.gz", [1.0, 1.0, 1.0], volumes, 5.0, 4.0, model=model,
                        ventricles_sd_ml=None if sd is None else dict.fromkeys(volumes, sd))


def test_report_survives_its_json_and_renders_the_same_numbers_everywhere():
    report = _report(40.0, sd=1.5)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ventricles_total_ml"] == 40.0 and "structures_ml" not in data
    again = VolumeReport.from_dict(data)
    assert again == report
    assert "40.00 ±  1.50 mL" in report.text().splitlines()[-3]
    assert "total,40.000,1.500" in report.csv()
    row = report.row()
    assert list(row) == row_fields(uncertainty=True) and row["total_sd_ml"] == "1.500"
    assert list(report.row(uncertainty=False)) == row_fields()


def test_report_checks_its_volumes():
    with pytest.raises(ValueError, match="lacks left_lateral.*total"):
        VolumeReport("scan", [1.0] * 3, {"third": 1.0}, 0.0, 0.0)
    with pytest.raises(ValueError, match="keys"):
        VolumeReport("scan", [1.0] * 3, dict.fromkeys(REPORT_ROWS, 1.0), 0.0, 0.0, ventricles_sd_ml={"total": 1.0})


def test_comparison_with_a_reference_flags_what_differs_beyond_the_threshold():
    ours, reference = _report(40.0), _report(40.0, model="SynthSeg")
    rows, warnings = ours.compare(reference)
    assert not warnings and rows[-1]["difference_ml"] == 0
    reference.ventricles_ml["total"] = 50.0  # 20 % apart
    rows, warnings = ours.compare(reference, threshold_percent=10.0)
    assert len(warnings) == 1 and "Total: ours 40.0 mL vs SynthSeg 50.0 mL" in warnings[0]
    total = next(r for r in rows if r["structure"] == "Total")
    assert total["difference_ml"] == -10.0 and total["difference_percent"] == pytest.approx(-20.0)
    assert not ours.compare(reference, threshold_percent=30.0)[1]
    reference.ventricles_ml["total"] = 40.5  # within the 1 mL floor however small the threshold
    assert not ours.compare(reference, threshold_percent=0.1)[1]
    rows, warnings = ours.compare(None)
    assert not warnings and all(r["theirs"] is None for r in rows)
