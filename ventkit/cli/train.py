"""`ventkit train ...`: resumable training, export and calibration of the generators and segmenters."""
from __future__ import annotations

import json
from pathlib import Path

from .. import arguments as A
from ..errors import InputError, VentkitError


def _loop_settings(args):
    from ..training.loop import LoopSettings

    return LoopSettings(max_steps=args.steps, minutes=args.minutes, checkpoint_minutes=args.checkpoint_minutes,
                        preview_every=args.preview_every)


def _optim(args) -> dict:
    """Batch size and learning rate where given; else each stage's own default."""
    return {k: v for k, v in (("batch_size", args.batch), ("lr", args.lr)) if v is not None}


def cmd_train_pack(args) -> None:
    from ..training.mask_data import MaskDataset

    data = MaskDataset(args.data, images=args.images)
    path = data.pack(args.out)
    print(f"wrote {path}: {len(data)} maps{' with images' if args.images else ''}, "
          f"{path.stat().st_size / 2 ** 20:.1f} MiB")


def cmd_train_slim(args) -> None:
    from ..training.loop import Run, slim_checkpoint

    path = slim_checkpoint(Run(args.run), args.out)
    print(f"wrote {path} ({path.stat().st_size / 2 ** 20:.1f} MiB, fp16, no optimizer state)")


def cmd_slim_segment(args) -> None:
    from ..training.segmenter import SLIM_CHECKPOINT, slim_segmenter

    out = slim_segmenter(args.run, args.out)
    card = json.loads((out / "model_card.json").read_text())
    print(f"wrote {out / SLIM_CHECKPOINT} ({(out / SLIM_CHECKPOINT).stat().st_size / 2 ** 20:.1f} MiB, epoch "
          f"{card['epoch']}) and its card; `train segment --resume-from {out}` goes on from it")


def cmd_train_generators(args) -> None:
    from ..training.generators import STAGES, train_generators

    steps = dict(zip(STAGES, args.steps))
    reached = train_generators(args.data, args.image_data, args.runs, args.minutes, steps, args.device,
                               args.checkpoint_minutes)
    print(f"stages reached: {reached}; checkpoints under {args.runs}")


def cmd_train_mask_ae(args) -> None:
    from ..training.mask import train_mask_ae
    from ..training.mask_data import MaskDataset

    data = MaskDataset(args.data)
    step = train_mask_ae(data, args.run, _loop_settings(args), device=args.device, **_optim(args))
    print(f"mask autoencoder: step {step} of {args.steps} on {len(data)} maps; checkpoint in {args.run}")


def cmd_train_mask_ldm(args) -> None:
    from ..training.mask import train_mask_ldm
    from ..training.mask_data import MaskDataset

    data = MaskDataset(args.data)
    step = train_mask_ldm(data, args.ae_run, args.run, _loop_settings(args), device=args.device, **_optim(args))
    print(f"mask diffusion model: step {step} of {args.steps} on {len(data)} maps; checkpoint in {args.run}")


def cmd_train_image_ae(args) -> None:
    from ..synthesis.image_model import ImageModelConfig
    from ..training.image import run_image_config, train_image_ae
    from ..training.mask_data import MaskDataset

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
    from ..training.image import run_image_config, train_image_ldm
    from ..training.mask_data import MaskDataset

    cfg = run_image_config(args.ae_run)
    if run_image_config(args.run, cfg) != cfg:  # a resumed run on another autoencoder's config is refused
        raise InputError(args.run, "was started on another autoencoder")
    data = MaskDataset(args.data, grid=cfg.grid, images=True)
    variants = {} if args.appearance_variants is None else {"variants": args.appearance_variants}
    step = train_image_ldm(data, args.ae_run, args.run, _loop_settings(args), cfg=cfg, device=args.device,
                           **variants, **_optim(args))
    print(f"image diffusion model: step {step} of {args.steps} on {len(data)} pairs; checkpoint in {args.run}")


def cmd_train_image_decoder(args) -> None:
    from ..training.image import image_base, train_image_decoder
    from ..training.mask_data import MaskDataset

    data = MaskDataset(args.data, grid=image_base(args.base)["config"]["grid"], images=True)
    variants = {} if args.appearance_variants is None else {"variants": args.appearance_variants}
    if args.latent_noise is not None:
        variants["latent_noise"] = args.latent_noise
    step = train_image_decoder(data, args.base, args.run, _loop_settings(args), device=args.device,
                               **variants, **_optim(args))
    print(f"image decoder: step {step} of {args.steps} on {len(data)} pairs; checkpoint in {args.run}")


def cmd_export_generator(args) -> None:
    from ..synthesis.image_generator import export_image_weights
    from ..synthesis.image_model import ImageModelConfig
    from ..synthesis.mask_generator import export_weights
    from ..synthesis.mask_model import MaskModelConfig
    from ..training.latent import diffusion_weights
    from ..training.loop import Run

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
    from ..synthesis.image_generator import export_image_weights
    from ..synthesis.image_model import ImageModelConfig
    from ..training.image import image_base, with_tuned_decoder
    from ..training.loop import Run

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
    from ..synthesis.mask_generator import CALIBRATION_FILE
    from ..training.mask_calibration import calibrate

    cal = calibrate(args.model, args.seeds, args.points, args.guidance, args.steps, args.device, args.data, args.grids)
    for label, (target, before, after) in cal.get("label_offset_fit", {}).get("mean_voxels", {}).items():
        print(f"label {label:>3}: offset {cal['label_offsets'][label]:+.2f}; mean voxels: training {target:.0f}, "
              f"drawn {before:.0f} -> {after:.0f}")
    by_grid = cal.get("generated_ml_by_grid", {})
    for i, (c, g) in enumerate(zip(cal["condition_ml"], cal["generated_ml"])):
        print(f"condition {c:7.1f} mL -> median generated {g:7.1f} mL"
              + "".join(f", on the {name} grid {curve[i]:7.1f} mL" for name, curve in by_grid.items()))
    print(f"wrote {Path(args.model) / CALIBRATION_FILE} (guidance {args.guidance:g}); the card checksums it")


def cmd_calibrate_uncertainty(args) -> None:
    from ..training.uncertainty import calibrate_uncertainty

    fitted = calibrate_uncertainty(args.model, args.data, args.cases, args.device, args.passes)
    print(f"{args.model}: raw SD {fitted['mean_raw_sd_ml']:.2f} mL covered {100 * fitted['raw_within_2sd']:.0f} % "
          f"of the errors at ±2 SD (MAE {fitted['mae_ml']:.2f} mL); sd_scale {fitted['sd_scale']} written to its cards")


def cmd_train_segment(args) -> None:
    from ..training.segmenter import train_segmenter

    r = train_segmenter(args.data, args.run, args.name, args.minutes, args.epochs, args.iterations, args.device,
                        args.init_from, args.resume_from)
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
    from ..training.segmenter import export_segmenter

    card = {"name": args.name, "training_data": args.data_note, "limitations": args.limitations,
            **_card_metrics(args.metrics, args.name)}
    out = export_segmenter(args.run, args.out, card, allow_unfinished=args.allow_unfinished, average=args.average,
                           checkpoint=args.checkpoint)
    print(f"wrote {out} (nnU-Net layout, fp16 weights, model card)")


def cmd_segment_metrics(args) -> None:
    from ..training.segmenter import restate_metrics

    restate_metrics(args.model, _card_metrics(args.metrics, args.name, args.references)["metrics"], args.note)
    print(f"wrote the metrics of '{args.name}' into the cards of {args.model}")


def add_commands(sub) -> None:
    """`train` and its subcommands, as a subparser of `sub`."""
    from ..anatomy.grid import GRIDS

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
        A.add_device(a)
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
    A.add_device(a)
    a.set_defaults(func=cmd_train_generators)
    g = tsub.add_parser("segment", help="train a VentSegment nnU-Net (nnU-Net v2 planner/trainer, CPU-sized)")
    g.add_argument("--data", nargs="+", required=True, help="nnU-Net raw datasets to train on (merged)")
    g.add_argument("--run", required=True, type=A.output_folder, help="run folder holding nnU-Net's raw/preprocessed/results; resumed")
    g.add_argument("--name", required=True, help="dataset name, e.g. VentReal")
    g.add_argument("--minutes", type=A.positive, default=60.0, help="time budget of this call")
    g.add_argument("--epochs", type=A.count, default=100)
    g.add_argument("--iterations", type=A.count, default=50, help="iterations per epoch")
    A.add_device(g)
    g.add_argument("--init-from", help="nnU-Net checkpoint to start a new run from (output layers excluded)")
    g.add_argument("--resume-from", type=A.model_folder,
                   help="folder of `train slim-segment` (the run on another machine): a run folder without a "
                        "checkpoint goes on from it, with the same data and settings")
    g.set_defaults(func=cmd_train_segment)
    k = tsub.add_parser("slim-segment", help="a segmenter run's latest checkpoint in fp16 without optimizer state, "
                                             "with a card, to resume from on another machine")
    k.add_argument("--run", required=True, type=A.model_folder)
    k.add_argument("--out", required=True, type=A.output_folder, help="folder for the checkpoint and its card")
    k.set_defaults(func=cmd_slim_segment)
    x = tsub.add_parser("export-segment", help="strip and ship a trained segmenter with a model card")
    x.add_argument("--run", required=True, type=A.output_folder)
    x.add_argument("--out", required=True, type=A.output_folder, help="e.g. Resources/Models/ventsegment_augmented")
    x.add_argument("--name", required=True)
    x.add_argument("--data-note", default="", help="what the model was trained on, for the model card")
    x.add_argument("--limitations", default="", help="what the model does not do well, for the model card")
    x.add_argument("--allow-unfinished", action="store_true", help="ship checkpoint_latest.pth")
    x.add_argument("--checkpoint", type=A.existing_file,
                   help="ship this checkpoint of the run instead of its final one (a snapshot of "
                        "checkpoint_latest.pth, e.g. to score a run that is still training)")
    x.add_argument("--average", nargs="+", type=A.existing_file, default=[], metavar="CHECKPOINT",
                   help="earlier checkpoints of the run (snapshots of checkpoint_latest.pth): ship the mean of "
                        "their weights and the shipped checkpoint's")
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
    A.add_device(u)
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
    A.add_device(c)
    c.add_argument("--data", nargs="*", help="corpus folders the model was trained on: also fit the label offsets "
                                             "(else the present ones are kept)")
    c.add_argument("--grids", nargs="+", choices=sorted(GRIDS), default=[],
                   help="grids of the model grid's field of view that get volume curves of their own (such as fine, "
                        "the grid of pairs from a fine image generator)")
    c.set_defaults(func=cmd_calibrate_mask)
