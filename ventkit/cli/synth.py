"""`ventkit synth mask | image | pair | dataset`: synthesis with the shipped generators."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import arguments as A


def cmd_synth_mask(args) -> None:
    from ..io import write_volume
    from ..preview import save_preview
    from ..synthesis.mask_generator import MaskGenerator

    gen = MaskGenerator(args.model, device=args.device)
    out = Path(args.out)
    for i, lab in enumerate(gen.sample(args.volume, args.n, args.seed, args.guidance, args.steps)):
        name = f"mask_{args.volume:g}ml_seed{args.seed + i}"  # map i is the map of seed + i
        write_volume(lab, out / f"{name}.nii.gz", dtype="int16")
        save_preview(out / f"{name}.png", labels=lab)
        print(f"{name}: requested {args.volume:.1f} mL, generated {gen.ventricle_ml(lab):.1f} mL")


def cmd_synth_pair(args) -> None:
    from ..synthesis.pairs import write_pair

    synth = _load_synthesizer(args)
    for i in range(args.n):
        pair = synth.sample(args.volume, args.seed, i)
        stem = f"pair_{args.volume:g}ml_seed{args.seed}_{i}"
        files = write_pair(pair, args.out, stem)
        got = json.loads(files["info"].read_text())["ventricles_ml"]["total"]
        print(f"{stem}: subject {pair.info['subject']}, requested {args.volume:.1f} mL, got {got:.1f} mL")
        print("wrote " + ", ".join(str(p) for p in files.values()))


def cmd_synth_dataset(args) -> None:
    from ..synthesis.dataset import build_synthetic_dataset

    synth = _load_synthesizer(args)
    dataset = build_synthetic_dataset(synth, args.out, args.n, args.volumes, args.seed, force=args.force)
    print(f"wrote {dataset['numTraining']} cases to {args.out} (cases.csv: requested vs measured mL; volumes.png)")


def cmd_synth_image(args) -> None:
    from ..io import read_volume, write_volume
    from ..preview import save_preview
    from ..synthesis.image_generator import ImageGenerator

    labels = read_volume(args.labelmap, labels=True)
    image = ImageGenerator(args.model, device=args.device).sample(labels, args.seed, args.steps)
    print(f"wrote {write_volume(image, args.out, dtype='float32')}")
    if args.preview:
        print(f"wrote {save_preview(args.preview, image, labels)}")


def add_commands(sub) -> None:
    """`synth` and its subcommands, as a subparser of `sub`."""
    s = sub.add_parser("synth", help="synthesize with the shipped generators")
    ssub = s.add_subparsers(dest="synth_command", required=True)
    m = ssub.add_parser("mask", help="whole-brain label maps for a requested ventricle volume")
    m.add_argument("--volume", type=A.ventricle_ml, required=True, help="total ventricle volume in mL")
    m.add_argument("--n", type=A.count, default=1)
    m.add_argument("--seed", type=A.seed, default=0)
    m.add_argument("--guidance", type=A.positive, help="classifier-free guidance (default: the calibrated one)")
    m.add_argument("--steps", type=A.count, help="DDIM steps (default: those of the calibration)")
    A.add_device(m)
    m.add_argument("--model", help="model folder (default: Resources/Models/mask_generator)")
    m.add_argument("--out", required=True, type=A.output_folder)
    m.set_defaults(func=cmd_synth_mask)
    im = ssub.add_parser("image", help="a T1 drawn for a given label map (on its grid and affine)")
    im.add_argument("labelmap")
    im.add_argument("--out", required=True, type=A.output_file, help="output image (.nii.gz or .nrrd)")
    im.add_argument("--seed", type=A.seed, default=0)
    im.add_argument("--steps", type=A.count, default=50, help="DDIM steps")
    A.add_device(im)
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


def _synthesizer_options(q: argparse.ArgumentParser) -> None:
    from ..anatomy.grid import GRIDS

    q.add_argument("--seed", type=A.seed, default=0)
    q.add_argument("--backend", choices=("auto", "diffusion", "anatomy"), default="auto",
                   help="auto: the diffusion generators when shipped, else anatomy")
    q.add_argument("--guidance", type=A.positive, help="diffusion: classifier-free guidance scale (default: the "
                                                        "mask generator's calibrated one)")
    q.add_argument("--steps", type=A.count, help="diffusion: DDIM steps (default: those of its calibration)")
    A.add_device(q, "diffusion: ")
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
    from ..anatomy.render import load_generation_classes
    from ..anatomy.subjects import default_priors_dir
    from ..synthesis.pairs import Appearance, load_synthesizer

    classes = None
    if args.contrast != "t1":
        classes = load_generation_classes(args.priors or default_priors_dir(args.labels))
    appearance = Appearance(args.contrast, tuple(args.thickness), classes)
    synth = load_synthesizer(args.backend, args.labels, args.grid, args.device, args.guidance, args.steps,
                             args.spacing, appearance)
    print(f"backend: {synth.name} ({synth.description})")
    return synth
