"""Benchmark of `ventkit segment` on a 1 mm 256^3 T1: wall time and peak memory, against stock nnU-Net.

    python bench/segment_speed.py [--model NAME | --model-dir DIR] [--subject training_seg_03]

A T1 is rendered at 1 mm from a hold-out label map (256^3, the shared maps' own grid). Each contender
runs in its own process so that its peak resident memory is its own:
  ventkit    `ventkit segment` (reorient, nnU-Net preprocessing, one sliding-window pass, probabilities
             resampled to the input grid, volumes, files)
  stock      `nnUNetv2_predict_from_modelfolder` on the same model folder, nnU-Net's defaults (mirroring
             TTA over the axes the checkpoint allows: all three for `nnUNetTrainerVentkit`, whose classes
             are side-agnostic; it writes those classes, ventkit adds the left/right split)
  stock-noTTA the same with --disable_tta (ventkit's setting)
  ventkit-sd `ventkit segment --uncertainty` (the mirrored test-time passes whose spread is each volume's SD)
Targets (issue 35): ventkit <= 25 s and <= 4 GB on the 2-core CPU, <= 90 s with --uncertainty.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def render_t1(subject: str, out: Path) -> Path:
    from ventkit.anatomy.render import RenderSpec, render
    from ventkit.anatomy.subjects import list_subjects, load_subject
    from ventkit.io import write_volume

    labels = load_subject(str(list_subjects()[subject]))
    image, _ = render(labels.array, labels.spacing, np.random.default_rng(0), RenderSpec(thickness_mm=(1.0, 1.0)))
    return write_volume(labels.with_array(image), out / f"{subject}_t1.nii.gz")


MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of `cmd`, measured by a fresh wrapper process of its own."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{proc.stderr[-2000:]}")
    return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024 ** 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="shipped model name (default: the default model of `ventkit segment`)")
    ap.add_argument("--model-dir", help="an nnU-Net model folder instead of a shipped model")
    ap.add_argument("--subject", default="training_seg_03")
    args = ap.parse_args()
    from ventkit.segmentation.segment import DEFAULT_MODEL, model_folder

    folder = Path(args.model_dir) if args.model_dir else model_folder(args.model or DEFAULT_MODEL)
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        scan = render_t1(args.subject, tmp / "in")
        stock_in = tmp / "stock_in"
        stock_in.mkdir()
        (stock_in / "case_0000.nii.gz").symlink_to(scan)
        runs = {
            "ventkit": [str(bindir / "ventkit"), "segment", str(scan), "--out", str(tmp / "o1"), "--model-dir",
                        str(folder), "--device", "cpu"],
            "stock": [str(bindir / "nnUNetv2_predict_from_modelfolder"), "-i", str(stock_in), "-o",
                      str(tmp / "o2"), "-m", str(folder), "-f", "all", "-device", "cpu"],
            "stock-noTTA": [str(bindir / "nnUNetv2_predict_from_modelfolder"), "-i", str(stock_in), "-o",
                            str(tmp / "o3"), "-m", str(folder), "-f", "all", "-device", "cpu", "--disable_tta"],
            "ventkit-sd": [str(bindir / "ventkit"), "segment", str(scan), "--out", str(tmp / "o4"), "--model-dir",
                           str(folder), "--device", "cpu", "--uncertainty"],
        }
        print(f"input: {scan.name}, 256^3 at 1 mm; model {folder}")
        results = {}
        for name, cmd in runs.items():
            results[name] = timed(cmd)
            print(f"{name:<12} {results[name][0]:7.1f} s   peak {results[name][1]:5.2f} GB")
    base = results["ventkit"][0]
    for name in ("stock", "stock-noTTA", "ventkit-sd"):
        print(f"time ratio {name} / ventkit: {results[name][0] / base:.2f}")
    ok = results["ventkit"][0] <= 25 and results["ventkit"][1] <= 4
    print(f"target ventkit <= 25 s and <= 4 GB: {'met' if ok else 'NOT met'}")
    print(f"target ventkit --uncertainty <= 90 s: {'met' if results['ventkit-sd'][0] <= 90 else 'NOT met'}")


if __name__ == "__main__":
    main()
