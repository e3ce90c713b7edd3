"""`ventkit volumes | segment | batch | change | models | install-samseg | evaluate`: measuring scans."""
from __future__ import annotations

import csv
import io as _io
import json
from pathlib import Path

from .. import arguments as A
from ..errors import InputError


def cmd_volumes(args) -> None:
    from ..io import read_volume
    from ..volumetry import volume_report

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
    from ..segmentation.segment import check_uncertainty, load_segmenter, output_stems, segment_file

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
    from ..segmentation.segment import check_uncertainty, load_segmenter, segment_folder

    segmenter = load_segmenter(args.model, args.device, folder=args.model_dir)
    if args.uncertainty:
        check_uncertainty(segmenter)
    n = segment_folder(args.folder, args.out, args.csv, segmenter, quiet=False, uncertainty=args.uncertainty)
    print(f"segmented {n} scans of {args.folder} ({segmenter.description}); volumes in {args.csv}")


def cmd_change(args) -> None:
    from ..change import compare_visits
    from ..segmentation.segment import load_segmenter

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
    from ..evaluation import card_results, real_mri_results
    from ..models import read_card
    from ..segmentation.segment import BASELINE_MODELS, DEFAULT_MODEL, model_folder, shipped_models

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
    from ..segmentation.references import install_samseg, samseg_venv

    print(f"installing SAMSEG into {samseg_venv()} (its own environment: it needs numpy<2)...")
    print(f"ready: {install_samseg()}")


def cmd_evaluate(args) -> None:
    from ..evaluation import HOLDOUT_RECIPE, build_holdout, holdout_cases, run_evaluation, write_results
    from ..segmentation.references import InstalledSynthSeg
    from ..segmentation.segment import SYNTHSEG_RECIPE, load_segmenter

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


def add_commands(sub) -> None:
    """The measuring commands, as subparsers of `sub`."""
    from ..anatomy.grid import GRIDS
    from ..segmentation.segment import MODELS

    v = sub.add_parser("volumes", help="ventricle and structure volumes (mL) of a label map")
    v.add_argument("labelmap")
    fmt = v.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    v.set_defaults(func=cmd_volumes)

    g = sub.add_parser("segment", help="segment the ventricles of scans; write labels and volumes")
    g.add_argument("images", nargs="+", type=A.scan, help="NIfTI, NRRD or FreeSurfer .mgz scans, or DICOM folders")
    g.add_argument("--out", required=True, type=A.output_folder, help="output folder")
    g.add_argument("--model", help="augmented (default; until it is shipped, the best shipped model), real, "
                                    "synthetic, synthseg (mri_synthseg where installed, else the recipe baseline), samseg or "
                                    "synthseg_recipe (ventkit's SynthSeg-recipe baseline)")
    g.add_argument("--model-dir", type=A.model_folder, help="an nnU-Net model folder to use instead of a shipped model")
    A.add_device(g)
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
    A.add_device(bt)
    bt.add_argument("--uncertainty", action="store_true", help="also each volume's SD (about 4x slower)")
    bt.set_defaults(func=cmd_batch)

    ch = sub.add_parser("change", help="ventricular volume change between two visits of one patient, with its "
                                       "uncertainty")
    ch.add_argument("baseline", type=A.scan, help="the earlier scan")
    ch.add_argument("followup", type=A.scan, help="the later scan (any grid, orientation or contrast)")
    ch.add_argument("--out", required=True, type=A.output_folder, help="output folder")
    ch.add_argument("--model", help="augmented (default), real or synthetic")
    ch.add_argument("--model-dir", type=A.model_folder, help="an nnU-Net model folder instead of a shipped model")
    A.add_device(ch)
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
    A.add_device(ev)
    ev.add_argument("--labels", help="folder of label maps (default: $VENTKIT_DATA or ../shared/...)")
    ev.add_argument("--priors", help="SynthSeg priors folder (random-contrast cases; default: beside the maps)")
    ev.add_argument("--scale", type=A.positive, default=1.0, help="scale the number of hold-out cases")
    ev.add_argument("--uncertainty", nargs="*", metavar="MODEL",
                    help="also give these models' volumes an SD (all of VentSegment's without a name) and print how "
                         "often the truth lies within ±2 SD")
    ev.add_argument("--grid", choices=tuple(GRIDS), default="paper")
    ev.set_defaults(func=cmd_evaluate)
