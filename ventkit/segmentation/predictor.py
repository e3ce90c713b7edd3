"""nnU-Net v2 ventricle segmenters: a shipped model folder run through `nnUNetPredictor`.

A model folder has nnU-Net's own layout (`plans.json`, `dataset.json`, `fold_all/checkpoint_final.pth`)
plus `model_card.json`, so stock `nnUNetv2_predict -m FOLDER -f all` runs the same model. Scans are
reoriented to RAS (axis permutations and flips only, as the training images were stored), handed to
nnU-Net with their voxel size, and the prediction comes back in the scan's own grid: nnU-Net resamples
the class probabilities, not the labels, before the argmax. Left and right are assigned afterwards from
the anatomy (`sides`): the network's classes are side-agnostic. Nothing is ventricle outside what was
scanned (`outside_scan`: the zero fill of a resliced, cropped or skull-stripped scan). Then, as nnU-Net's
own postprocessing does, only the largest connected component of each ventricle is kept (`keep_largest_components`), and
background enclosed by a ventricle is filled (`fill_enclosed`).
"""
from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..anatomy.grid import sample_labels
from ..errors import InputError
from ..io import Volume, ras_to_grid_of, reorient_to_ras, validate
from ..models import WeightsError, choose_device, verified_model
from ..volumetry import ventricle_volumes_ml
from .sides import assign_sides, midsagittal_plane

DEVICES = ("auto", "cpu", "cuda")
FOLD = "all"
CHECKPOINT = "checkpoint_final.pth"
MODEL_FILES = ("plans.json", "dataset.json", f"fold_{FOLD}/{CHECKPOINT}")
# one connected structure each: a lateral ventricle with its temporal horn (inferior lateral), the 3rd, the 4th
CONNECTED_STRUCTURES = [(4, 5), (43, 44), 14, 15]
# test-time augmentation: the scan as it is, then mirrored along each set of axes of nnU-Net's (z, y, x)
# array (nnU-Net's mirroring), in pairs that differ by the left-right flip (x, axis 2): with an even number
# of passes, a scan mirrored left-right is segmented as the mirror image of the scan
MIRRORINGS = ((), (2,), (0,), (0, 2), (1,), (1, 2), (0, 1), (0, 1, 2))


def outside_scan(image: np.ndarray) -> np.ndarray:
    """Voxels outside what was scanned: the zeros that reach the volume's border (the fill of a resliced,
    cropped or skull-stripped scan), as nnU-Net's `create_nonzero_mask` finds them. A network can take
    that flat dark fill for CSF, and a fill larger than a ventricle would win `keep_largest_components`."""
    from nnunetv2.preprocessing.cropping.cropping import create_nonzero_mask

    return ~create_nonzero_mask(image[None])


def keep_largest_components(labels: np.ndarray) -> np.ndarray:
    """Labels with every island outside the largest component of each of CONNECTED_STRUCTURES removed
    (nnU-Net's `remove_all_but_largest_component_from_segmentation`, 26-connected). On fsaverage the
    augmented model's islands (sulcal CSF, dark cortex) held over 40 % of its lateral volume."""
    from nnunetv2.postprocessing.remove_connected_components import \
        remove_all_but_largest_component_from_segmentation as keep_largest

    for structure in CONNECTED_STRUCTURES:
        labels = keep_largest(labels, structure)
    return labels


def fill_enclosed(labels: np.ndarray) -> np.ndarray:
    """Labels with the background that a ventricle (each of CONNECTED_STRUCTURES) encloses in 3-D given to
    that ventricle (its nearest label): a ventricle has no tissue inside it, and a dark spot of noise,
    choroid plexus or a vessel inside an enlarged ventricle is still ventricle volume."""
    out = labels.copy()
    for structure in CONNECTED_STRUCTURES:
        ids = structure if isinstance(structure, tuple) else (structure,)
        found = ndimage.find_objects(np.isin(labels, ids).astype(np.uint8))
        if not found:
            continue
        box = found[0]  # enclosed voxels lie within the structure's bounding box
        part = labels[box]
        inside = np.isin(part, ids)
        holes = ndimage.binary_fill_holes(inside) & (part == 0)
        if holes.any():
            _, nearest = ndimage.distance_transform_edt(~inside, return_indices=True)
            out[box][holes] = part[tuple(index[holes] for index in nearest)]
    return out


def to_nnunet_layout(volume: Volume) -> tuple[np.ndarray, dict]:
    """RAS volume -> nnU-Net's (channel, z, y, x) array and properties, as its NIfTI readers produce."""
    array = volume.array.astype(np.float32).transpose(2, 1, 0)[None]
    return np.ascontiguousarray(array), {"spacing": [float(s) for s in volume.spacing[::-1]]}


class VentricleSegmenter:
    """One trained nnU-Net ventricle model; `segment(volume)` returns FreeSurfer ventricle labels.

    Args:
        folder: the model folder (nnU-Net's layout plus `model_card.json`, checksums verified).
        device: "auto", "cpu" or "cuda".
        mirroring: nnU-Net's test-time mirroring in every prediction (8 passes; slower).
        tile_step_size: sliding-window step as a fraction of the patch size; 0 < tile_step_size <= 1.
        keep_islands: keep every connected component instead of the largest one per ventricle.
    """

    def __init__(self, folder: str | Path, device: str = "auto", mirroring: bool = False,
                 tile_step_size: float = 0.5, keep_islands: bool = False):
        if not str(folder):
            raise ValueError("folder must be a model folder, got an empty path")
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        if not (isinstance(tile_step_size, numbers.Real) and 0 < tile_step_size <= 1):
            raise ValueError(f"tile_step_size must be in (0, 1], got {tile_step_size!r}")
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
        # probabilities go back to the scan's grid through nnU-Net's torch resampler: linear, as the plans'
        # order-1 resize, and faster on a CPU
        config = self.predictor.configuration_manager.configuration
        config["resampling_fn_probabilities"] = "resample_torch_fornnunet"
        config["resampling_fn_probabilities_kwargs"] = {"is_seg": False, "force_separate_z": None}

    @property
    def name(self) -> str:
        return self.card.get("name", self.folder.name)

    def segment(self, volume: Volume) -> Volume:
        """Ventricle label map (4, 43, 5, 44, 14, 15) on `volume`'s grid and affine; islands removed
        (`keep_largest_components`) unless the segmenter keeps them."""
        return self.predict(volume, passes=1)[0]

    def segment_with_uncertainty(self, volume: Volume, passes: int | None = None) -> tuple[Volume, list[dict]]:
        """`segment` with test-time augmentation: the logits of `passes` mirrored copies of the scan are
        averaged (nnU-Net's own mirroring), and each pass's ventricle volumes are returned too, measured
        on the network's grid (their spread is the segmentation's uncertainty). `passes`: by default as
        many as the card's `uncertainty` was calibrated with, else all of MIRRORINGS."""
        if passes is None:
            passes = int(self.card.get("uncertainty", {}).get("passes", len(MIRRORINGS)))
        if not 2 <= passes <= len(MIRRORINGS):
            raise InputError("passes", f"{passes}: use 2-{len(MIRRORINGS)} test-time passes")
        return self.predict(volume, passes)

    def predict(self, volume: Volume, passes: int) -> tuple[Volume, list[dict]]:
        """Labels on `volume`'s grid from the mean logits of the first `passes` of MIRRORINGS, and (for
        more than one pass) the ventricle volumes of each pass alone on the network's grid."""
        import torch
        from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        volume = validate(volume)
        ras = reorient_to_ras(volume)
        array, props = to_nnunet_layout(ras)
        p = self.predictor
        adapter = PreprocessAdapterFromNpy([array], [None], [props], [None], p.plans_manager, p.dataset_json,
                                           p.configuration_manager, num_threads_in_multithreaded=1)
        case = next(adapter)
        data, props = case["data"], case["data_properties"]
        each = []
        for axes in MIRRORINGS[:passes]:
            dims = [1 + a for a in axes]
            logits = p.predict_logits_from_preprocessed_data(torch.flip(data, dims) if dims else data)
            each.append(torch.flip(logits, dims) if dims else logits)
        mean = torch.stack(each).mean(0) if passes > 1 else each[0]
        classes = convert_predicted_logits_to_segmentation_with_correct_shape(
            mean, p.plans_manager, p.configuration_manager, p.label_manager, props)
        if classes.shape != array.shape[1:]:
            raise InputError(volume.source, f"nnU-Net returned shape {classes.shape}, expected {array.shape[1:]}")
        classes = np.asarray(classes).transpose(2, 1, 0)
        outside = outside_scan(ras.array)
        classes[outside] = 0
        plane = midsagittal_plane(classes, ras.affine, ras.array)
        labels = self._postprocess(assign_sides(classes, ras.affine, plane=plane))
        volumes = []
        if passes > 1:
            grid = network_grid_affine(ras.affine, props, data.shape[1:])
            net_shape = data.shape[1:][::-1]
            outside_net = sample_labels(ras.with_array(outside.astype(np.uint8)), grid, net_shape, antialias=False) > 0
            for logits in each:
                net = logits.argmax(0).numpy().astype(np.uint8).transpose(2, 1, 0)
                net[outside_net] = 0
                volumes.append(ventricle_volumes_ml(Volume(self._postprocess(assign_sides(net, grid, plane=plane)),
                                                           grid, "test-time pass")))
        return ras_to_grid_of(labels, volume), volumes

    def _postprocess(self, labels: np.ndarray) -> np.ndarray:
        return fill_enclosed(labels if self.keep_islands else keep_largest_components(labels))


def network_grid_affine(ras_affine: np.ndarray, props: dict, shape) -> np.ndarray:
    """RAS affine of nnU-Net's preprocessed grid (the scan cropped and resampled to `shape`, axes z, y, x)
    for an array in x, y, z order: the grid on which each test-time pass's volumes are measured."""
    bbox = np.array(props["bbox_used_for_cropping"], float)  # (z, y, x) voxel ranges of the RAS scan
    old = np.array(props["shape_after_cropping_and_before_resampling"], float)
    new = np.array(shape, float)
    scale = (old / new)[::-1]  # x, y, z
    start = bbox[::-1, 0] + 0.5 * scale - 0.5  # centre of the first resampled voxel, in scan voxels
    to_scan = np.diag([*scale, 1.0])
    to_scan[:3, 3] = start
    return ras_affine @ to_scan
