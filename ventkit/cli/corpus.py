"""`ventkit render | resize | corpus`: rendered images and resized ventricles of label maps, anatomy corpora."""
from __future__ import annotations

from pathlib import Path

from .. import arguments as A
from ..errors import InputError


def cmd_render(args) -> None:
    import numpy as np

    from ..anatomy.render import RenderSpec, load_generation_classes, render
    from ..io import read_volume, write_volume
    from ..preview import save_preview

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

    from ..anatomy.corpus import make_labels
    from ..anatomy.grid import GRIDS, Grid
    from ..anatomy.render import RenderSpec, render
    from ..anatomy.subjects import load_subject
    from ..io import write_volume
    from ..labels import to_segmentation
    from ..preview import save_preview
    from ..volumetry import volume_report

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
    from ..anatomy.appearance import KNOWN_REAL_T1S, known_real_t1s, label_real_t1s
    from ..io import stem_of
    from ..segmentation.segment import load_segmenter

    images = {stem_of(Path(p)): p for p in args.images}
    if not images:  # the training set's real T1s: all of them, or it would differ from machine to machine
        images = known_real_t1s()
        missing = [f"{name}: {how}" for name, how in KNOWN_REAL_T1S.items() if name not in images]
        if missing:
            raise InputError("images", f"no T1 given and not every known real T1 found ({'; '.join(missing)})")
    samseg = load_segmenter("samseg")
    for name, path in images.items():
        print(f"{name}: {path} -> {samseg.description} (minutes per scan)")
    for path in label_real_t1s(images, args.out, samseg):
        print(f"wrote {path}")


def cmd_corpus_build(args) -> None:
    from ..anatomy.corpus import build_corpus

    volumes = args.volumes or ("uniform:100:300" if args.split == "holdout" else "uniform:5:300")
    dataset = build_corpus(args.out, args.n, volumes, args.seed, args.split, args.grid, args.contrast,
                           args.labels, args.priors, workers=args.workers, head_texture=args.head_texture,
                           acquisition=args.acquisition, fov=args.fov, force=args.force,
                           ignore_band=args.ignore_band)
    print(f"wrote {dataset['numTraining']} training and {dataset['numTest']} test cases to {args.out}")


def add_commands(sub) -> None:
    """The anatomy commands, as subparsers of `sub`."""
    from ..anatomy.grid import GRIDS

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
