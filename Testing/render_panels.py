"""Render what each Slicer panel puts in the scene, as slice views, for the README.

The nodes come from the modules' own Logic running against Slicer's MRML (slicer-core, through
`slicer_harness`), exactly as in the panel; the slice views are drawn with matplotlib from those nodes.

    python Testing/render_panels.py --out Resources/Screenshots [--panels VentSegment] [--segment-model DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slicer_harness import load_module  # noqa: E402

VentSegment = load_module("VentSegment")
VentSynth = load_module("VentSynth")


def node_labels(seg, volume_node):
    """The segmentation node as a label map on the volume node's grid, through the panel's own export."""
    from ventkit.io import read_volume

    with tempfile.TemporaryDirectory() as tmp:
        path = VentSegment.VentSegmentLogic().exportSegmentation(seg, volume_node, str(Path(tmp) / "labels.nii.gz"))
        return read_volume(path, labels=True)


def slice_views(axes, image, labels, ids=None):
    """Axial, coronal, sagittal slices through the lateral ventricles, segments filled and outlined."""
    from scipy.ndimage import binary_erosion

    from ventkit.io import reorient_to_ras
    from ventkit.preview import label_colours

    img, lab = reorient_to_ras(image).array, reorient_to_ras(labels).array
    if ids is not None:
        lab = np.where(np.isin(lab, ids), lab, 0)
    c = np.argwhere(np.isin(lab, (4, 43))).mean(0).astype(int)
    sx, sy, sz = reorient_to_ras(image).spacing
    lut = label_colours()
    for ax, (name, cut, aspect) in zip(axes, (("axial", lambda a: a[:, :, c[2]], sy / sx),
                                              ("coronal", lambda a: a[:, c[1], :], sz / sx),
                                              ("sagittal", lambda a: a[c[0], :, :], sz / sy))):
        sl = cut(lab).T
        inner = np.any([binary_erosion(sl == v) for v in np.unique(sl) if v], axis=0) if sl.any() else sl > 0
        rgba = np.zeros((*sl.shape, 4), np.float32)
        rgba[..., :3] = lut[np.clip(sl, 0, len(lut) - 1)]
        rgba[..., 3] = np.where(sl > 0, np.where(inner, 0.45, 1.0), 0.0)
        ax.set_facecolor("black")
        ax.imshow(cut(img).T, cmap="gray", origin="lower", aspect=aspect)
        ax.imshow(rgba, origin="lower", aspect=aspect, interpolation="nearest")
        ax.set_title(name, color="white")
        ax.axis("off")


def render_ventsynth(out: Path, volume_ml: float, seed: int, dataset_pairs: int) -> Path:
    import matplotlib.pyplot as plt

    logic = VentSynth.VentSynthLogic()
    (volume, seg, info), = logic.synthesizeAndLoad(volume_ml, seed=seed)
    image = VentSegment.volumeFromNode(volume)
    logic.grid = "mask"  # the histogram panel: a small dataset on the coarse grid
    with tempfile.TemporaryDirectory() as tmp:
        job = logic.startExport(str(Path(tmp) / "Dataset300_VentSynth"), dataset_pairs, "uniform:5:300", seed)
        job.wait()
        chart = logic.loadExport(job)
        job.cleanup()
    table = chart.GetNthPlotSeriesNode(0).GetTableNode().GetTable()
    centres = [table.GetValue(r, 0).ToDouble() for r in range(table.GetNumberOfRows())]
    counts = [table.GetValue(r, 1).ToDouble() for r in range(table.GetNumberOfRows())]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), facecolor="black")
    slice_views(axes[:3], image, node_labels(seg, volume))
    axes[3].bar(centres, counts, width=0.9 * (centres[1] - centres[0]) if len(centres) > 1 else 10, color="#4a90d9")
    axes[3].set_facecolor("white")
    axes[3].set_title(f"exported dataset: {dataset_pairs} pairs, uniform 5-300 mL", color="white")
    axes[3].set_xlabel("ventricle volume (mL)", color="white")
    axes[3].set_ylabel("pairs", color="white")
    axes[3].tick_params(colors="white")
    fig.suptitle(f"VentSynth: requested {volume_ml:g} mL, measured {info['ventricles_ml']['total']:.1f} mL "
                 f"({seg.GetSegmentation().GetNumberOfSegments()} segments; {info['backend']} backend, "
                 f"{info['subject']})", color="white")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path = out / "VentSynth.png"
    fig.savefig(path, dpi=80, facecolor="black")
    plt.close(fig)
    return path


def render_ventsegment(out: Path, model_dir: str, volume_ml: float, seed: int) -> Path:
    import matplotlib.pyplot as plt
    import slicer

    (volume, _, info), = VentSynth.VentSynthLogic().synthesizeAndLoad(volume_ml, seed=seed)
    logic = VentSegment.VentSegmentLogic()
    logic.modelDir = model_dir
    seg, table, warnings = logic.segmentAndLoad(volume, reference="none", device="cpu")
    from ventkit.labels import VENTRICLE_IDS

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), facecolor="black", gridspec_kw={"width_ratios": [1, 1, 1, 1.3]})
    slice_views(axes[:3], VentSegment.volumeFromNode(volume), node_labels(seg, volume), VENTRICLE_IDS)
    t = table.GetTable()
    rows = [[t.GetValue(r, c).ToString() for c in (0, 1)] for r in range(t.GetNumberOfRows())]
    axes[3].axis("off")
    axes[3].table(cellText=rows, colLabels=[t.GetColumn(c).GetName() for c in (0, 1)], loc="center").scale(1, 1.3)
    fig.suptitle(f"VentSegment ({Path(model_dir).name}) on a synthesized T1 (true total {info['ventricles_ml']['total']:.1f} mL)"
                 + (f" - {warnings[0]}" if warnings else ""), color="white")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path = out / "VentSegment.png"
    fig.savefig(path, dpi=80, facecolor="black")
    plt.close(fig)
    slicer.mrmlScene.Clear(0)
    return path


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="Resources/Screenshots")
    p.add_argument("--volume", type=float, default=150.0)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--dataset-pairs", type=int, default=24)
    p.add_argument("--segment-model", help="nnU-Net model folder for the VentSegment view (default: the shipped default model)")
    p.add_argument("--panels", nargs="*", choices=("VentSynth", "VentSegment"), default=["VentSynth", "VentSegment"])
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if "VentSynth" in args.panels:
        print(f"wrote {render_ventsynth(out, args.volume, args.seed, args.dataset_pairs)}")
    if "VentSegment" not in args.panels:
        return
    from ventkit.segmentation.segment import DEFAULT_MODEL, model_folder

    model = args.segment_model or model_folder(DEFAULT_MODEL)
    if Path(model).is_dir():
        print(f"wrote {render_ventsegment(out, str(model), args.volume, args.seed)}")
    else:
        print(f"VentSegment view not rendered: no model at {model} (pass --segment-model)")


if __name__ == "__main__":
    main()
