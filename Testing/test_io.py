import os

import nibabel as nib
import numpy as np
import pytest

from ventkit.errors import InputError
from ventkit.io import Volume, atomic_path, read_volume, reorient_to_ras, validate, write_volume


def _save(path, array, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def test_zero_spacing_is_rejected():
    """nibabel resets a zero pixdim to 1 on reading, so arrays given through the API are checked too."""
    with pytest.raises(InputError, match="singular"):
        validate(Volume(np.arange(125.0).reshape(5, 5, 5), np.diag([0.0, 1, 1, 1]), "api-volume"))


@pytest.mark.parametrize("array, affine, labels, message", [
    (np.ones((5, 5), np.float32), np.eye(4), False, "expected a 3-D volume, got 2-D"),
    (np.ones((5, 5, 5, 2), np.float32), np.eye(4), False, "expected a 3-D volume, got 4-D"),
    (np.zeros((5, 5, 5), np.float32), np.eye(4), False, "image is empty"),
    (np.zeros((5, 5, 5), np.int16), np.eye(4), True, "label map is empty"),
    (np.full((5, 5, 5), np.nan, np.float32), np.eye(4), False, "NaN"),
    (np.ones((5, 5, 5), np.float32) * np.arange(5), np.diag([1, 1, 50.0, 1]), False, "absurd voxel spacing"),
    (np.ones((5, 5, 5), np.float32) * np.arange(5), np.diag([1, 1, 0.001, 1]), False, "absurd voxel spacing"),
    (np.full((5, 5, 5), 999, np.int16), np.eye(4), True, "unknown label values"),
    (np.full((5, 5, 5), 2.5, np.float32), np.eye(4), True, "non-integer"),
])
def test_bad_inputs_raise_named_errors(tmp_path, array, affine, labels, message):
    path = _save(tmp_path / "bad.nii.gz", array, affine)
    with pytest.raises(InputError, match=message) as err:
        read_volume(path, labels=labels)
    assert str(path) in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"not a nifti file at all")
    with pytest.raises(InputError, match="cannot read file"):
        read_volume(corrupt)
    with pytest.raises(InputError, match="file not found"):
        read_volume(tmp_path / "missing.nii.gz")
    other = tmp_path / "scan.txt"
    other.write_text("x")
    with pytest.raises(InputError, match="unsupported file type"):
        read_volume(other)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("cancelled")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_roundtrip_keeps_ras_affine(tmp_path, suffix):
    rot = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float) * [1.0, 0.8, 2.5]
    aff = np.eye(4)
    aff[:3, :3], aff[:3, 3] = rot, [10, -20, 30]
    vol = Volume(np.random.default_rng(0).random((6, 7, 8)).astype(np.float32), aff)
    back = read_volume(write_volume(vol, tmp_path / f"img{suffix}"))
    np.testing.assert_allclose(back.affine, aff, atol=1e-5)
    np.testing.assert_allclose(back.array, vol.array, atol=1e-6)


def test_reorient_to_ras_keeps_world_positions(subject01):
    lia = Volume(subject01.array[::-1].transpose(0, 2, 1), subject01.affine)  # any permutation/flip will do
    lia = Volume(lia.array, subject01.affine @ np.array([[-1, 0, 0, 255], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]]))
    ras = reorient_to_ras(lia)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    ijk = np.array([40, 90, 120, 1])
    world = ras.affine @ ijk
    src = np.round(np.linalg.inv(lia.affine) @ world).astype(int)
    assert ras.array[tuple(ijk[:3])] == lia.array[tuple(src[:3])]


def test_freesurfer_mgz_is_read_with_its_affine(tmp_path):
    aff = np.array([[-1.0, 0, 0, 128], [0, 0, 1, -128], [0, -1, 0, 128], [0, 0, 0, 1]])  # FreeSurfer's LIA
    arr = np.random.default_rng(1).integers(0, 255, (6, 7, 8)).astype(np.uint8)
    nib.save(nib.MGHImage(arr, aff), str(tmp_path / "orig.mgz"))
    vol = read_volume(tmp_path / "orig.mgz")
    np.testing.assert_allclose(vol.affine, aff)
    assert np.array_equal(vol.array, arr)


def test_written_files_follow_the_umask(tmp_path):
    import os
    import stat

    from ventkit.io import UMASK, write_text

    path = write_text(tmp_path / "x.json", "{}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~UMASK
