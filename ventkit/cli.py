"""`ventkit` command line: parse arguments, call the API, print results."""
from __future__ import annotations

import argparse
import csv
import io as _io
import json
import os
import signal
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from . import arguments as A
from .errors import InputError, VentkitError, VentkitWarning
from .progress import check_terminated, clear_termination, request_termination


def cmd_volumes(args) -> None:
    from .io import read_volume
    from .volumetry import volume_report

    report = volume_report(read_volume(args.labelmap, labels=True))
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    elif args.csv:
        row = {"source": report.source, **report.row(structures=True)}
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
        print(buf.getvalue(), end="")
    else:
        print(report.text())


def cmd_segment(args) -> None:
    from .segmentation.segment import check_uncertainty, load_segmenter, output_stems, segment_file

    segmenter = load_segmenter(args.model, args.device, folder=args.model_dir, keep_islands=args.keep_islands)
    if args.uncertainty:
        check_uncertainty(segmenter)
    for image, stem in zip(args.images, output_stems(args.images)):
        result = segment_file(image, args.out, segmenter, args.uncertainty, stem)
        print(f"{image} ({segmenter.description})")
        print(result.report.text())
        for warning in result.report.warnings:
            print(f"warning: {warning}")
        print("wrote " + ", ".join(str(p) for p in result.files.values()))


def cmd_batch(args) -> None:
    from .segmentation.segment import check_uncertainty, load_segmenter, segment_folder

    segmenter = load_segmenter(args.model, args.device, folder=args.model_dir)
    if args.uncertainty:
        check_uncertainty(segmenter)
    n = segment_folder(args.folder, args.out, args.csv, segmenter, quiet=False, uncertainty=args.uncertainty)
    print(f"segmented {n} scans of {args.folder} ({segmenter.description}); volumes in {args.csv}")


def cmd_change(args) -> None:
    from .change import compare_visits
    from .segmentation.segment import load_segmenter

    segmenter = load_segmenter(args.model, args.device, folder=args.model_dir)
    result = compare_visits(args.baseline, args.followup, args.out, segmenter)
    print(f"{args.baseline} -> {args.followup} ({segmenter.description}; registration match "
          f"{result['registration']['match']:.2f})")
    print(f"{'structure':<24}{'baseline mL':>14}{'follow-up mL':>15}{'change mL':>17}{'change %':>10}")
    for r in result["structures"]:
        print(f"{r['structure'].replace('_', ' '):<24}{r['baseline_ml']:8.2f} ±{r['baseline_sd_ml']:4.1f}"
              f"{r['followup_ml']:9.2f} ±{r['followup_sd_ml']:4.1f}{r['change_ml']:+10.2f} ±{r['change_sd_ml']:4.1f}"
              f"{r['change_percent']:+9.1f}%" + ("  changed" if r["changed"] else ""))
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    print("wrote " + ", ".join(str(p) for p in result["files"].values()))


def cmd_models(args) -> None:
    from .evaluation import card_results, real_mri_results
    from .models import read_card
    from .segmentation.segment import BASELINE_MODELS, DEFAULT_MODEL, model_folder, shipped_models

    cards = {m: read_card(model_folder(m)) for m in shipped_models()}
    if args.results:
        print(card_results(cards) + "\n" + real_mri_results(cards), end="")
        return
    for name, card in cards.items():
        holdout = card.get("metrics", {}).get("holdout", {})
        role = "default" if name == DEFAULT_MODEL else "baseline, not for patients" if name in BASELINE_MODELS else ""
        print(f"{name:<18}{role:<28}" + (f"hold-out MAE {holdout['mae_ml']:.2f} mL, Dice {holdout['dice']:.3f}"
                                         if holdout else "no hold-out figures") + f"  ({model_folder(name)})")


def cmd_install_samseg(args) -> None:
    from .segmentation.references import install_samseg, samseg_venv

    print(f"installing SAMSEG into {samseg_venv()} (its own environment: it needs numpy<2)...")
    print(f"ready: {install_samseg()}")


def cmd_render(args) -> None:
    import numpy as np

    from .anatomy.render import RenderSpec, load_generation_classes, render
    from .io import read_volume, write_volume
    from .preview import save_preview

    labels = read_volume(args.labelmap, labels=True)
    classes = load_generation_classes(args.priors) if args.contrast == "random" else None
    spec = RenderSpec(contrast=args.contrast, thickness_mm=(args.thickness, args.thickness))
    image, params = render(labels.array, labels.spacing, np.random.default_rng(args.seed), spec, classes)
    out = write_volume(labels.with_array(image), args.out)
    print(f"wrote {out} ({', '.join(f'{k}={v}' for k, v in params.items())})")
    if args.preview:
        print(f"wrote {save_preview(args.preview, labels.with_array(image), labels)}")


def cmd_resize(args) -> None:
    import numpy as np

    from .anatomy.corpus import make_labels
    from .anatomy.grid import GRIDS, Grid
    from .anatomy.render import RenderSpec, render
    from .anatomy.subjects import load_subject
    from .io import write_volume
    from .labels import to_segmentation
    from .preview import save_preview
    from .volumetry import volume_report

    source = load_subject(str(args.labelmap))
    grid = GRIDS[args.grid] if args.grid != "native" else Grid(source.array.shape, tuple(source.spacing))
    rng = np.random.default_rng(args.seed)
    before = volume_report(source).total_ml
    generation, info = make_labels(source, grid, args.volume, rng, deformation=None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.labelmap).name.split(".")[0]
    seg = generation.with_array(to_segmentation(generation.array))
    image, _ = render(generation.array, grid.spacing, rng, RenderSpec(thickness_mm=(1.0, 1.0)))
    write_volume(seg, out / f"{stem}_labels.nii.gz", dtype="int16")
    write_volume(seg.with_array(image), out / f"{stem}_t1.nii.gz")
    save_preview(out / f"{stem}_preview.png", seg.with_array(image), seg,
                 title=f"{stem}: ventricles {before:.1f} -> {info['measured_ml']:.1f} mL")
    report = volume_report(seg)
    print(f"ventricles before {before:.1f} mL, requested {args.volume:.1f} mL, got {report.total_ml:.1f} mL")
    for key, value in report.ventricles_ml.items():
        print(f"  {key.replace('_', ' '):<24}{value:8.2f} mL")
    print(f"wrote {out}/{stem}_labels.nii.gz, {stem}_t1.nii.gz, {stem}_preview.png")


def cmd_corpus_label_real(args) -> None:
    from .anatomy.appearance import known_real_t1s, label_real_t1s
    from .io import stem_of
    from .segmentation.segment import load_segmenter

    images = {stem_of(Path(p)): p for p in args.images} or known_real_t1s()
    if not images:
        raise InputError("images", "no T1 given and none found (pip install nilearn; apt install mricron-data)")
    samseg = load_segmenter("samseg")
    for name, path in images.items():
        print(f"{name}: {path} -> {samseg.description} (minutes per scan)")
    for path in label_real_t1s(images, args.out, samseg):
        print(f"wrote {path}")


def cmd_corpus_build(args) -> None:
    from .anatomy.corpus import build_corpus

    volumes = args.volumes or ("uniform:100:300" if args.split == "holdout" else "uniform:5:300")
    dataset = build_corpus(args.out, args.n, volumes, args.seed, args.split, args.grid, args.contrast,
                           args.labels, args.priors, workers=args.workers, head_texture=args.head_texture,
                           acquisition=args.acquisition, fov=args.fov, force=args.force,
                           ignore_band=args.ignore_band)
    print(f"wrote {dataset['numTraining']} training and {dataset['numTest']} test cases to {args.out}")


def _loop_settings(args):
    from .training.loop import LoopSettings

    return LoopSettings(max_steps=args.steps, minutes=args.minutes, checkpoint_minutes=args.checkpoint_minutes,
                        preview_every=args.preview_every)


def _optim(args) -> dict:
    """Batch size and learning rate where given; else each stage's own default."""
    return {k: v for k, v in (("batch_size", args.batch), ("lr", args.lr)) if v is not None}


def cmd_train_pack(args) -> None:
    from .training.mask_data import MaskDataset

    data = MaskDataset(args.data, images=args.images)
    path = data.pack(args.out)
    print(f"wrote {path}: {len(data)} maps{' with images' if args.images else ''}, "
          f"{path.stat().st_size / 2 ** 20:.1f} MiB")


def cmd_train_slim(args) -> None:
    from .training.loop import Run, slim_checkpoint

    path = slim_checkpoint(Run(args.run), args.out)
    print(f"wrote {path} ({path.stat().st_size / 2 ** 20:.1f} MiB, fp16, no optimizer state)")


def cmd_train_generators(args) -> None:
    from .training.generators import STAGES, train_generators

    steps = dict(zip(STAGES, args.steps))
    reached = train_generators(args.data, args.image_data, args.runs, args.minutes, steps, args.device,
                               args.checkpoint_minutes)
    print(f"stages reached: {reached}; checkpoints under {args.runs}")


def cmd_train_mask_ae(args) -> None:
    from .training.mask import train_mask_ae
    from .training.mask_data import MaskDataset

    data = MaskDataset(args.data)
    step = train_mask_ae(data, args.run, _loop_settings(args), device=args.device, **_optim(args))
    print(f"mask autoencoder: step {step} of {args.steps} on {len(data)} maps; checkpoint in {args.run}")


def cmd_train_mask_ldm(args) -> None:
    from .training.mask import train_mask_ldm
    from .training.mask_data import MaskDataset

    data = MaskDataset(args.data)
    step = train_mask_ldm(data, args.ae_run, args.run, _loop_settings(args), device=args.device, **_optim(args))
    print(f"mask diffusion model: step {step} of {args.steps} on {len(data)} maps; checkpoint in {args.run}")


def cmd_train_image_ae(args) -> None:
    from .synthesis.image_model import ImageModelConfig
    from .training.image import run_image_config, train_image_ae
    from .training.mask_data import MaskDataset

    requested = None
    if args.grid or args.ae_channels:
        default = ImageModelConfig()
        requested = ImageModelConfig(grid=args.grid or default.grid,
                                     ae_channels=tuple(args.ae_channels or default.ae_channels))
    cfg = run_image_config(args.run, requested)
    data = MaskDataset(args.data, grid=cfg.grid, images=True)
    step = train_image_ae(data, args.run, _loop_settings(args), cfg=cfg, device=args.device,
                          spectral_weight=args.spectral_weight, **_optim(args))
    print(f"image autoencoder: step {step} of {args.steps} on {len(data)} pairs; checkpoint in {args.run}")


def cmd_train_image_ldm(args) -> None:
    from .training.image import run_image_config, train_image_ldm
    from .training.mask_data import MaskDataset

    cfg = run_image_config(args.ae_run)
    if run_image_config(args.run, cfg) != cfg:  # a resumed run on another autoencoder's config is refused
        raise InputError(args.run, "was started on another autoencoder")
    data = MaskDataset(args.data, grid=cfg.grid, images=True)
    variants = {} if args.appearance_variants is None else {"variants": args.appearance_variants}
    step = train_image_ldm(data, args.ae_run, args.run, _loop_settings(args), cfg=cfg, device=args.device,
                           **variants, **_optim(args))
    print(f"image diffusion model: step {step} of {args.steps} on {len(data)} pairs; checkpoint in {args.run}")


def cmd_train_image_decoder(args) -> None:
    from .training.image import image_base, train_image_decoder
    from .training.mask_data import MaskDataset

    data = MaskDataset(args.data, grid=image_base(args.base)["config"]["grid"], images=True)
    variants = {} if args.appearance_variants is None else {"variants": args.appearance_variants}
    if args.latent_noise is not None:
        variants["latent_noise"] = args.latent_noise
    step = train_image_decoder(data, args.base, args.run, _loop_settings(args), device=args.device,
                               **variants, **_optim(args))
    print(f"image decoder: step {step} of {args.steps} on {len(data)} pairs; checkpoint in {args.run}")


def cmd_export_generator(args) -> None:
    from .synthesis.image_generator import export_image_weights
    from .synthesis.image_model import ImageModelConfig
    from .synthesis.mask_generator import export_weights
    from .synthesis.mask_model import MaskModelConfig
    from .training.latent import diffusion_weights
    from .training.loop import Run

    if args.decoder_run:
        return _export_tuned_decoder(args)
    if not (args.ae_run and args.ldm_run):
        raise InputError("--ae-run/--ldm-run", "both are needed (or, for the image generator, --decoder-run)")
    export, config = ((export_weights, MaskModelConfig) if args.generator == "mask"
                      else (export_image_weights, ImageModelConfig))
    ae, ldm = Run(args.ae_run).load(), Run(args.ldm_run).load()
    if ae is None or ldm is None:
        raise VentkitError("both --ae-run and --ldm-run need a checkpoint.pt")
    card = {"training": {"autoencoder_steps": ae["step"], "diffusion_steps": ldm["step"], "data": args.data_note,
                         "final_losses": {"autoencoder": Run(args.ae_run).recent_losses(),
                                          "diffusion": Run(args.ldm_run).recent_losses()}},
            **_card_metrics(args.metrics, f"{args.generator}_generator")}
    path = export(ldm["autoencoder"], diffusion_weights(ldm), config.from_dict(ldm["config"]), ldm["scale_factor"],
                  args.out, card)
    print(f"wrote {path} and its model card")


def _export_tuned_decoder(args) -> None:
    """export-image --decoder-run: the tuned decoder's base generator (a run or a shipped folder) with it."""
    from .synthesis.image_generator import export_image_weights
    from .synthesis.image_model import ImageModelConfig
    from .training.image import image_base, with_tuned_decoder
    from .training.loop import Run

    decoder = Run(args.decoder_run).load()
    if decoder is None or "base" not in decoder:
        raise VentkitError(f"{args.decoder_run}: no checkpoint.pt of `ventkit train image-decoder`")
    base = image_base(decoder["base"])
    autoencoder = with_tuned_decoder(base, decoder)  # checked before anything is written
    training = dict(base["training"])  # a tuned generator as base: its rounds come first
    training["decoder_tuning"] = [*training.get("decoder_tuning", []),
                                  {"steps": decoder["step"], "latent_noise": decoder["latent_noise"],
                                   "final_losses": Run(args.decoder_run).recent_losses()}]
    if args.data_note:
        training["data"] = args.data_note
    card = {"training": training, **_card_metrics(args.metrics, "image_generator")}
    path = export_image_weights(autoencoder, base["unet"], ImageModelConfig.from_dict(base["config"]),
                                base["scale_factor"], args.out, card)
    print(f"wrote {path} and its model card (decoder of {args.decoder_run}, the rest of {decoder['base']})")


def cmd_calibrate_mask(args) -> None:
    from .synthesis.mask_generator import CALIBRATION_FILE
    from .training.mask_calibration import calibrate

    cal = calibrate(args.model, args.seeds, args.points, args.guidance, args.steps, args.device, args.data, args.grids)
    for label, (target, before, after) in cal.get("label_offset_fit", {}).get("mean_voxels", {}).items():
        print(f"label {label:>3}: offset {cal['label_offsets'][label]:+.2f}; mean voxels: training {target:.0f}, "
              f"drawn {before:.0f} -> {after:.0f}")
    by_grid = cal.get("generated_ml_by_grid", {})
    for i, (c, g) in enumerate(zip(cal["condition_ml"], cal["generated_ml"])):
        print(f"condition {c:7.1f} mL -> median generated {g:7.1f} mL"
              + "".join(f", on the {name} grid {curve[i]:7.1f} mL" for name, curve in by_grid.items()))
    print(f"wrote {Path(args.model) / CALIBRATION_FILE} (guidance {args.guidance:g}); the card checksums it")


def cmd_evaluate(args) -> None:
    from .evaluation import HOLDOUT_RECIPE, build_holdout, holdout_cases, run_evaluation, write_results
    from .segmentation.references import InstalledSynthSeg
    from .segmentation.segment import SYNTHSEG_RECIPE, load_segmenter

    segmenters = {}  # every model is loaded (and refused) before the hold-out is rendered
    for m in args.models:  # `synthseg` is SynthSeg itself when installed, else the recipe baseline: say which
        seg = load_segmenter(m, args.device)
        segmenters[SYNTHSEG_RECIPE if m == "synthseg" and not isinstance(seg, InstalledSynthSeg) else m] = seg
    for spec in args.model_dir or []:
        name, _, folder = spec.partition("=")
        segmenters[name] = load_segmenter(name, args.device, folder=folder)
    uncertain = tuple(segmenters) if args.uncertainty == [] else tuple(args.uncertainty or ())
    if set(uncertain) - set(segmenters):
        raise InputError("--uncertainty", f"{', '.join(sorted(set(uncertain) - set(segmenters)))} is not among the "
                                          f"evaluated models ({', '.join(segmenters)})")
    folders = build_holdout(args.holdout, label_dir=args.labels, priors_dir=args.priors, scale=args.scale,
                            grid=args.grid)
    cases = holdout_cases(folders)
    print(f"hold-out: {len(cases)} cases in {', '.join(HOLDOUT_RECIPE)} under {args.holdout}")
    rows = run_evaluation(cases, segmenters, cache_dir=Path(args.out) / "cases", uncertainty=uncertain)
    files = write_results(rows, args.out)
    print(files["table"].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in files.values()))


def cmd_calibrate_uncertainty(args) -> None:
    from .training.uncertainty import calibrate_uncertainty

    fitted = calibrate_uncertainty(args.model, args.data, args.cases, args.device, args.passes)
    print(f"{args.model}: raw SD {fitted['mean_raw_sd_ml']:.2f} mL covered {100 * fitted['raw_within_2sd']:.0f} % "
          f"of the errors at ±2 SD (MAE {fitted['mae_ml']:.2f} mL); sd_scale {fitted['sd_scale']} written to its cards")


def cmd_train_segment(args) -> None:
    from .training.segmenter import train_segmenter

    r = train_segmenter(args.data, args.run, args.name, args.minutes, args.epochs, args.iterations, args.device,
                        args.init_from)
    state = "finished" if r["finished"] else "paused (resume with the same command)"
    print(f"segmenter {args.name}: epoch {r['epoch']} of {args.epochs}, {state}; nnU-Net folder {r['folder']}")


BENCHES = {"mask": "mask_volume_control.py", "image": "image_fidelity.py"}


def _card_metrics(paths, name: str, references=()) -> dict:
    """{"metrics": ...} from the JSON files of `ventkit evaluate` / the benchmarks: their `name` entries, with
    the real-MRI figures of the `references` (e.g. samseg, measured on the same cases) under
    `real_mri.references`."""
    metrics, found_refs = {}, {}
    for path in paths or []:
        data = json.loads(Path(path).read_text())
        if data.get(name) is None:
            raise InputError(path, f"holds no metrics for model '{name}'")
        metrics.update(data[name])
        found_refs.update({r: data[r]["real_mri"] for r in references if "real_mri" in data.get(r, {})})
    missing = set(references) - set(found_refs)
    if missing:
        raise InputError(", ".join(map(str, paths)), f"hold no real-MRI figures of {', '.join(sorted(missing))}")
    if found_refs:
        if "real_mri" not in metrics:
            raise InputError(", ".join(map(str, paths)), f"hold no real-MRI figures of '{name}' to compare with")
        metrics["real_mri"] = {**metrics["real_mri"], "references": found_refs}
    return {"metrics": metrics} if metrics else {}


def cmd_export_segment(args) -> None:
    from .training.segmenter import export_segmenter

    card = {"name": args.name, "training_data": args.data_note, "limitations": args.limitations,
            **_card_metrics(args.metrics, args.name)}
    out = export_segmenter(args.run, args.out, card, allow_unfinished=args.allow_unfinished, average=args.average)
    print(f"wrote {out} (nnU-Net layout, fp16 weights, model card)")


def cmd_segment_metrics(args) -> None:
    from .training.segmenter import restate_metrics

    restate_metrics(args.model, _card_metrics(args.metrics, args.name, args.references)["metrics"], args.note)
    print(f"wrote the metrics of '{args.name}' into the cards of {args.model}")


def cmd_synth_mask(args) -> None:
    from .io import write_volume
    from .preview import save_preview
    from .synthesis.mask_generator import MaskGenerator

    gen = MaskGenerator(args.model, device=args.device)
    out = Path(args.out)
    for i, lab in enumerate(gen.sample(args.volume, args.n, args.seed, args.guidance, args.steps)):
        name = f"mask_{args.volume:g}ml_seed{args.seed + i}"  # map i is the map of seed + i
        write_volume(lab, out / f"{name}.nii.gz", dtype="int16")
        save_preview(out / f"{name}.png", labels=lab)
        print(f"{name}: requested {args.volume:.1f} mL, generated {gen.ventricle_ml(lab):.1f} mL")


def cmd_synth_pair(args) -> None:
    from .synthesis.pairs import write_pair

    synth = _load_synthesizer(args)
    for i in range(args.n):
        pair = synth.sample(args.volume, args.seed, i)
        stem = f"pair_{args.volume:g}ml_seed{args.seed}_{i}"
        files = write_pair(pair, args.out, stem)
        got = json.loads(files["info"].read_text())["ventricles_ml"]["total"]
        print(f"{stem}: subject {pair.info['subject']}, requested {args.volume:.1f} mL, got {got:.1f} mL")
        print("wrote " + ", ".join(str(p) for p in files.values()))


def cmd_synth_dataset(args) -> None:
    from .synthesis.dataset import build_synthetic_dataset

    synth = _load_synthesizer(args)
    dataset = build_synthetic_dataset(synth, args.out, args.n, args.volumes, args.seed, force=args.force)
    print(f"wrote {dataset['numTraining']} cases to {args.out} (cases.csv: requested vs measured mL; volumes.png)")


def cmd_synth_image(args) -> None:
    from .io import read_volume, write_volume
    from .preview import save_preview
    from .synthesis.image_generator import ImageGenerator

    labels = read_volume(args.labelmap, labels=True)
    image = ImageGenerator(args.model, device=args.device).sample(labels, args.seed, args.steps)
    print(f"wrote {write_volume(image, args.out, dtype='float32')}")
    if args.preview:
        print(f"wrote {save_preview(args.preview, image, labels)}")


def build_parser() -> argparse.ArgumentParser:
    from .anatomy.grid import GRIDS
    from .segmentation.segment import MODELS

    p = argparse.ArgumentParser(prog="ventkit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("volumes", help="ventricle and structure volumes (mL) of a label map")
    v.add_argument("labelmap")
    fmt = v.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    v.set_defaults(func=cmd_volumes)

    r = sub.add_parser("render", help="render a synthetic MRI from a label map (SynthSeg-style)")
    r.add_argument("labelmap")
    r.add_argument("--out", required=True, type=A.output_file, help="output image (.nii.gz or .nrrd)")
    r.add_argument("--contrast", choices=("t1", "random"), default="t1")
    r.add_argument("--thickness", type=A.positive, default=1.0, help="slice thickness in mm (1-6)")
    r.add_argument("--seed", type=A.seed, default=0)
    r.add_argument("--priors", help="folder with SynthSeg generation_labels/classes .npy (random contrast)")
    r.add_argument("--preview", help="also write a PNG preview here")
    r.set_defaults(func=cmd_render)

    z = sub.add_parser("resize", help="resize the ventricles of a label map; write labels, T1 and preview")
    z.add_argument("labelmap")
    z.add_argument("--volume", type=A.ventricle_ml, required=True, help="target total ventricle volume (mL, 5-300)")
    z.add_argument("--out", required=True, type=A.output_folder, help="output folder")
    z.add_argument("--grid", choices=("native", *GRIDS), default="native")
    z.add_argument("--seed", type=A.seed, default=0)
    z.set_defaults(func=cmd_resize)

    g = sub.add_parser("segment", help="segment the ventricles of scans; write labels and volumes")
    g.add_argument("images", nargs="+", type=A.scan, help="NIfTI, NRRD or FreeSurfer .mgz scans, or DICOM folders")
    g.add_argument("--out", required=True, type=A.output_folder, help="output folder")
    g.add_argument("--model", help="augmented (default; until it is shipped, the best shipped model), real, "
                                    "synthetic, synthseg (mri_synthseg where installed, else the recipe baseline), samseg or "
                                    "synthseg_recipe (ventkit's SynthSeg-recipe baseline)")
    g.add_argument("--model-dir", type=A.model_folder, help="an nnU-Net model folder to use instead of a shipped model")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument("--keep-islands", action="store_true",
                   help="keep every connected component (default: only the largest of each ventricle)")
    g.add_argument("--uncertainty", action="store_true",
                   help="report each volume as mean ± SD over test-time mirrored passes (about 4x slower)")
    g.set_defaults(func=cmd_segment)

    bt = sub.add_parser("batch", help="segment every scan of a folder; one CSV row of volumes per scan")
    bt.add_argument("folder", type=A.model_folder, help="folder of NIfTI, NRRD or MGZ scans")
    bt.add_argument("--out", required=True, type=A.output_folder, help="folder for the label maps and reports")
    bt.add_argument("--csv", required=True, type=A.output_file, help="the volumes of every scan")
    bt.add_argument("--model", help="as for segment")
    bt.add_argument("--model-dir", type=A.model_folder, help="an nnU-Net model folder instead of a shipped model")
    bt.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    bt.add_argument("--uncertainty", action="store_true", help="also each volume's SD (about 4x slower)")
    bt.set_defaults(func=cmd_batch)

    ch = sub.add_parser("change", help="ventricular volume change between two visits of one patient, with its "
                                       "uncertainty")
    ch.add_argument("baseline", type=A.scan, help="the earlier scan")
    ch.add_argument("followup", type=A.scan, help="the later scan (any grid, orientation or contrast)")
    ch.add_argument("--out", required=True, type=A.output_folder, help="output folder")
    ch.add_argument("--model", help="augmented (default), real or synthetic")
    ch.add_argument("--model-dir", type=A.model_folder, help="an nnU-Net model folder instead of a shipped model")
    ch.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ch.set_defaults(func=cmd_change)

    mo = sub.add_parser("models", help="the shipped segmenters and their measured accuracy (from their model cards)")
    mo.add_argument("--results", action="store_true", help="the hold-out and real-MRI tables in Markdown (the README's)")
    mo.set_defaults(func=cmd_models)
    i = sub.add_parser("install-samseg", help="install FreeSurfer's SAMSEG (PyPI samseg) in an environment of its own")
    i.set_defaults(func=cmd_install_samseg)

    ev = sub.add_parser("evaluate", help="the paper's experiment: every model on the hold-out subjects")
    ev.add_argument("--holdout", required=True, type=A.output_folder, help="hold-out folder (rendered here first if missing)")
    ev.add_argument("--out", required=True, type=A.output_folder, help="where the table, per-case CSV and plots go")
    ev.add_argument("--models", nargs="*", choices=MODELS, default=["augmented", "real", "synthetic", "synthseg"])
    ev.add_argument("--model-dir", action="append", metavar="NAME=FOLDER", help="also evaluate this nnU-Net folder")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ev.add_argument("--labels", help="folder of label maps (default: $VENTKIT_DATA or ../shared/...)")
    ev.add_argument("--priors", help="SynthSeg priors folder (random-contrast cases; default: beside the maps)")
    ev.add_argument("--scale", type=A.positive, default=1.0, help="scale the number of hold-out cases")
    ev.add_argument("--uncertainty", nargs="*", metavar="MODEL",
                    help="also give these models' volumes an SD (all of VentSegment's without a name) and print how "
                         "often the truth lies within ±2 SD")
    ev.add_argument("--grid", choices=tuple(GRIDS), default="paper")
    ev.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("corpus", help="the anatomy corpus")
    csub = c.add_subparsers(dest="corpus_command", required=True)
    b = csub.add_parser("build", help="write an nnU-Net v2 raw dataset of rendered, resized label maps")
    b.add_argument("--labels", help="folder of label maps (default: $VENTKIT_DATA or ../shared/...)")
    b.add_argument("--out", required=True, type=A.output_folder)
    b.add_argument("--n", type=A.count, required=True)
    b.add_argument("--volumes", type=A.volume_spec, help="uniform:A:B, a list 15,30,60, or natural "
                                     "(default: uniform:5:300 for train, uniform:100:300 for holdout)")
    b.add_argument("--seed", type=A.seed, default=0)
    b.add_argument("--split", choices=("train", "holdout"), default="train")
    b.add_argument("--grid", choices=tuple(GRIDS), default="paper")
    b.add_argument("--contrast", choices=("t1", "random", "mixed", "real"), default="t1",
                   help="rendered T1, SynthSeg's random contrast, either drawn per case (mixed), or each "
                        "subject's own real T1 (a folder written by `corpus label-real`)")
    b.add_argument("--priors", help="SynthSeg priors folder (for --contrast random; default: beside the label maps)")
    b.add_argument("--workers", type=A.count, default=1, help="worker processes (one subject at a time each)")
    b.add_argument("--head-texture", type=float, default=0.0,
                   help="SD of a smooth log-normal field on the extra-cerebral labels' intensities "
                        "(0: one flat intensity per label; VentSegment's textured training sets use 0.7)")
    b.add_argument("--acquisition", help="varied (thick slices, strong bias field and noise, SynthSeg-style; the "
                                         "default for rendered contrasts) or clean (1 mm, mild bias and noise; "
                                         "the default for real T1s, and the image generator's training renders), "
                                         "or mixed (either, drawn per case)")
    b.add_argument("--fov", default="head", help="field of view: head (whole head), stripped (skull-stripped "
                                                 "brain), stripped_csf (with a rim of CSF), defaced, cropped, or "
                                                 "mixed (drawn per case; VentSegment's training sets)")
    b.add_argument("--ignore-band", type=int, choices=range(4), default=0, metavar="{0-3}",
                   help="with --contrast real: mark the training labels' ventricle boundary nnU-Net's 'ignore' "
                        "this many voxels either side (its position is the labelling segmenter's convention)")
    b.add_argument("--force", action="store_true", help="--out was built with other settings: delete its cases first")
    b.set_defaults(func=cmd_corpus_build)

    real = csub.add_parser("label-real", help="label real T1s with SAMSEG into a subject folder for --contrast real")
    real.add_argument("images", nargs="*", help="T1 scans (default: the MNI152 template in nilearn and "
                                               "Debian's Colin27, where installed)")
    real.add_argument("--out", required=True, type=A.output_folder, help="subject folder: <name>.nii.gz labels, images/<name>.nii.gz")
    real.set_defaults(func=cmd_corpus_label_real)

    t = sub.add_parser("train", help="resumable, time-budgeted training of the models")
    tsub = t.add_subparsers(dest="train_command", required=True)
    for name, func, batch in (("mask-ae", cmd_train_mask_ae, 1), ("mask-ldm", cmd_train_mask_ldm, 4),
                              ("image-ae", cmd_train_image_ae, 2), ("image-ldm", cmd_train_image_ldm, 2),
                              ("image-decoder", cmd_train_image_decoder, 1)):
        generator, stage = name.split("-")
        a = tsub.add_parser(name, help=f"train the {generator} generator's " + {
            "ae": "autoencoder", "ldm": "diffusion model",
            "decoder": "decoder further, encoder and diffusion model frozen (export-image --decoder-run)"}[stage])
        a.add_argument("--data", nargs="+", required=True,
                       help="corpus folders (ventkit corpus build) and/or .npz files of `train pack`")
        a.add_argument("--run", required=True, type=A.output_folder, help="run folder: checkpoint.pt, loss_log.csv, previews; resumed")
        if name == "image-ae":
            a.add_argument("--grid", choices=sorted(GRIDS), help="model grid of a new run (default mask: 3.3 mm; "
                           "fine: 1.67 x 1.53 x 1.67 mm, with --ae-channels 16 32 64 128 to compress x8)")
            a.add_argument("--ae-channels", type=A.count, nargs="+", metavar="C",
                           help="channels per autoencoder level of a new run (default 16 32 64: x4 compression)")
            a.add_argument("--spectral-weight", type=A.non_negative,
                           help="weight of the FFT-magnitude loss that keeps texture (MONAI JukeboxLoss), kept in the "
                                "checkpoint (default: the run's, 0 for a new run)")
        if stage == "ldm":
            a.add_argument("--ae-run", required=True, help="run folder of the trained autoencoder")
        if stage == "decoder":
            a.add_argument("--base", required=True, help="the generator whose decoder is tuned: a run folder of "
                           "`train image-ldm` or a shipped one (e.g. Resources/Models/image_generator)")
            a.add_argument("--latent-noise", type=float, help="largest SD of Gaussian noise added to the latents "
                           "(robustness to drawn ones; default 0.5)")
        if name in ("image-ldm", "image-decoder"):
            a.add_argument("--appearance-variants", type=A.count, help="acquisitions of each training image (random "
                           "bias field and gamma), so that seeds draw different T1s for one map (default 4)")
        a.add_argument("--steps", type=A.count, default=10000)
        a.add_argument("--minutes", type=A.positive, default=60.0, help="time budget of this call")
        a.add_argument("--checkpoint-minutes", type=A.positive, default=5.0)
        a.add_argument("--preview-every", type=A.count, default=500)
        a.add_argument("--batch", type=A.count, help=f"batch size (default {batch})")
        a.add_argument("--lr", type=A.positive, help="learning rate (default: the stage's own)")
        a.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
        a.set_defaults(func=func)
    k = tsub.add_parser("pack", help="pack corpus folders for the generators into one .npz (for --data)")
    k.add_argument("--data", nargs="+", required=True, help="corpus folders and/or earlier packs")
    k.add_argument("--out", required=True, type=A.output_file, help="FILE.npz; pass it as --data of the generator stages")
    k.add_argument("--images", action="store_true", help="with the images (for the image generator)")
    k.set_defaults(func=cmd_train_pack)
    k = tsub.add_parser("slim", help="a run's checkpoint in fp16 without optimizer state (to carry back from a GPU)")
    k.add_argument("--run", required=True, type=A.output_folder)
    k.add_argument("--out", required=True, type=A.output_file, help="FILE.pt; put it as RUN/checkpoint.pt to resume from it")
    k.set_defaults(func=cmd_train_slim)
    a = tsub.add_parser("generators", help="all five generator stages in order in one time budget "
                                           "(resumable; the entry point for a lent GPU)")
    a.add_argument("--data", nargs="+", required=True, help="corpus folders or packs for the mask generator")
    a.add_argument("--image-data", nargs="*", help="corpus folders or packs with images for the image generator "
                                                   "(without: the mask stages only)")
    a.add_argument("--runs", required=True, type=A.output_folder, help="folder of the five run folders (mask_ae, mask_ldm, ...)")
    a.add_argument("--minutes", type=A.positive, default=60.0, help="time budget of this call, all stages")
    a.add_argument("--steps", type=A.count, nargs=5, default=(12000, 20000, 10000, 20000, 4000), metavar="N",
                   help="step targets of mask_ae, mask_ldm, image_ae, image_ldm, image_decoder")
    a.add_argument("--checkpoint-minutes", type=A.positive, default=5.0)
    a.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    a.set_defaults(func=cmd_train_generators)
    g = tsub.add_parser("segment", help="train a VentSegment nnU-Net (nnU-Net v2 planner/trainer, CPU-sized)")
    g.add_argument("--data", nargs="+", required=True, help="nnU-Net raw datasets to train on (merged)")
    g.add_argument("--run", required=True, type=A.output_folder, help="run folder holding nnU-Net's raw/preprocessed/results; resumed")
    g.add_argument("--name", required=True, help="dataset name, e.g. VentReal")
    g.add_argument("--minutes", type=A.positive, default=60.0, help="time budget of this call")
    g.add_argument("--epochs", type=A.count, default=100)
    g.add_argument("--iterations", type=A.count, default=50, help="iterations per epoch")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument("--init-from", help="nnU-Net checkpoint to start a new run from (output layers excluded)")
    g.set_defaults(func=cmd_train_segment)
    x = tsub.add_parser("export-segment", help="strip and ship a trained segmenter with a model card")
    x.add_argument("--run", required=True, type=A.output_folder)
    x.add_argument("--out", required=True, type=A.output_folder, help="e.g. Resources/Models/ventsegment_augmented")
    x.add_argument("--name", required=True)
    x.add_argument("--data-note", default="", help="what the model was trained on, for the model card")
    x.add_argument("--limitations", default="", help="what the model does not do well, for the model card")
    x.add_argument("--allow-unfinished", action="store_true", help="ship checkpoint_latest.pth")
    x.add_argument("--average", nargs="+", type=A.existing_file, default=[], metavar="CHECKPOINT",
                   help="earlier checkpoints of the run (snapshots of checkpoint_latest.pth): ship the mean of "
                        "their weights and the run's")
    x.add_argument("--metrics", nargs="*", help="metrics.json of `ventkit evaluate` and/or the --json of "
                                                "bench/real_mri.py; this model's entries go into the card")
    x.set_defaults(func=cmd_export_segment)
    m = tsub.add_parser("segment-metrics", help="write new metrics into a shipped segmenter's model cards")
    m.add_argument("--model", required=True, help="e.g. Resources/Models/ventsegment_augmented")
    m.add_argument("--name", required=True, help="the model's entry in the metrics files")
    m.add_argument("--metrics", nargs="+", required=True,
                   help="metrics.json of `ventkit evaluate` and/or the --json of bench/real_mri.py")
    m.add_argument("--note", default="", help="how the metrics were measured (e.g. the postprocessing)")
    m.add_argument("--references", nargs="*", default=[], metavar="NAME",
                   help="also store these segmenters' real-MRI figures (e.g. samseg) beside the model's")
    m.set_defaults(func=cmd_segment_metrics)
    u = tsub.add_parser("calibrate-uncertainty", help="scale a segmenter's test-time SD to its errors (card field)")
    u.add_argument("--model", required=True, help="e.g. Resources/Models/ventsegment_augmented")
    u.add_argument("--data", nargs="+", required=True, help="corpora of training subjects the model did not train on")
    u.add_argument("--cases", type=A.count, default=24, help="how many of their cases to segment")
    u.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    u.add_argument("--passes", type=int, choices=range(2, 9), default=8, metavar="{2-8}",
                   help="test-time passes to calibrate; `--uncertainty` then runs as many (even: mirror-exact)")
    u.set_defaults(func=cmd_calibrate_uncertainty)
    for generator in ("mask", "image"):
        e = tsub.add_parser(f"export-{generator}",
                            help=f"strip and ship the {generator} generator's weights with a model card")
        e.add_argument("--ae-run")
        e.add_argument("--ldm-run")
        e.add_argument("--out", required=True, type=A.output_folder, help=f"e.g. Resources/Models/{generator}_generator")
        e.add_argument("--data-note", default="", help="what the models were trained on, for the model card")
        e.add_argument("--metrics", nargs="*", help=f"--json of bench/{BENCHES[generator]}: "
                                                    "its entries go into the card")
        if generator == "image":
            e.add_argument("--decoder-run", help="run of `train image-decoder`: ship its base generator with the "
                                                 "tuned decoder (no --ae-run/--ldm-run then)")
        e.set_defaults(func=cmd_export_generator, generator=generator, decoder_run=None)

    c = tsub.add_parser("calibrate-mask", help="fit the exported mask generator's volume calibration curve")
    c.add_argument("--model", required=True, help="exported mask generator folder")
    c.add_argument("--seeds", type=A.count, default=8, help="maps per conditioning volume")
    c.add_argument("--points", type=A.count, default=8, help="conditioning volumes, log-spaced over the trained range")
    c.add_argument("--guidance", type=A.positive, default=3.0)
    c.add_argument("--steps", type=A.count, default=50)
    c.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    c.add_argument("--data", nargs="*", help="corpus folders the model was trained on: also fit the label offsets "
                                             "(else the present ones are kept)")
    c.add_argument("--grids", nargs="+", choices=sorted(GRIDS), default=[],
                   help="grids of the model grid's field of view that get volume curves of their own (such as fine, "
                        "the grid of pairs from a fine image generator)")
    c.set_defaults(func=cmd_calibrate_mask)

    s = sub.add_parser("synth", help="synthesize with the shipped generators")
    ssub = s.add_subparsers(dest="synth_command", required=True)
    m = ssub.add_parser("mask", help="whole-brain label maps for a requested ventricle volume")
    m.add_argument("--volume", type=A.ventricle_ml, required=True, help="total ventricle volume in mL")
    m.add_argument("--n", type=A.count, default=1)
    m.add_argument("--seed", type=A.seed, default=0)
    m.add_argument("--guidance", type=A.positive, help="classifier-free guidance (default: the calibrated one)")
    m.add_argument("--steps", type=A.count, help="DDIM steps (default: those of the calibration)")
    m.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    m.add_argument("--model", help="model folder (default: Resources/Models/mask_generator)")
    m.add_argument("--out", required=True, type=A.output_folder)
    m.set_defaults(func=cmd_synth_mask)
    im = ssub.add_parser("image", help="a T1 drawn for a given label map (on its grid and affine)")
    im.add_argument("labelmap")
    im.add_argument("--out", required=True, type=A.output_file, help="output image (.nii.gz or .nrrd)")
    im.add_argument("--seed", type=A.seed, default=0)
    im.add_argument("--steps", type=A.count, default=50, help="DDIM steps")
    im.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    im.add_argument("--model", help="model folder (default: Resources/Models/image_generator)")
    im.add_argument("--preview", help="also write a PNG preview here")
    im.set_defaults(func=cmd_synth_image)
    q = ssub.add_parser("pair", help="T1 + 33-label map pairs for a requested ventricle volume")
    q.add_argument("--volume", type=A.ventricle_ml, required=True, help="total ventricle volume in mL (5-300)")
    q.add_argument("--n", type=A.count, default=1)
    _synthesizer_options(q)
    q.set_defaults(func=cmd_synth_pair)
    d = ssub.add_parser("dataset", help="an nnU-Net v2 raw dataset of synthesized pairs (VentSegment training)")
    d.add_argument("--n", type=A.count, required=True)
    d.add_argument("--volumes", type=A.volume_spec, default="uniform:5:300", help="uniform:A:B or a list 15,30,60 (mL)")
    _synthesizer_options(d)
    d.add_argument("--force", action="store_true", help="--out was built with other settings: delete its cases first")
    d.set_defaults(func=cmd_synth_dataset)
    return p


def _synthesizer_options(q: argparse.ArgumentParser) -> None:
    from .anatomy.grid import GRIDS

    q.add_argument("--seed", type=A.seed, default=0)
    q.add_argument("--backend", choices=("auto", "diffusion", "anatomy"), default="auto",
                   help="auto: the diffusion generators when shipped, else anatomy")
    q.add_argument("--guidance", type=A.positive, help="diffusion: classifier-free guidance scale (default: the "
                                                        "mask generator's calibrated one)")
    q.add_argument("--steps", type=A.count, help="diffusion: DDIM steps (default: those of its calibration)")
    q.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="diffusion: device")
    q.add_argument("--labels", help="anatomy: folder of real label maps (default: $VENTKIT_DATA or ../shared)")
    q.add_argument("--grid", choices=tuple(GRIDS), default="paper", help="anatomy: output grid")
    q.add_argument("--spacing", type=A.positive, help="diffusion: voxel size (mm) of the output, finer than the "
                                                  "model grid (label scores interpolated before the argmax)")
    q.add_argument("--contrast", choices=("t1", "random", "mixed"), default="t1",
                   help="rendered images: T1, SynthSeg's random contrast, or either per pair")
    q.add_argument("--thickness", type=A.slice_mm, nargs=2, default=(1.0, 1.0), metavar=("MIN", "MAX"),
                   help="rendered images: slice thickness range in mm (e.g. 1 6 for training sets)")
    q.add_argument("--priors", help="SynthSeg priors folder (random contrast; default: beside the label maps)")
    q.add_argument("--out", required=True, type=A.output_folder)


def _load_synthesizer(args):
    """The synthesizer that `synth pair` and `synth dataset` options describe."""
    from .anatomy.render import load_generation_classes
    from .anatomy.subjects import default_priors_dir
    from .synthesis.pairs import Appearance, load_synthesizer

    classes = None
    if args.contrast != "t1":
        classes = load_generation_classes(args.priors or default_priors_dir(args.labels))
    appearance = Appearance(args.contrast, tuple(args.thickness), classes)
    synth = load_synthesizer(args.backend, args.labels, args.grid, args.device, args.guidance, args.steps,
                             args.spacing, appearance)
    print(f"backend: {synth.name} ({synth.description})")
    return synth


def _interrupt(signum, frame):
    request_termination()
    raise KeyboardInterrupt


def _default_sigterm_in_child() -> None:
    """A process forked while `_interrupt` is installed (nnU-Net's worker pools) dies on SIGTERM again:
    its handler would run only in its main thread, and a worker blocked on a queue lock whose signal
    went to another thread never ran it, so `Pool.terminate` waited for it forever (a hung test run)."""
    if signal.getsignal(signal.SIGTERM) is _interrupt:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork
    os.register_at_fork(after_in_child=_default_sigterm_in_child)


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (the Slicer panels' Cancel) unwinds like Ctrl-C, so that temporary files are removed;
    the previous handler comes back afterwards (for callers of `main` in the same process)."""
    stops = [signal.SIGTERM] + ([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])  # Windows: CTRL_BREAK
    previous = {s: signal.signal(s, _interrupt) for s in stops}
    try:
        yield
        check_terminated()  # the handler's exception was swallowed after the last loop item
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        clear_termination()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """ventkit's own warnings as one line each ("ventkit: warning: ..."); others as Python shows them."""
    if issubclass(category, VentkitWarning):
        print(f"ventkit: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv=None) -> int:
    """Run one command; returns its exit status (2: bad arguments or input, 130: interrupted)."""
    warnings.showwarning = _show_warning
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the bad argument
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with _terminate_as_interrupt():
            args.func(args)
            sys.stdout.flush()
    except BrokenPipeError:  # `ventkit volumes --json | head -1`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except VentkitError as exc:
        print(f"ventkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ventkit: interrupted; finished files are complete, unfinished ones were not written", file=sys.stderr)
        return 130
    return 0
