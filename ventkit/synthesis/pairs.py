"""Labeled brain-MRI pairs (T1 + 33-label map) for a requested ventricular volume.

This is the API behind `ventkit synth pair` and the VentSynth Slicer panel. Two backends: *diffusion*
(the volume-guided mask generator, then the SPADE image generator for its label map, or while that one
is not shipped, a T1 rendered SynthSeg-style from the generated map), and *anatomy* (a training
subject's real label map, randomly deformed, its ventricles resized to the requested volume, and a T1
rendered from it SynthSeg-style). Every pair says what drew its map and its image.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..anatomy.corpus import acquisition_spec, make_case
from ..anatomy.grid import GRIDS
from ..anatomy.render import RenderSpec, render
from ..anatomy.subjects import list_subjects, load_subject, split_subjects
from ..anatomy.ventricles import MAX_ML, MIN_ML
from ..errors import InputError
from ..io import Volume, write_text, write_volume
from ..preview import save_preview
from ..volumetry import volume_report


@dataclass
class Pair:
    image: Volume
    segmentation: Volume  # the 33 SynthSeg/FreeSurfer labels
    info: dict


CONTRASTS = ("t1", "random", "mixed")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Appearance:
    """How a pair's image is rendered SynthSeg-style. The default is a 1 mm T1, what the panel shows;
    VentSegment's training sets randomize it.

    Args:
        contrast: "t1", "random" (SynthSeg's randomized contrast) or "mixed" (either, drawn per pair).
        thickness_mm: (lo, hi) slice thickness drawn per pair, mm; 1 <= lo <= hi <= 8.
        classes: SynthSeg's label -> generation class grouping for the random contrast
            (`load_generation_classes`), or None.
        acquisition: the bias field and noise of an `ACQUISITIONS` entry: "varied" (strong) or "clean" (mild,
            as the image generator's training renders).

    Raises:
        InputError (a ValueError) naming the `ventkit synth` option for a value those options can give.
    """

    contrast: str = "t1"
    thickness_mm: tuple[float, float] = (1.0, 1.0)
    classes: dict | None = None
    acquisition: str = "varied"

    def __post_init__(self):
        if self.contrast not in CONTRASTS:
            raise InputError("contrast", f"unknown contrast '{self.contrast}' (choose from {', '.join(CONTRASTS)})")
        if np.shape(self.thickness_mm) != (2,):
            raise ValueError(f"thickness_mm must be (lo, hi) in mm, got {self.thickness_mm!r}")
        lo, hi = self.thickness_mm
        if not 1.0 <= lo <= hi <= 8.0:
            raise InputError("thickness_mm", f"slice thickness {lo:g}-{hi:g} mm: use 1 mm up to 8 mm")
        if self.classes is not None and not isinstance(self.classes, dict):
            raise ValueError(f"classes must be a dict of label -> class or None, got {type(self.classes).__name__}")
        acquisition_spec(self.acquisition)

    def settings(self) -> dict:
        return {"contrast": self.contrast, "thickness_mm": list(self.thickness_mm), "acquisition": self.acquisition}

    def spec(self, rng: np.random.Generator) -> RenderSpec:
        contrast = self.contrast if self.contrast != "mixed" else ("t1", "random")[int(rng.integers(2))]
        return replace(acquisition_spec(self.acquisition), contrast=contrast, thickness_mm=self.thickness_mm)


class AnatomySynthesizer:
    """Pairs drawn from the real training label maps (never the hold-out subjects).

    Args:
        label_dir: folder of the real label maps, or None for the default ($VENTKIT_DATA or ../shared).
        grid: output grid, a key of `GRIDS`.
        appearance: how the images are rendered (`Appearance`).
    """

    name = "anatomy"
    description = ("real training label map, randomly deformed, ventricles resized by a smooth flow, "
                   "T1 rendered SynthSeg-style (not the latent diffusion generators)")
    volume_range_ml = (MIN_ML, MAX_ML)

    def __init__(self, label_dir: str | Path | None = None, grid: str = "paper", appearance: Appearance = Appearance()):
        if grid not in GRIDS:
            raise InputError("grid", f"unknown grid '{grid}' (choose from {', '.join(GRIDS)})")
        _check_appearance(appearance)
        self.paths = list_subjects(label_dir)
        self.subjects = split_subjects(label_dir)["train"]
        if not self.subjects:
            raise InputError(label_dir or "label maps", "no training subjects (all are hold-out)")
        self.grid, self.appearance = grid, appearance

    def settings(self) -> dict:
        """What decides its pairs besides the seed (a dataset build records it)."""
        return {"backend": self.name, "subjects": self.subjects, "grid": self.grid, **self.appearance.settings()}

    def sample(self, volume_ml: float, seed: int = 0, index: int = 0) -> Pair:
        """Pair number `index` of `seed` for `volume_ml` (total ventricles, mL); reproducible."""
        _check_range(volume_ml, self.volume_range_ml)
        rng = np.random.default_rng([seed, index])
        subject = self.subjects[int(rng.integers(len(self.subjects)))]
        source = load_subject(str(self.paths[subject]))
        case = make_case(source, GRIDS[self.grid], volume_ml, rng, self.appearance.spec(rng),
                         self.appearance.classes)
        info = {"backend": self.name, "backend_description": self.description, "subject": subject,
                "seed": seed, "index": index, "grid": self.grid, **case.info}
        return Pair(case.image, case.segmentation, info)


class DiffusionSynthesizer:
    """Pairs drawn by the mask latent diffusion model for the volume, then a T1 for that map: the SPADE
    image generator's when it is shipped (or `image_model` is given), else rendered SynthSeg-style. An
    `appearance` other than the default clean T1 (random contrast, thick slices: what VentSegment's
    training sets ask for) is rendered too, since the image generator draws T1s only.

    Args:
        mask_model: folder of the mask generator, or None for the shipped one.
        image_model: folder of the image generator, or None for the shipped one (when shipped).
        device: "auto", "cpu" or "cuda".
        guidance: classifier-free guidance scale, finite and >= 0; None for the calibrated one.
        steps: DDIM steps, >= 1; None for those of the calibration.
        spacing_mm: voxel size of the output, mm, from 0.5 mm up to the model grid's; None for the model grid.
        appearance: how images are rendered when they are not drawn by the image generator (`Appearance`).
    """

    name = "diffusion"

    def __init__(self, mask_model: str | Path | None = None, image_model: str | Path | None = None,
                 device: str = "auto", guidance: float | None = None, steps: int | None = None,
                 spacing_mm: float | None = None, appearance: Appearance = Appearance()):
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        if guidance is not None and not (isinstance(guidance, numbers.Real) and np.isfinite(guidance)
                                         and guidance >= 0):
            raise ValueError(f"guidance must be finite and >= 0 (or None), got {guidance!r}")
        if steps is not None and not (isinstance(steps, numbers.Integral) and steps >= 1):
            raise ValueError(f"steps must be an integer >= 1 (or None), got {steps!r}")
        if spacing_mm is not None and not (isinstance(spacing_mm, numbers.Real) and np.isfinite(spacing_mm)
                                           and spacing_mm > 0):
            raise ValueError(f"spacing_mm must be finite and > 0 (or None), got {spacing_mm!r}")
        _check_appearance(appearance)
        from .mask_generator import MaskGenerator

        self.masks = MaskGenerator(mask_model, device)
        self.images = None
        if appearance == Appearance() and (image_model is not None or "image" in shipped_generators()):
            from .image_generator import ImageGenerator

            self.images = ImageGenerator(image_model, device)
        self.volume_range_ml = self.masks.cfg.volume_range_ml
        defaults = self.masks.defaults  # the calibrated guidance and steps unless others are asked for
        self.guidance = defaults.guidance if guidance is None else guidance
        self.steps = defaults.steps if steps is None else steps
        self.appearance = appearance
        self.spacing_mm = spacing_mm
        self.label_grid = self.masks.output_grid(spacing_mm)  # refuse a bad spacing before anything is drawn
        if spacing_mm is None and self.images and max(self.images.grid.spacing) < max(self.label_grid.spacing):
            self.label_grid = self.images.grid  # an image generator finer than the maps: both drawn on its grid
        self.description = "volume-guided mask latent diffusion model, then " + (
            "the SPADE image latent diffusion model" if self.images else
            "an image rendered SynthSeg-style from the generated map " +
            ("(a randomized appearance was asked for)" if appearance != Appearance() else
             "(the image generator is not shipped)"))

    def settings(self) -> dict:
        """What decides its pairs besides the seed (a dataset build records it)."""
        return {"backend": self.name, "description": self.description, "guidance": self.guidance,
                "steps": self.steps, "spacing_mm": self.spacing_mm, **self.appearance.settings()}

    def sample(self, volume_ml: float, seed: int = 0, index: int = 0) -> Pair:
        """Pair number `index` of `seed` for `volume_ml` (total ventricles, mL); reproducible."""
        _check_range(volume_ml, self.volume_range_ml)
        pair_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        labels = self.masks.sample(volume_ml, 1, pair_seed, self.guidance, self.steps, grid=self.label_grid)[0]
        acquisition = {}
        if self.images:
            image = self.images.sample(labels, pair_seed, self.steps)
        else:
            rng = np.random.default_rng(pair_seed)
            array, acquisition = render(labels.array, labels.spacing, rng, self.appearance.spec(rng), self.appearance.classes)
            image = Volume(array, labels.affine, "rendered image")
        info = {"backend": self.name, "backend_description": self.description, "subject": "generated",
                "image": "spade-ldm" if self.images else "rendered", "seed": seed, "index": index,
                "grid": self.masks.cfg.grid, "spacing_mm": [round(float(v), 3) for v in labels.spacing],
                "requested_ml": volume_ml,
                "measured_ml": round(self.masks.ventricle_ml(labels), 3), "guidance": self.guidance,
                "steps": self.steps, **acquisition}
        return Pair(image, labels, info)


def _check_appearance(appearance) -> None:
    if not isinstance(appearance, Appearance):
        raise ValueError(f"appearance must be an Appearance, got {type(appearance).__name__}")


def _check_range(volume_ml: float, volume_range_ml) -> None:
    lo, hi = volume_range_ml
    if not lo <= volume_ml <= hi:
        raise InputError("volume_ml", f"{volume_ml:g} mL is outside the range {lo:g}-{hi:g} mL")


def shipped_generators() -> set[str]:
    """Which of the two generators ("mask", "image") are shipped (their model cards are in place)."""
    from ..paths import models_dir

    return {name for name in ("mask", "image") if (models_dir() / f"{name}_generator" / "model_card.json").is_file()}


def diffusion_available() -> bool:
    """The volume-guided mask generator is shipped, so the *diffusion* backend can draw pairs."""
    return "mask" in shipped_generators()


def load_synthesizer(backend: str = "auto", label_dir: str | Path | None = None, grid: str = "paper",
                     device: str = "auto", guidance: float | None = None, steps: int | None = None,
                     spacing_mm: float | None = None,
                     appearance: Appearance = Appearance()):
    """`diffusion` when the mask generator is shipped (or asked for), else `anatomy`."""
    if backend == "diffusion" or (backend == "auto" and diffusion_available()):
        return DiffusionSynthesizer(device=device, guidance=guidance, steps=steps, spacing_mm=spacing_mm,
                                    appearance=appearance)
    if backend not in ("auto", "anatomy"):
        raise InputError("backend", f"unknown backend '{backend}' (auto, diffusion or anatomy)")
    return AnatomySynthesizer(label_dir, grid, appearance)


def write_pair(pair: Pair, out_dir: str | Path, stem: str, preview: bool = True) -> dict[str, Path]:
    """`<stem>_t1.nii.gz`, `<stem>_labels.nii.gz`, a preview PNG, and `<stem>.json` last (marks it complete)."""
    out = Path(out_dir)
    report = volume_report(pair.segmentation)
    files = {"t1": write_volume(pair.image, out / f"{stem}_t1.nii.gz", dtype=np.float32),
             "labels": write_volume(pair.segmentation, out / f"{stem}_labels.nii.gz", dtype=np.int16)}
    if preview:
        files["preview"] = save_preview(out / f"{stem}_preview.png", pair.image, pair.segmentation,
                                        title=f"{stem}: requested {pair.info['requested_ml']:.1f} mL, "
                                              f"got {report.total_ml:.1f} mL")
    info = {**pair.info, "ventricles_ml": report.ventricles_ml,
            "files": {k: p.name for k, p in files.items()}}
    files["info"] = write_text(out / f"{stem}.json", json.dumps(info, indent=1))
    return files
