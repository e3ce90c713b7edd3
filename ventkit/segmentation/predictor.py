"""nnU-Net v2 ventricle segmenters: a shipped model folder run through `nnUNetPredictor`.

A model folder has nnU-Net's own layout (`plans.json`, `dataset.json`, `fold_all/checkpoint_final.pth`)
plus `model_card.json`, so stock `nnUNetv2_predict -m FOLDER -f all` runs the same model. Scans are
reoriented to RAS (axis permutations and flips only, as the training images were stored), handed to
nnU-Net with their voxel size, and the prediction comes back in the scan's own grid: nnU-Net resamples
the class probabilities, not the labels, before the argmax. Left and right are assigned afterwards from
the anatomy (`sides`): the network's classes are side-agnostic. Then, as nnU-Net's own postprocessing
does, only the largest connected component of each ventricle is kept (`keep_largest_components`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import Volume, ras_to_grid_of, reorient_to_ras, validate
from ..models import WeightsError, choose_device, verified_model
from .sides import assign_sides

FOLD = "all"
CHECKPOINT = "checkpoint_final.pth"
MODEL_FILES = ("plans.json", "dataset.json", f"fold_{FOLD}/{CHECKPOINT}")
# one connected structure each: a lateral ventricle with its temporal horn (inferior lateral), the 3rd, the 4th
CONNECTED_STRUCTURES = [(4, 5), (43, 44), 14, 15]


def keep_largest_components(labels: np.ndarray) -> np.ndarray:
    """Labels with every island outside the largest component of each of CONNECTED_STRUCTURES removed
    (nnU-Net's `remove_all_but_largest_component_from_segmentation`, 26-connected). On fsaverage the
    augmented model's islands (sulcal CSF, dark cortex) held over 40 % of its lateral volume."""
    from nnunetv2.postprocessing.remove_connected_components import \
        remove_all_but_largest_component_from_segmentation as keep_largest

    for structure in CONNECTED_STRUCTURES:
        labels = keep_largest(labels, structure)
    return labels


def to_nnunet_layout(volume: Volume) -> tuple[np.ndarray, dict]:
    """RAS volume -> nnU-Net's (channel, z, y, x) array and properties, as its NIfTI readers produce."""
    array = volume.array.astype(np.float32).transpose(2, 1, 0)[None]
    return np.ascontiguousarray(array), {"spacing": [float(s) for s in volume.spacing[::-1]]}


class VentricleSegmenter:
    """One trained nnU-Net ventricle model; `segment(volume)` returns FreeSurfer ventricle labels."""

    def __init__(self, folder: str | Path, device: str = "auto", mirroring: bool = False,
                 tile_step_size: float = 0.5, keep_islands: bool = False):
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        self.folder = Path(folder)
        self.card = verified_model(self.folder)
        self.device = choose_device(device)
        self.keep_islands = keep_islands
        self.predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=mirroring,
                                         perform_everything_on_device=self.device == "cuda",
                                         device=torch.device(self.device), allow_tqdm=False)
        try:
            self.predictor.initialize_from_trained_model_folder(str(self.folder), use_folds=(FOLD,),
                                                                checkpoint_name=CHECKPOINT)
        except (KeyError, RuntimeError, FileNotFoundError) as exc:
            raise WeightsError(f"{self.folder}: not a loadable nnU-Net model ({type(exc).__name__}: {exc})") from exc

    @property
    def name(self) -> str:
        return self.card.get("name", self.folder.name)

    def segment(self, volume: Volume) -> Volume:
        """Ventricle label map (4, 43, 5, 44, 14, 15) on `volume`'s grid and affine; islands removed
        (`keep_largest_components`) unless the segmenter keeps them."""
        volume = validate(volume)
        ras = reorient_to_ras(volume)
        array, props = to_nnunet_layout(ras)
        classes = self.predictor.predict_single_npy_array(array, props)
        if classes.shape != array.shape[1:]:
            raise InputError(volume.source, f"nnU-Net returned shape {classes.shape}, expected {array.shape[1:]}")
        labels = assign_sides(np.asarray(classes).transpose(2, 1, 0), ras.affine)
        if not self.keep_islands:
            labels = keep_largest_components(labels)
        return ras_to_grid_of(labels, volume)
