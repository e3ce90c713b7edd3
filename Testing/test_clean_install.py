"""A Python that holds only what the panels' installer puts there runs ventkit (issue 31).

A clean virtual environment gets exactly `ventkit.requirements`' install (the list the Slicer panels
install, torch as the CPU build of this machine), ventkit itself on the path as Slicer puts it (not
pip-installed), then runs `python -m ventkit segment` and `synth pair` on the shipped weights.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ventkit.io import write_volume

REPO = Path(__file__).resolve().parents[1]
TORCH_CPU = "torch==2.13.0"  # the CPU build on this project's machines (a plain `torch` is a CUDA build)


def test_installer_list_is_complete(tmp_path, subject01):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run([python, "-m", "ventkit.requirements", "--install", "--torch", TORCH_CPU], check=True, env=env,
                   cwd=tmp_path)
    assert subprocess.run([python, "-m", "ventkit.requirements", "--missing"], env=env, cwd=tmp_path,
                          capture_output=True, text=True).stdout.strip() == ""
    from ventkit.anatomy.render import RenderSpec, render

    image, _ = render(subject01.array, subject01.spacing, np.random.default_rng(0), RenderSpec(thickness_mm=(1, 1)))
    scan = write_volume(subject01.with_array(image), tmp_path / "scan.nii.gz")
    run = subprocess.run([python, "-m", "ventkit", "segment", str(scan), "--out", str(tmp_path / "out")], env=env,
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "scan_volumes.json").is_file()
    run = subprocess.run([python, "-m", "ventkit", "synth", "pair", "--volume", "60", "--steps", "10", "--out",
                          str(tmp_path / "pair")], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "pair").glob("*_t1.nii.gz"))) == 1
