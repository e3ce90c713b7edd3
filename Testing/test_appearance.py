"""Real T1 appearance: labelling real scans once, then warping each T1 with its labels in the corpus."""
import json
from pathlib import Path

import numpy as np
import pytest

from ventkit.anatomy.appearance import label_real_t1s, subject_image
from ventkit.anatomy.corpus import build_corpus
from ventkit.errors import InputError
from ventkit.io import Volume, read_volume, write_volume
from ventkit.labels import to_segmentation


class FakeSamseg:
    """Stands in for SAMSEG: returns a fixed aseg-style map with SAMSEG's non-brain labels in it."""

    description = "fake SAMSEG"

    def __init__(self, labels: np.ndarray):
        self.labels = labels

    def whole_brain(self, volume: Volume) -> Volume:
        out = self.labels.copy()
        out[:3] = 165  # skull: not one of ours
        return volume.with_array(out)


def _fake_t1(labels: Volume) -> Volume:
    """A 'real' T1 whose intensity says which tissue a voxel is: ventricles dark, white matter bright."""
    seg = to_segmentation(labels.array)
    image = np.where(seg > 0, 0.5, 0.0) + np.where(np.isin(seg, (2, 41)), 0.4, 0.0)
    image[np.isin(seg, (4, 43, 5, 44, 14, 15))] = 0.1
    return labels.with_array(image.astype(np.float32))


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory, subject01):
    root = tmp_path_factory.mktemp("real")
    t1 = write_volume(_fake_t1(subject01), root / "scans" / "colin27.nii.gz")
    label_real_t1s({"colin27": t1}, root / "subjects", FakeSamseg(subject01.array))
    return root / "subjects"


def test_labelled_subject_folder(real_folder, subject01):
    labels = read_volume(real_folder / "colin27.nii.gz", labels=True)
    image = read_volume(subject_image(real_folder / "colin27.nii.gz"))
    np.testing.assert_allclose(labels.affine, image.affine)
    assert 165 not in np.unique(labels.array)  # unknown labels became background
    np.testing.assert_array_equal(labels.array[3:], to_segmentation(subject01.array)[3:])


def test_non_brain_scan_is_refused_and_nothing_written(tmp_path, subject01):
    t1 = write_volume(_fake_t1(subject01), tmp_path / "phantom.nii.gz")
    with pytest.raises(InputError, match="no lateral ventricles"):
        label_real_t1s({"phantom": t1}, tmp_path / "out", FakeSamseg(np.zeros_like(subject01.array)))
    assert not list(tmp_path.glob("out/**/*.nii.gz"))


def test_real_contrast_warps_the_t1_with_its_labels(real_folder, tmp_path):
    out = tmp_path / "Dataset991_Real"
    build_corpus(out, n=2, volumes="150", seed=3, grid="mask", contrast="real", label_dir=real_folder, quiet=True)
    for meta in sorted((out / "meta").glob("*.json")):
        info = json.loads(meta.read_text())
        assert info["contrast"] == "real" and info["thickness_mm"] == 1.0 and abs(info["measured_ml"] - 150) <= 3
        seg = read_volume(out / "labelsFullTr" / f"{info['case_id']}.nii.gz", labels=True).array
        img = read_volume(out / "imagesTr" / f"{info['case_id']}_0000.nii.gz").array
        # the enlarged ventricles are dark in the image: the T1 moved with its labels (a render would
        # follow the labels too, but this image was never rendered: its only source is the fake T1)
        ventricles, white = img[np.isin(seg, (4, 43))].mean(), img[np.isin(seg, (2, 41))].mean()
        assert ventricles < 0.4 * white, (ventricles, white)


def test_real_contrast_needs_the_t1s(tmp_path, subject01):
    folder = tmp_path / "labels_only"
    write_volume(subject01, folder / "colin27.nii.gz")
    with pytest.raises(InputError, match="no real T1"):
        build_corpus(tmp_path / "Dataset992_X", n=1, volumes="40", grid="mask", contrast="real", label_dir=folder,
                     quiet=True)
    assert not (tmp_path / "Dataset992_X" / "imagesTr").exists()


def test_label_real_command_runs_samseg_and_keeps_only_our_labels(tmp_path, tiny_labels, fake_reference):
    from ventkit.cli import main

    t1 = write_volume(tiny_labels.with_array(tiny_labels.array.astype(np.float32)), tmp_path / "scan.nii.gz")
    # SAMSEG's map holds its head label 258 around the brain; our map keeps the ventricles, not the head
    fake_reference("samseg", (20, 20, 20), {258: (0, 20, 0, 20, 0, 20), 2: (2, 18, 2, 18, 2, 18),
                                            4: (5, 9, 5, 15, 6, 14), 43: (11, 15, 5, 15, 6, 14)}, own_grid=True)
    assert main(["corpus", "label-real", str(t1), "--out", str(tmp_path / "subjects")]) == 0
    labels = read_volume(tmp_path / "subjects" / "scan.nii.gz", labels=True)
    assert set(np.unique(labels.array)) == {0, 2, 4, 43} and labels.array.shape == (20, 20, 20)
    assert subject_image(tmp_path / "subjects" / "scan.nii.gz").is_file()
    fake_reference("samseg", (20, 20, 20), {258: (0, 20, 0, 20, 0, 20)}, own_grid=True)  # no brain found
    assert main(["corpus", "label-real", str(t1), "--out", str(tmp_path / "none")]) == 2
    assert not list(tmp_path.glob("none/**/*.nii.gz"))


def test_label_real_without_t1s_wants_every_known_one(tmp_path, monkeypatch, capsys):
    """Without arguments it labels the known real T1s, all of them: a missing one is named with its install."""
    from ventkit.anatomy import appearance
    from ventkit.cli import main

    monkeypatch.setattr(appearance, "known_real_t1s", lambda: {"colin27": Path("/ch2.nii.gz")})
    assert main(["corpus", "label-real", "--out", str(tmp_path / "real")]) == 2
    assert "mni152_2009a: pip install" in capsys.readouterr().err
    assert not (tmp_path / "real").exists()
