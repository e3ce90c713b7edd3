"""PNG previews: three orthogonal slices of an image with its label map outlined in label colours."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import Volume, atomic_path, reorient_to_ras
from .labels import SEGMENTATION_LABELS, VENTRICLE_GROUPS


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write `fig` as a PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
    return Path(path)


def label_colours() -> np.ndarray:
    lut = np.zeros((max(lab.id for lab in SEGMENTATION_LABELS) + 1, 3), np.float32)
    for lab in SEGMENTATION_LABELS:
        lut[lab.id] = np.array(lab.rgb) / 255.0
    return lut


def save_preview(path: str | Path, image: Volume | None = None, labels: Volume | None = None,
                 title: str = "") -> Path:
    """Axial, coronal and sagittal slices through the ventricles' centre (or the volume's centre)."""
    from scipy.ndimage import binary_erosion

    ref = reorient_to_ras(labels if labels is not None else image)
    lab = ref.array if labels is not None else None
    img = reorient_to_ras(image).array if image is not None else None
    center = np.array(ref.array.shape) // 2
    if lab is not None and np.isin(lab, VENTRICLE_GROUPS["lateral"]).any():
        center = np.argwhere(np.isin(lab, VENTRICLE_GROUPS["lateral"])).mean(0).astype(int)
    lut = label_colours()
    sx, sy, sz = ref.spacing
    views = [("axial", lambda a: a[:, :, center[2]], sy / sx), ("coronal", lambda a: a[:, center[1], :], sz / sx),
             ("sagittal", lambda a: a[center[0], :, :], sz / sy)]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, (name, cut, aspect) in zip(axes, views):
        if img is not None:
            ax.imshow(cut(img).T, cmap="gray", origin="lower", aspect=aspect)
        if lab is not None:
            sl = cut(lab).T
            rgba = np.zeros((*sl.shape, 4), np.float32)
            if img is None:
                rgba[..., :3], rgba[..., 3] = lut[np.clip(sl, 0, len(lut) - 1)], (sl > 0)
            else:
                edge = (sl > 0) & ~np.all([binary_erosion(sl == v) | (sl != v) for v in np.unique(sl)], axis=0)
                rgba[..., :3], rgba[..., 3] = lut[np.clip(sl, 0, len(lut) - 1)], edge * 0.9
            ax.imshow(rgba, origin="lower", aspect=aspect, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.93) if title else None)
    return save_figure(fig, path, dpi=80)
