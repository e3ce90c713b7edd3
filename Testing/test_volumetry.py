import json
import subprocess
import sys

import nibabel as nib
import numpy as np

from ventkit.io import Volume, read_volume
from ventkit.labels import VENTRICLE_IDS
from ventkit.volumetry import asymmetry_percent, evans_index, label_volumes_ml, volume_report


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
        assert abs(report["ventricles_total_ml"] - expected) < 1e-9
        assert 5 < expected < 100
        assert abs(report["structures_ml"]["left lateral ventricle"] - (seg == 4).sum() * voxel_ml) < 1e-9


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
    assert len(csv) == 2 and "ventricles_total_ml" in csv[0]


def test_cli_reports_bad_input_clearly(tmp_path):
    bad = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4), np.int16), np.eye(4)), str(bad))
    out = subprocess.run([sys.executable, "-m", "ventkit", "volumes", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert f"{bad}: expected a 3-D volume" in out.stderr and "Traceback" not in out.stderr
