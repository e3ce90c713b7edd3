"""`ventkit synth dataset`: an nnU-Net v2 raw dataset of synthesized pairs for chosen ventricle volumes.

This is how VentSegment's *synthetic* and *augmented* training sets are made, and what the VentSynth
panel's batch export writes. Case i draws its volume and its pair from the seeds (seed, i), so an
interrupted build resumes where it stopped and reproduces the same cases. Besides nnU-Net's files
it writes `cases.csv` (requested and measured volume of every case) and `volumes.png` (their histograms).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..anatomy.corpus import parse_volumes
from ..anatomy.nnunet import NnUNetDatasetWriter
from ..errors import InputError
from ..preview import pyplot, save_figure
from ..progress import Callback, track


def check_volume_spec(volumes: str, volume_range_ml: tuple[float, float]) -> None:
    """Refuse 'natural' and volumes the synthesizer was not trained for, before anything is written."""
    parse_volumes(volumes)
    if volumes.strip().lower() == "natural":
        raise InputError("volumes", "a synthetic dataset needs volumes (uniform:A:B or a list), not 'natural'")
    spec = volumes.strip().lower().removeprefix("uniform:").replace(":", ",")
    values = [float(v) for v in spec.split(",") if v]
    lo, hi = volume_range_ml
    if min(values) < lo or max(values) > hi:
        raise InputError("volumes", f"'{volumes}' leaves the synthesizer's range {lo:g}-{hi:g} mL")


def build_synthetic_dataset(synthesizer, out_dir: str | Path, n: int, volumes: str = "uniform:5:300",
                            seed: int = 0, callback: Callback | None = None,
                            quiet: bool = False, force: bool = False) -> dict:
    """Write `n` pairs of `synthesizer` (see pairs.load_synthesizer) as nnU-Net training cases `synth_XXXX`;
    a folder built with other settings is refused unless `force` (see `NnUNetDatasetWriter.claim`)."""
    if n < 1:
        raise InputError("n", "need at least one case")
    check_volume_spec(volumes, synthesizer.volume_range_ml)
    sample_volume = parse_volumes(volumes)
    out_dir = Path(out_dir)
    writer = NnUNetDatasetWriter(out_dir, f"ventkit synth dataset: {synthesizer.name} backend "
                                          f"({synthesizer.description}), volumes {volumes}, seed {seed}")
    writer.claim({"volumes": volumes, "seed": seed, **synthesizer.settings()}, force)
    try:
        for i in track(range(n), n, f"synth dataset ({synthesizer.name})", callback, quiet):
            case_id = f"synth_{i:04d}"
            if writer.has_case(case_id):
                continue
            pair = synthesizer.sample(sample_volume(np.random.default_rng([seed, i])), seed, i)
            writer.add_case(case_id, pair.image, pair.segmentation, pair.info)
    finally:
        writer.remove_partial()  # files of a case cut off by a cancel
    dataset = writer.finish(out_dir.name)
    save_volume_histogram(writer.cases(), out_dir / "volumes.png")
    return dataset


def save_volume_histogram(cases: list[dict], path: Path) -> Path:
    """Histograms of requested and measured total ventricle volume (mL) over the cases."""
    plt = pyplot()
    requested = [c["requested_ml"] for c in cases if c.get("requested_ml") is not None]
    measured = [c["measured_ml"] for c in cases]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, max(measured + requested + [1.0]) * 1.05, 21)
    ax.hist(requested, bins, alpha=0.5, label="requested")
    ax.hist(measured, bins, histtype="step", linewidth=2, label="measured")
    ax.set_xlabel("total ventricle volume (mL)")
    ax.set_ylabel("cases")
    ax.set_title(f"{len(cases)} synthetic cases")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
