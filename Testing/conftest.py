"""Shared fixtures: the real SynthSeg label maps (from ../shared or $VENTKIT_DATA) and tiny volumes."""
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from ventkit.anatomy.subjects import default_label_dir, list_subjects, load_subject
from ventkit.io import Volume

SHARED_PRIORS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthseg" / "priors"


@pytest.fixture(scope="session")
def subjects() -> dict:
    """Every shared label map; fails (does not skip) when the data is missing."""
    return list_subjects(default_label_dir())


@pytest.fixture(scope="session")
def subject01(subjects) -> Volume:
    return load_subject(str(subjects["training_seg_01"]))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny nnU-Net, really planned, preprocessed, trained (one iteration) and exported."""
    from ventkit.anatomy.corpus import build_corpus
    from ventkit.training.segmenter import export_segmenter, train_segmenter

    root = tmp_path_factory.mktemp("segmenter")
    data = root / "Dataset001_Tiny"
    build_corpus(data, 3, "natural", seed=0, grid="mask", quiet=True)
    result = train_segmenter([data], root / "run", "Tiny", minutes=30, epochs=1, iterations=1, device="cpu")
    assert result["finished"]
    return export_segmenter(root / "run", root / "model", {"name": "tiny test model"})


# tool: (command name, environment variable that points ventkit at it, input path, label-map path)
FAKE_REFERENCES = {"synthseg": ("mri_synthseg", "VENTKIT_SYNTHSEG", 'args["--i"]', 'args["--o"]'),
                   "samseg": ("run_samseg", "VENTKIT_SAMSEG", 'args["-i"]', 'args["-o"] + "/seg.mgz"')}


@pytest.fixture
def fake_reference(tmp_path, monkeypatch):
    """Install a stand-in `mri_synthseg` or `run_samseg` (via its $VENTKIT_ variable) that writes label boxes.

    `boxes` maps a label to (i0, i1, j0, j1, k0, k1) in a 1 mm grid of `shape` whose origin is the input
    scan's (`own_grid=False`), or in the input scan's own voxel grid (`own_grid=True`).
    """
    def install(tool: str, shape, boxes: dict, own_grid: bool = False) -> Path:
        command, env, src, dst = FAKE_REFERENCES[tool]
        fake = tmp_path / command
        fills = "\n".join(f"lab[{a}:{b}, {c}:{d}, {e}:{f}] = {lab}" for lab, (a, b, c, d, e, f) in boxes.items())
        affine = "img.affine" if own_grid else "np.eye(4); aff[:3, 3] = img.affine[:3, 3]"
        fake.write_text(f"""#!{sys.executable}
import sys, numpy as np, nibabel as nib
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
img = nib.load({src})
lab = np.zeros({tuple(shape)}, np.int16)
{fills}
aff = {affine}
dst = {dst}
nib.save((nib.MGHImage if dst.endswith(".mgz") else nib.Nifti1Image)(lab, aff), dst)
""")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv(env, str(fake))
        return fake
    return install


@pytest.fixture
def tiny_labels() -> Volume:
    """A 20^3 label map at 2 x 1.5 x 3 mm with a few structures."""
    a = np.zeros((20, 20, 20), np.int16)
    a[2:18, 2:18, 2:18] = 2
    a[5:9, 5:15, 6:14] = 4
    a[11:15, 5:15, 6:14] = 43
    a[9:11, 8:12, 8:12] = 14
    return Volume(a, np.diag([2.0, 1.5, 3.0, 1.0]), "tiny")
