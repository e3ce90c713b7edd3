"""Bad and unusual inputs for the command line, each with the exit status and message it must give.

`Testing/test_bad_inputs.py` runs every case through `ventkit.cli.main` and `bench/reliability.py` through
`python -m ventkit` (counting clean errors, tracebacks, silent wrong results and partial files). A case
writes its inputs into a folder of its own (`Inputs`), and its `--out` must hold no file afterwards.
"""
from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np


@dataclass
class Inputs:
    """Where a case writes its inputs and where its outputs must not appear; `model`: a trained tiny model."""

    root: Path
    model: Path
    labels: Path  # a real label map (FreeSurfer ids)

    @property
    def out(self) -> Path:
        return self.root / "out"

    def nifti(self, array, affine=None, name: str = "scan.nii.gz", unoriented: bool = False) -> str:
        img = nib.Nifti1Image(np.asarray(array), np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine)
        if unoriented:
            img.set_qform(None, code=0)
            img.set_sform(None, code=0)
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, str(path))
        return str(path)

    def head(self, **kw) -> str:
        """A 1 mm head-sized image with a bright brain and two dark ventricle blocks."""
        a = np.full((160, 192, 160), 0.05, np.float32)
        a[20:140, 20:170, 20:140] = 0.8
        a[55:75, 60:130, 70:100] = 0.1
        a[85:105, 60:130, 70:100] = 0.1
        a += np.random.default_rng(0).normal(0, 0.02, a.shape).astype(np.float32)
        return self.nifti(kw.pop("array", a), **kw)

    def folder(self, name: str) -> str:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return str(self.root / name)

    def file(self, name: str, data: bytes = b"") -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def model_copy(self, damage: Callable[[Path], None]) -> str:
        copy = self.root / "model"
        shutil.copytree(self.model, copy)
        damage(copy)
        return str(copy)


@dataclass
class Case:
    name: str
    argv: Callable[[Inputs], list[str]]
    message: str  # a part of what stderr must say
    code: int = 2


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _seg(i: Inputs, scan: str, *extra: str) -> list[str]:
    return ["segment", scan, "--out", str(i.out), "--model-dir", str(i.model), "--device", "cpu", *extra]


def _labels_with(i: Inputs, affine=None, unoriented: bool = False) -> str:
    """The real label map with another header."""
    labels = nib.load(str(i.labels))
    return i.nifti(np.asarray(labels.dataobj), labels.affine if affine is None else affine, "labels.nii.gz", unoriented)


def _sheared(i: Inputs) -> str:
    affine = nib.load(str(i.labels)).affine.copy()
    affine[0, 1] = 0.3
    return _labels_with(i, affine)


def _built_corpus(i: Inputs) -> list[str]:
    """A corpus built with one seed, then resumed into the same folder with another."""
    from ventkit.cli import main

    main(["corpus", "build", "--out", str(i.root / "corpus"), "--n", "1", "--volumes", "natural", "--grid", "mask",
          "--seed", "1"])
    return ["corpus", "build", "--out", str(i.root / "corpus"), "--n", "2", "--volumes", "natural", "--grid", "mask",
            "--seed", "2"]


CASES: list[Case] = [
    # scans that cannot be segmented
    Case("missing scan", lambda i: _seg(i, str(i.root / "nothing.nii.gz")), "no such file"),
    Case("text file as scan", lambda i: _seg(i, i.file("notes.txt", b"hello")), "unsupported file type"),
    Case("corrupt gzip", lambda i: _seg(i, i.file("broken.nii.gz", b"\x1f\x8b" + b"\x00" * 200)), "cannot read"),
    Case("truncated NIfTI", lambda i: _seg(i, i.file("cut.nii.gz", gzip.compress(b"\x5c\x01" + b"\x00" * 100))),
         "cannot read"),
    Case("2-D image", lambda i: _seg(i, i.nifti(np.random.rand(64, 64).astype(np.float32))), "3-D"),
    Case("4-D series", lambda i: _seg(i, i.nifti(np.random.rand(30, 30, 30, 3).astype(np.float32))), "3-D"),
    Case("all-zero image", lambda i: _seg(i, i.head(array=np.zeros((160, 192, 160), np.float32))), "empty"),
    Case("constant image", lambda i: _seg(i, i.head(array=np.full((160, 192, 160), 7, np.float32))), "constant"),
    Case("NaN voxels", lambda i: _seg(i, i.head(array=np.full((160, 192, 160), np.nan, np.float32))), "NaN"),
    Case("infinite voxels", lambda i: _seg(i, i.head(array=np.full((160, 192, 160), np.inf, np.float32))), "infinite"),
    Case("intensities near float32's limit",
         lambda i: _seg(i, i.head(array=np.random.default_rng(0).uniform(0, 3e38, (160, 192, 160)).astype(np.float32))),
         "intensities reach"),
    Case("field of view of a slab", lambda i: _seg(i, i.nifti(np.random.rand(160, 192, 10).astype(np.float32))),
         "field of view"),
    Case("8^3 voxels of 20 mm", lambda i: _seg(i, i.nifti(np.random.rand(8, 8, 8).astype(np.float32),
                                                          np.diag([20.0, 20.0, 20.0, 1.0]))), "too coarse"),
    Case("absurd voxel spacing", lambda i: _seg(i, i.head(affine=np.diag([1e-3, 1e-3, 1e-3, 1.0]))), "absurd voxel"),
    Case("label map given as the scan", lambda i: _seg(i, str(i.labels)), "label map"),
    Case("single DICOM file", lambda i: _seg(i, i.file("IM0001.dcm", b"DICM")), "DICOM"),
    Case("folder without DICOM", lambda i: _seg(i, i.folder("empty_dir")), "no DICOM series"),
    Case("the same scan twice", lambda i: ["segment", i.head(), i.head(), "--out", str(i.out), "--model-dir",
                                           str(i.model)], "given twice"),
    # outputs and models
    Case("--out is a file", lambda i: ["segment", i.head(), "--out", i.file("taken.txt")], "is a file"),
    Case("unknown model", lambda i: ["segment", i.head(), "--out", str(i.out), "--model", "bogus"], "unknown model"),
    Case("missing model folder", lambda i: ["segment", i.head(), "--out", str(i.out), "--model-dir",
                                            str(i.root / "no_model")], "no such folder"),
    Case("model card that is not JSON", lambda i: ["segment", i.head(), "--out", str(i.out), "--model-dir",
                                                   i.model_copy(lambda m: (m / "model_card.json").write_text("{oops"))],
         "model card"),
    Case("corrupted weights", lambda i: ["segment", i.head(), "--out", str(i.out), "--model-dir",
                                         i.model_copy(lambda m: _flip_byte(m / "fold_all" / "checkpoint_final.pth"))],
         "checksum"),
    Case("unknown device", lambda i: _seg(i, i.head())[:-2] + ["--device", "tpu"], "invalid choice"),
    # label maps
    Case("volumes of a missing map", lambda i: ["volumes", str(i.root / "none.nii.gz")], "not found"),
    Case("volumes of an image", lambda i: ["volumes", i.nifti(np.random.rand(20, 20, 20).astype(np.float32))],
         "non-integer"),
    Case("volumes of an all-background map", lambda i: ["volumes", i.nifti(np.zeros((20, 20, 20), np.int16))],
         "empty"),
    Case("volumes of unknown labels", lambda i: ["volumes", i.nifti(np.full((20, 20, 20), 9999, np.int16))],
         "unknown label"),
    Case("resize to 1000 mL", lambda i: ["resize", str(i.labels), "--volume", "1000", "--out", str(i.out)],
         "outside"),
    Case("render with 0 mm slices", lambda i: ["render", str(i.labels), "--out", str(i.out / "t1.nii.gz"),
                                               "--thickness", "0"], "above 0"),
    Case("synth pair with 9-12 mm slices", lambda i: ["synth", "pair", "--volume", "60", "--backend", "anatomy",
                                                      "--thickness", "9", "12", "--out", str(i.out)], "1 mm up to 8 mm"),
    # generator arguments
    Case("synth mask --n 0", lambda i: ["synth", "mask", "--volume", "100", "--n", "0", "--out", str(i.out)],
         "at least 1"),
    Case("synth mask --volume nan", lambda i: ["synth", "mask", "--volume", "nan", "--out", str(i.out)], "finite"),
    Case("synth mask --volume 1000", lambda i: ["synth", "mask", "--volume", "1000", "--out", str(i.out)],
         "outside"),
    Case("synth pair --steps 0", lambda i: ["synth", "pair", "--volume", "100", "--steps", "0", "--out", str(i.out)],
         "at least 1"),
    Case("synth pair --steps -3", lambda i: ["synth", "pair", "--volume", "100", "--steps", "-3", "--out",
                                             str(i.out)], "at least 1"),
    Case("synth pair --seed -1", lambda i: ["synth", "pair", "--volume", "100", "--seed", "-1", "--out", str(i.out)],
         "seed"),
    Case("synth pair --guidance -1", lambda i: ["synth", "pair", "--volume", "100", "--guidance", "-1", "--out",
                                                str(i.out)], "above 0"),
    Case("synth pair --n 0", lambda i: ["synth", "pair", "--volume", "100", "--n", "0", "--out", str(i.out)],
         "at least 1"),
    Case("synth pair --out is a file", lambda i: ["synth", "pair", "--volume", "100", "--out", i.file("x.txt")],
         "is a file"),
    Case("synth dataset --volumes uniform:300:5", lambda i: ["synth", "dataset", "--n", "2", "--volumes",
                                                             "uniform:300:5", "--out", str(i.out)], "low to high"),
    Case("synth dataset --volumes nan", lambda i: ["synth", "dataset", "--n", "2", "--volumes", "nan", "--out",
                                                   str(i.out)], "5-300"),
    Case("synth dataset --n 0", lambda i: ["synth", "dataset", "--n", "0", "--out", str(i.out)], "at least 1"),
    # corpus, evaluation, training
    Case("corpus build --n 0", lambda i: ["corpus", "build", "--n", "0", "--out", str(i.out)], "at least 1"),
    Case("corpus build --fov helmet", lambda i: ["corpus", "build", "--n", "1", "--fov", "helmet", "--out",
                                                 str(i.out)], "field of view"),
    Case("corpus build --volumes nan", lambda i: ["corpus", "build", "--n", "1", "--volumes", "nan", "--out",
                                                  str(i.out)], "5-300"),
    Case("corpus build resumed with another seed", _built_corpus, "other settings"),
    Case("corpus build --ignore-band on exact labels", lambda i: ["corpus", "build", "--n", "1", "--ignore-band", "1",
                                                                  "--out", str(i.out)], "only for --contrast real"),
    Case("corpus build --ignore-band 5", lambda i: ["corpus", "build", "--n", "1", "--contrast", "real",
                                                    "--ignore-band", "5", "--out", str(i.out)], "invalid choice"),
    Case("evaluate --holdout is a file", lambda i: ["evaluate", "--holdout", i.file("h.txt"), "--out", str(i.out)],
         "is a file"),
    Case("evaluate --models bogus", lambda i: ["evaluate", "--holdout", str(i.root / "h"), "--out", str(i.out),
                                               "--models", "bogus"], "invalid choice"),
    Case("train segment --epochs 0", lambda i: ["train", "segment", "--data", str(i.root), "--run", str(i.out),
                                                "--name", "X", "--epochs", "0"], "at least 1"),
    Case("train image-ae --spectral-weight -1", lambda i: ["train", "image-ae", "--data", str(i.root), "--run",
                                                           str(i.out), "--spectral-weight", "-1"], "0 or more"),
    Case("train export-segment --average of a missing checkpoint",
         lambda i: ["train", "export-segment", "--run", str(i.root), "--out", str(i.out), "--name", "X",
                    "--average", str(i.root / "snapshot.pth")], "no such file"),
    Case("train export-segment --checkpoint of a missing snapshot",
         lambda i: ["train", "export-segment", "--run", str(i.root), "--out", str(i.out), "--name", "X",
                    "--checkpoint", str(i.root / "snapshot.pth")], "no such file"),
    Case("train slim-segment of a folder that is no run",
         lambda i: ["train", "slim-segment", "--run", str(i.root), "--out", str(i.out)], "not a segmenter run"),
    Case("train segment --resume-from a folder without a card",
         lambda i: ["train", "segment", "--data", str(i.root), "--run", str(i.out), "--name", "X",
                    "--resume-from", str(i.root)], "model card not found"),
    Case("train calibrate-mask --grids of another field of view",
         lambda i: ["train", "calibrate-mask", "--model", str(i.root), "--grids", "nowhere"], "invalid choice"),
]

# inputs that must work, with a warning on stderr that says what is odd about them
WARNED: list[Case] = [
    Case("sheared affine", lambda i: ["volumes", _sheared(i)], "sheared", code=0),
    Case("header without orientation", lambda i: ["volumes", _labels_with(i, unoriented=True)], "no orientation",
         code=0),
]


def stderr_is_clean(stderr: str, message: str) -> bool:
    """One error line that names the problem, and no traceback."""
    return "Traceback" not in stderr and message.lower() in stderr.lower()


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
