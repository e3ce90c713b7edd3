"""Training label maps (and their images) for the generators, read from corpus datasets onto the model grid."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..anatomy.grid import GRIDS, Grid, sample_image, sample_labels
from ..errors import InputError
from ..io import Volume, atomic_path, read_volume
from ..labels import VENTRICLE_IDS


def model_affine(volume: Volume, grid: Grid) -> np.ndarray:
    """The model grid's affine centred on a corpus case (whose own grid is centred on the brain)."""
    center = volume.affine[:3, :3] @ ((np.array(volume.array.shape) - 1) / 2) + volume.affine[:3, 3]
    return grid.affine(center)


class MaskDataset:
    """All 33-label maps (`labelsFullTr`) of one or more corpus folders, on one model grid, in memory.

    Hold-out cases (`labelsFullTs`) are never read. A `.npz` written by `pack` stands for the folders it
    was packed from, and may be mixed with further folders. Each item is (label ids, ventricle mL on this grid);
    with `images`, the case's image (`imagesTr`, scaled to 0..1) is resampled beside it into `self.images`.
    """

    def __init__(self, folders, grid: str = "mask", images: bool = False):
        self.grid = GRIDS[grid]
        self.labels, self.volumes_ml, self.subjects, self.images = [], [], [], []
        sources = [Path(f) for f in folders]
        for packed in (s for s in sources if s.suffix == ".npz"):
            self._unpack(packed, grid, images)
        folders = [s for s in sources if s.suffix != ".npz"]
        paths = sorted(p for f in folders for p in (f / "labelsFullTr").glob("*.nii.gz"))
        if (folders and not paths) or not sources:
            raise InputError(", ".join(map(str, folders)), "no labelsFullTr/*.nii.gz training maps found "
                                                           "(build them with `ventkit corpus build`)")
        voxel_ml = float(np.prod(self.grid.spacing)) / 1000
        for p in paths:
            vol = read_volume(p, labels=True)
            meta = p.parent.parent / "meta" / p.name.replace(".nii.gz", ".json")
            if meta.is_file() and json.loads(meta.read_text()).get("split") == "holdout":
                continue
            affine = model_affine(vol, self.grid)
            arr = sample_labels(vol, affine, self.grid.shape)
            if images:
                from ..synthesis.image_model import normalize_intensities

                image = read_volume(p.parent.parent / "imagesTr" / p.name.replace(".nii.gz", "_0000.nii.gz"))
                self.images.append(normalize_intensities(sample_image(image, affine, self.grid.shape)))
            self.labels.append(arr.astype(np.int16))
            self.volumes_ml.append(float(np.isin(arr, VENTRICLE_IDS).sum()) * voxel_ml)
            self.subjects.append(json.loads(meta.read_text()).get("subject", "") if meta.is_file() else "")

    def pack(self, path: str | Path) -> Path:
        """Write the maps (and images, 0..1 quantized to 8 bits) to one compressed `.npz`: a file that
        travels (to a lent GPU) and loads in seconds instead of resampling every corpus case again."""
        arrays = {"labels": np.stack(self.labels), "volumes_ml": np.array(self.volumes_ml),
                  "subjects": np.array(self.subjects), "grid": np.array(self.grid.shape)}
        if self.images:
            arrays["images"] = np.rint(np.stack(self.images) * 255).astype(np.uint8)
        with atomic_path(Path(path)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        return Path(path)

    def _unpack(self, path: Path, grid: str, images: bool) -> None:
        with np.load(path) as z:
            if tuple(z["grid"]) != tuple(self.grid.shape):
                raise InputError(path, f"packed on a {tuple(z['grid'])} grid, not the '{grid}' grid")
            if images and "images" not in z:
                raise InputError(path, "packed without images (pack it with --images)")
            self.labels += list(z["labels"])
            self.volumes_ml += [float(v) for v in z["volumes_ml"]]
            self.subjects += [str(v) for v in z["subjects"]]
            self.images += [a.astype(np.float32) / 255 for a in z["images"]] if images else []

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[list[np.ndarray], list[float]]:
        idx = rng.integers(len(self), size=size)
        return [self.labels[i] for i in idx], [self.volumes_ml[i] for i in idx]
