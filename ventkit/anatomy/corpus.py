"""Build the anatomy corpus: deformed, ventricle-resized label maps with rendered (or real, warped) images."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..io import Volume, reorient_to_ras
from ..labels import TO_SEGMENTATION, VENTRICLE_IDS, to_segmentation
from ..progress import Callback, track
from .appearance import load_subject_image
from .deform import DeformationSpec, RandomDeformation
from .fov import apply_fov, check_fov, draw_fov
from .grid import GRIDS, Grid, sample_image, sample_labels
from .nnunet import NnUNetDatasetWriter
from .render import RenderSpec, acquire, load_generation_classes, render
from .subjects import default_priors_dir, list_subjects, load_subject, split_subjects
from .ventricles import MAX_ML, MIN_ML, SubjectFlows, ids_mapping_to, resize_transform

# rendered T1, SynthSeg's random contrast, either drawn per case, the subject's own T1
CONTRASTS = ("t1", "random", "mixed", "real")
# "varied": SynthSeg-style thick slices, strong bias and noise (what segmenters train on); "clean": a good
# 1 mm scan, mild bias and noise (a real T1 is already blurred, biased and noisy: its default; and what the
# image generator should draw)
ACQUISITIONS = {"varied": RenderSpec(),
                "clean": RenderSpec(thickness_mm=(1.0, 1.0), bias_std=0.1, noise_std=(0.0, 0.02), gamma_std=0.05)}


def acquisition_spec(name: str) -> RenderSpec:
    """The `ACQUISITIONS` entry `name`, or a clear error naming the choices."""
    if name not in ACQUISITIONS:
        raise InputError("acquisition", f"unknown acquisition '{name}' (choose from {', '.join(ACQUISITIONS)})")
    return ACQUISITIONS[name]


def draw_choice(name: str, rng: np.random.Generator, choices: tuple[str, ...]) -> str:
    """`name`, or for "mixed" one of `choices` drawn uniformly."""
    return str(rng.choice(choices)) if name == "mixed" else name


VolumeSampler = Callable[[np.random.Generator], "float | None"]


def parse_volumes(spec: str) -> VolumeSampler:
    """'uniform:A:B' (mL), a comma list '15,30,60' (cycled at random), or 'natural' (no resizing)."""
    spec = spec.strip().lower()
    if spec == "natural":
        return lambda rng: None
    try:
        if spec.startswith("uniform:"):
            lo, hi = (float(x) for x in spec.split(":")[1:3])
            values = (lo, hi)
            sampler = lambda rng: float(rng.uniform(lo, hi))  # noqa: E731
        else:
            values = tuple(float(x) for x in spec.split(","))
            sampler = lambda rng: float(rng.choice(values))  # noqa: E731
    except ValueError as exc:
        raise InputError("volumes", f"cannot parse '{spec}' (use uniform:5:300, 15,30,60 or natural)") from exc
    if spec.startswith("uniform:") and not values[0] < values[1]:
        raise InputError("volumes", f"'{spec}': the range must run from low to high")
    if not np.isfinite(values).all() or min(values) < MIN_ML or max(values) > MAX_ML:
        raise InputError("volumes", f"volumes must lie in {MIN_ML:g}-{MAX_ML:g} mL, got '{spec}'")
    return sampler


def brain_center(labels: Volume) -> np.ndarray:
    """RAS centre of the bounding box of the brain labels."""
    brain = np.isin(labels.array, [i for i, s in TO_SEGMENTATION.items() if s != 0])
    idx = np.argwhere(brain)
    mid = (idx.min(0) + idx.max(0)) / 2
    return labels.affine[:3, :3] @ mid + labels.affine[:3, 3]


def ventricle_ml(generation: np.ndarray, voxel_ml: float) -> float:
    return float(np.isin(generation, ids_mapping_to(VENTRICLE_IDS)).sum()) * voxel_ml


@dataclass
class Case:
    image: Volume
    segmentation: Volume  # the 33 labels
    generation: Volume  # SynthSeg generation labels (for rendering again)
    info: dict


def _deform(source: Volume, grid: Grid, target_ml: float | None, rng: np.random.Generator,
            deformation: DeformationSpec | None, flows: SubjectFlows | None, tol: float):
    """The grid's affine and the transform chain (random deformation, ventricle flow) for one case."""
    center = brain_center(source)
    affine = grid.affine(center)
    chain = [] if deformation is None else [RandomDeformation.draw(rng, center, grid.extent_mm, deformation)]
    if target_ml is not None:
        voxel_ml = float(np.prod(grid.spacing)) / 1000
        flows = flows or SubjectFlows(source)
        measure = lambda tr: ventricle_ml(sample_labels(source, affine, grid.shape, chain + [tr]), voxel_ml)  # noqa: E731
        tr, _ = resize_transform(flows, target_ml, measure, tol=tol)
        chain = chain + [tr]
    return affine, chain


def _sample(source: Volume, grid: Grid, affine: np.ndarray, chain: list, target_ml: float | None):
    generation = sample_labels(source, affine, grid.shape, chain)
    info = {"requested_ml": target_ml,
            "measured_ml": round(ventricle_ml(generation, float(np.prod(grid.spacing)) / 1000), 3)}
    return Volume(generation, affine, source.source), info


def make_labels(source: Volume, grid: Grid, target_ml: float | None, rng: np.random.Generator,
                deformation: DeformationSpec | None = DeformationSpec(),
                flows: SubjectFlows | None = None, tol: float = 0.01) -> tuple[Volume, dict]:
    """Deform `source` at random and resize its ventricles to `target_ml` on `grid` (RAS, brain-centred)."""
    affine, chain = _deform(source, grid, target_ml, rng, deformation, flows, tol)
    return _sample(source, grid, affine, chain, target_ml)


def make_case(source: Volume, grid: Grid, target_ml: float | None, rng: np.random.Generator,
              render_spec: RenderSpec = RenderSpec(), generation_classes=None,
              flows: SubjectFlows | None = None, real_image: Volume | None = None) -> Case:
    """One training/test pair: resized, deformed labels and an image on `grid`: rendered from the
    labels, or with `real_image`, the subject's own T1 warped with them (then acquired the same way)."""
    affine, chain = _deform(source, grid, target_ml, rng, DeformationSpec(), flows, tol=0.01)
    generation, info = _sample(source, grid, affine, chain, target_ml)
    if real_image is None:
        image, params = render(generation.array, grid.spacing, rng, render_spec, generation_classes)
    else:  # the T1 goes through the same transforms as its labels: intensities move with the tissue
        warped = sample_image(real_image, affine, grid.shape, chain)
        scale = float(np.percentile(warped, 99.5)) or 1.0
        image, params = acquire(np.clip(warped / scale, 0, None), grid.spacing, rng, render_spec)
        params = {"contrast": "real", **params}
    seg = generation.with_array(to_segmentation(generation.array))
    return Case(generation.with_array(image), seg, generation, {**info, **params})


def resize_scan(image: Volume, labels: Volume, target_ml: float, tol: float = 0.01,
                measure_spacing_mm: float = 2.0) -> tuple[Volume, Volume]:
    """A real scan and its label map (same grid; FreeSurfer ids) with the ventricles resized to `target_ml`
    by one flow applied to both, so that intensities move with the tissue; both come back on the scan's
    RAS grid. The flow is calibrated on a `measure_spacing_mm` grid (volumes are kept there by antialiased
    sampling), so the result lies within about `tol` plus a voxel's share of the target."""
    image, labels = reorient_to_ras(image), reorient_to_ras(labels)
    if image.array.shape != labels.array.shape or not np.allclose(image.affine, labels.affine, atol=1e-3):
        raise InputError(labels.source, "the label map is not on the scan's grid")
    extent = np.array(labels.array.shape) * labels.spacing
    coarse = Grid(tuple(int(v) for v in np.ceil(extent / measure_spacing_mm)), (measure_spacing_mm,) * 3)
    coarse_affine = coarse.affine(labels.affine[:3, :3] @ ((np.array(labels.array.shape) - 1) / 2)
                                  + labels.affine[:3, 3])
    voxel_ml = measure_spacing_mm ** 3 / 1000
    measure = lambda tr: ventricle_ml(sample_labels(labels, coarse_affine, coarse.shape, [tr], antialias=True),  # noqa: E731
                                      voxel_ml)
    transform, _ = resize_transform(SubjectFlows(labels), target_ml, measure, tol=tol)
    shape = labels.array.shape
    return (image.with_array(sample_image(image, image.affine, shape, [transform])),
            labels.with_array(sample_labels(labels, labels.affine, shape, [transform], antialias=False)))


@dataclass(frozen=True)
class CorpusJob:
    """What every case of one corpus build shares (picklable, for worker processes)."""

    out_dir: str
    description: str
    split: str
    seed: int
    volumes: str
    grid: str
    contrast: str
    names: tuple[str, ...]
    paths: tuple[str, ...]
    classes: dict | None
    head_texture: float = 0.0
    acquisition: str = "varied"
    fov: str = "head"
    ignore_band: int = 0

    def build(self, indices: list[int]) -> list[int]:
        """Write the cases `indices` (one subject's, ideally) that are not written yet."""
        writer = NnUNetDatasetWriter(self.out_dir, self.description, ignore_band=self.ignore_band)
        sample_volume = parse_volumes(self.volumes)
        test = self.split == "holdout"
        flows: SubjectFlows | None = None
        real_image: Volume | None = None
        for i in indices:
            case_id = f"{self.split}_{i:04d}"
            if writer.has_case(case_id, test):
                continue
            k = i % len(self.names)
            rng = np.random.default_rng([self.seed, i])
            target = sample_volume(rng)
            source = load_subject(self.paths[k])
            if flows is None or flows.labels is not source:
                flows = SubjectFlows(source)
                real_image = load_subject_image(self.paths[k]) if self.contrast == "real" else None
            t0 = time.time()
            # the per-case choices of the "mixed" options draw from streams of their own, so that the
            # cases of a build without them stay as they were
            choice_rng = np.random.default_rng([self.seed, i, 1])
            contrast = draw_choice(self.contrast, choice_rng, ("t1", "random"))
            acquisition = draw_choice(self.acquisition, choice_rng, tuple(ACQUISITIONS))
            fov = draw_fov(self.fov, choice_rng)
            spec = replace(ACQUISITIONS[acquisition], contrast=contrast, head_texture=self.head_texture)
            case = make_case(source, GRIDS[self.grid], target, rng, spec, self.classes, flows, real_image)
            image = apply_fov(case.image.array, case.generation.array, case.image.affine, fov,
                              np.random.default_rng([self.seed, i, 2]))
            info = {"subject": self.names[k], "split": self.split, "seed": self.seed, "index": i, **case.info,
                    "acquisition": acquisition, "fov": fov, "seconds": round(time.time() - t0, 2)}
            case.image = case.image.with_array(image)
            writer.add_case(case_id, case.image, case.segmentation, info, test=test)
        return indices


def build_corpus(out_dir: str | Path, n: int, volumes: str = "uniform:5:300", seed: int = 0,
                 split: str = "train", grid: str = "paper", contrast: str = "t1",
                 label_dir: str | Path | None = None, priors_dir: str | Path | None = None,
                 callback: Callback | None = None, quiet: bool = False, workers: int = 1,
                 head_texture: float = 0.0, acquisition: str | None = None, fov: str = "head",
                 force: bool = False, ignore_band: int = 0) -> dict:
    """Write `n` cases of `split` subjects as an nnU-Net v2 raw dataset in `out_dir`.

    Cases cycle through the split's subjects; case i uses seed (seed, i), so a resumed build skips
    finished cases and reproduces the rest exactly, whatever the number of `workers` (processes, each
    taking one subject's cases at a time). Hold-out cases go to imagesTs/labelsTs. `head_texture`:
    see `RenderSpec` (rendered contrasts only). `acquisition`: a key of `ACQUISITIONS` or "mixed" (drawn
    per case); by default "clean" for the real contrast, "varied" for rendered ones. `contrast` "mixed"
    draws t1 or random per case. `fov`: one of `fov.FOVS` (whole head, skull-stripped, defaced,
    cropped) or "mixed" (drawn per case with `fov.MIXED_WEIGHTS`). A folder built with other settings is
    refused unless `force` (see `NnUNetDatasetWriter.claim`). `ignore_band` (voxels, `contrast` "real"
    only, whose labels another segmenter drew): the training labels' ventricle boundary is marked
    nnU-Net's "ignore" that wide on either side (`nnunet.uncertain_boundary`).
    """
    if grid not in GRIDS:
        raise InputError("grid", f"unknown grid '{grid}' (choose from {', '.join(GRIDS)})")
    if split not in ("train", "holdout"):
        raise InputError("split", f"unknown split '{split}' (use train or holdout)")
    if n < 1:
        raise InputError("n", "need at least one case")
    if contrast not in CONTRASTS:
        raise InputError("contrast", f"unknown contrast '{contrast}' (choose from {', '.join(CONTRASTS)})")
    if not 0 <= head_texture <= 2 or (head_texture and contrast == "real"):
        raise InputError("head_texture", f"{head_texture:g}: use 0-2, and only with a rendered contrast")
    if ignore_band and contrast != "real":
        raise InputError("ignore_band", f"{ignore_band}: only for --contrast real (labels drawn by another segmenter)")
    if not 0 <= ignore_band <= 3:
        raise InputError("ignore_band", f"{ignore_band}: use 0-3 voxels")
    default_acquisition = "clean" if contrast == "real" else "varied"
    acquisition = acquisition or default_acquisition
    if acquisition != "mixed":
        acquisition_spec(acquisition)
    check_fov(fov)
    parse_volumes(volumes)
    subjects = list_subjects(label_dir)
    names = split_subjects(label_dir)[split]
    if not names:
        raise InputError(label_dir or "label maps", f"no {split} subjects")
    if contrast == "real":
        for s in names:
            load_subject_image(subjects[s])  # every subject needs its T1: fail before writing anything
    job = CorpusJob(str(out_dir), f"ventkit corpus: {split} subjects, volumes {volumes}, grid {grid}, "
                                  f"contrast {contrast}, seed {seed}"
                                  + (f", head texture {head_texture:g}" if head_texture else "")
                                  + (f", {acquisition} acquisition" if acquisition != default_acquisition else "")
                                  + (f", field of view {fov}" if fov != "head" else "")
                                  + (f", boundary ignored {ignore_band} voxel(s) either side" if ignore_band else ""),
                    split, seed, volumes, grid, contrast,
                    tuple(names), tuple(str(subjects[s]) for s in names),
                    load_generation_classes(priors_dir or default_priors_dir(label_dir))
                    if contrast in ("random", "mixed") else None, head_texture, acquisition, fov, ignore_band)
    writer = NnUNetDatasetWriter(out_dir, job.description, ignore_band=ignore_band)
    settings = {"split": split, "seed": seed, "volumes": volumes, "grid": grid, "contrast": contrast,
                "head_texture": head_texture, "acquisition": acquisition, "fov": fov, "subjects": names}
    writer.claim({**settings, "ignore_band": ignore_band} if ignore_band else settings, force)
    # One chunk per subject, so that each subject's ventricle flows are integrated once per chunk.
    chunks = [[i for i in range(n) if i % len(names) == k] for k in range(min(n, len(names)))]
    try:
        if workers <= 1:
            for i in track([i for chunk in chunks for i in chunk], n, f"corpus {split}", callback, quiet):
                job.build([i])
        else:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers) as pool:
                for _ in track(pool.imap_unordered(job.build, chunks), len(chunks), f"corpus {split} (subjects)",
                               callback, quiet):
                    pass
    finally:
        writer.remove_partial()  # temporary files of cases cut off by a cancel or a killed worker
    return writer.finish(Path(out_dir).name)
