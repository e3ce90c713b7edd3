"""Read and validate NIfTI/NRRD volumes, reorient them, and write files atomically.

Every reader returns a `Volume`: a 3-D array with its voxel-to-RAS affine (mm). NRRD files, which
store LPS directions, are converted to RAS here and back to LPS on writing.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import InputError, VentkitWarning
from .labels import unknown_labels

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
MGH_SUFFIXES = (".mgz", ".mgh")  # FreeSurfer, read only
SPACING_RANGE_MM = (0.05, 20.0)
MAX_VOXELS = 512 ** 3  # larger scans are refused before their data are read (memory)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
UMASK = os.umask(0o022)
os.umask(UMASK)


@dataclass(frozen=True)
class Volume:
    """A 3-D array and its voxel-to-RAS affine in millimetres.

    Args:
        array: the voxels, 3-D (a 4-D array as read from a file is accepted; `validate` keeps only a
            trailing axis of length 1).
        affine: voxel-to-RAS matrix, mm; 4x4 and finite (singular ones are left to `validate`).
        source: what the volume came from (a path or a description), for messages.

    Raises:
        InputError (a ValueError) naming `source` for an array of another dimensionality or a bad affine.
    """

    array: np.ndarray
    affine: np.ndarray
    source: str = "<array>"

    def __post_init__(self):
        ndim = np.ndim(self.array)
        if ndim not in (3, 4):
            raise InputError(self.source, f"expected a 3-D volume, got {ndim}-D data of shape {np.shape(self.array)}")
        if np.shape(self.affine) != (4, 4):
            raise InputError(self.source, f"affine must be a 4x4 matrix, got shape {np.shape(self.affine)}")
        if not np.isfinite(np.asarray(self.affine, dtype=float)).all():
            raise InputError(self.source, "affine must be finite, got NaN or infinite values")

    @property
    def spacing(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def with_array(self, array: np.ndarray) -> "Volume":
        return replace(self, array=array)


def suffix_of(path: str | os.PathLike) -> str:
    name = str(path).lower()
    for suf in NIFTI_SUFFIXES + NRRD_SUFFIXES + MGH_SUFFIXES:
        if name.endswith(suf):
            return suf
    return Path(name).suffix


def stem_of(path: str | os.PathLike) -> str:
    name = Path(path).name
    suf = suffix_of(name)
    return name[: len(name) - len(suf)] if suf else name


def validate(volume: Volume, *, labels: bool = False) -> Volume:
    """Check that `volume` is a usable 3-D scan or label map; raise InputError naming the problem."""
    src, a = volume.source, volume.array
    if a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    if a.ndim != 3:
        raise InputError(src, f"expected a 3-D volume, got {a.ndim}-D data of shape {a.shape}")
    if a.size == 0 or min(a.shape) < 2:
        raise InputError(src, f"volume is empty (shape {a.shape})")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(src, f"unsupported data type {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise InputError(src, "volume contains NaN or infinite values")
    aff = np.asarray(volume.affine, dtype=float)
    if aff.shape != (4, 4) or not np.isfinite(aff).all() or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise InputError(src, "affine is missing, singular or not finite")
    spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    lo, hi = SPACING_RANGE_MM
    if (spacing < lo).any() or (spacing > hi).any():
        raise InputError(src, f"absurd voxel spacing {np.round(spacing, 4).tolist()} mm "
                              f"(expected {lo}-{hi} mm)")
    if labels:
        if np.issubdtype(a.dtype, np.floating):
            if not np.array_equal(a, np.round(a)):
                raise InputError(src, "label map has non-integer values")
        a = a.astype(np.int32, copy=False)
        if not a.any():
            raise InputError(src, "label map is empty (all voxels are background)")
        bad = unknown_labels(a)
        if bad:
            raise InputError(src, f"unknown label values {bad[:10]}{'...' if len(bad) > 10 else ''}")
    elif np.ptp(a) == 0:
        raise InputError(src, "image is empty (constant intensity)")
    return Volume(a, aff, src)


class HeaderWarning(VentkitWarning):
    """A header whose orientation cannot be fully trusted (missing or sheared)."""


def check_size(path: Path, shape) -> None:
    if int(np.prod(shape)) > MAX_VOXELS:
        raise InputError(path, f"{' x '.join(map(str, shape))} voxels is more than this tool can hold in memory "
                               f"(at most {MAX_VOXELS:,} voxels, 512^3): resample the scan first")


def check_orientation(affine: np.ndarray, source: str, has_orientation: bool = True) -> None:
    """Warn (HeaderWarning) about a header without orientation or with a sheared affine: left and right,
    and the voxel size, may then be wrong."""
    if not has_orientation:
        warnings.warn(HeaderWarning(f"{source}: the header holds no orientation (qform and sform codes 0): "
                                    "left/right and the voxel size are guesses"), stacklevel=3)
    axes = affine[:3, :3] / np.sqrt((affine[:3, :3] ** 2).sum(0))
    off = np.abs(axes.T @ axes - np.eye(3)).max()
    if off > 1e-3:
        warnings.warn(HeaderWarning(f"{source}: the affine is sheared (voxel axes {np.degrees(np.arcsin(min(off, 1))):.1f}"
                                    " degrees from perpendicular): volumes are right, orientation is approximate"),
                      stacklevel=3)


def _read_nibabel(path: Path) -> Volume:
    img = nib.load(str(path))
    check_size(path, img.shape[:3])
    unoriented = isinstance(img, nib.Nifti1Image) and int(img.header["qform_code"]) == int(img.header["sform_code"]) == 0
    check_orientation(img.affine, str(path), not unoriented)
    return Volume(np.asanyarray(img.dataobj), img.affine, str(path))


def _read_nrrd(path: Path) -> Volume:
    import SimpleITK as sitk

    info = sitk.ImageFileReader()
    info.SetFileName(str(path))
    info.ReadImageInformation()
    check_size(path, info.GetSize())
    return _from_sitk(sitk.ReadImage(str(path)), str(path))


def _read_dicom(folder: Path) -> Volume:
    """The one DICOM series in `folder` (SimpleITK's GDCM reader)."""
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(folder, "folder holds no DICOM series (give a NIfTI, NRRD or MGZ file, or a folder of "
                                 "DICOM files)")
    if len(series) > 1:
        raise InputError(folder, f"folder holds {len(series)} DICOM series: give a folder with one series (or "
                                 "convert them with dcm2niix)")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return _from_sitk(reader.Execute(), str(folder))


def _from_sitk(img, source: str) -> Volume:
    """A SimpleITK image (LPS) as a RAS Volume."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # sitk arrays are z, y, x
    direction = np.array(img.GetDirection()).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * np.array(img.GetSpacing())[None, :]
    aff[:3, 3] = img.GetOrigin()
    check_orientation(aff, source)
    return Volume(arr, LPS_TO_RAS @ aff, source)


def read_volume(path: str | os.PathLike, *, labels: bool = False) -> Volume:
    """Read a NIfTI, NRRD or MGZ image, or a folder of one DICOM series (or a label map when `labels`), and
    validate it. A header without orientation or with shear gives a HeaderWarning."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    suf = suffix_of(path)
    try:
        if path.is_dir():
            vol = _read_dicom(path)
        elif suf == ".dcm":
            raise InputError(path, "a single DICOM file: give the folder that holds its whole series")
        elif suf in NIFTI_SUFFIXES + MGH_SUFFIXES:
            vol = _read_nibabel(path)
        elif suf in NRRD_SUFFIXES:
            vol = _read_nrrd(path)
        else:
            raise InputError(path, f"unsupported file type '{suf}' (use .nii, .nii.gz, .nrrd or .mgz)")
        vol = Volume(np.asarray(vol.array), vol.affine, vol.source)
    except InputError:
        raise
    except Exception as exc:  # nibabel/SimpleITK raise many types for corrupt files
        raise InputError(path, f"cannot read file ({type(exc).__name__}: {exc})") from exc
    return validate(vol, labels=labels)


def reorient_to_ras(volume: Volume) -> Volume:
    """Permute/flip axes so that array axes run along R, A, S (no resampling)."""
    ornt = nib.orientations.io_orientation(volume.affine)
    target = nib.orientations.axcodes2ornt(("R", "A", "S"))
    transform = nib.orientations.ornt_transform(ornt, target)
    array = nib.orientations.apply_orientation(volume.array, transform)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(transform, volume.array.shape)
    return Volume(np.ascontiguousarray(array), affine, volume.source)


def ras_to_grid_of(array: np.ndarray, reference: Volume) -> Volume:
    """Undo `reorient_to_ras(reference)` for an array on its RAS grid: back to `reference`'s voxel order."""
    ornt = nib.orientations.io_orientation(reference.affine)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), ornt)
    out = np.ascontiguousarray(nib.orientations.apply_orientation(array, back))
    if out.shape != reference.array.shape:
        raise ValueError(f"array of shape {array.shape} is not on the RAS grid of {reference.source}")
    return Volume(out, reference.affine, reference.source)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; move it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix_of(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # as a plain open() would have made it (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_volume(volume: Volume, path: str | os.PathLike, dtype=None) -> Path:
    """Write `volume` as NIfTI or NRRD (chosen by suffix) atomically."""
    path = Path(path)
    suf = suffix_of(path)
    array = volume.array if dtype is None else volume.array.astype(dtype)
    with atomic_path(path) as tmp:
        if suf in NIFTI_SUFFIXES:
            img = nib.Nifti1Image(array, volume.affine)
            img.header.set_xyzt_units("mm")
            img.set_qform(volume.affine, code=1)
            img.set_sform(volume.affine, code=1)
            nib.save(img, str(tmp))
        elif suf in NRRD_SUFFIXES:
            import SimpleITK as sitk

            lps = LPS_TO_RAS @ volume.affine
            spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
            img = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
            img.SetSpacing(spacing.tolist())
            img.SetOrigin(lps[:3, 3].tolist())
            img.SetDirection((lps[:3, :3] / spacing[None, :]).ravel().tolist())
            sitk.WriteImage(img, str(tmp), True)
        else:
            raise InputError(path, f"unsupported output type '{suf}' (use .nii.gz or .nrrd)")
    return path
