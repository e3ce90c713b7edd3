"""Argument types for the command line: every value is checked when it is parsed, before any work starts.

Each type function takes the argument's text and returns its value, or raises `argparse.ArgumentTypeError`
with the reason (argparse then prints `ventkit <command>: error: argument --x: reason` and exits 2);
`add_device` adds the option of every command that runs a network.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


def count(text: str) -> int:
    """An integer of at least 1 (cases, steps, workers, epochs...)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def seed(text: str) -> int:
    """A random seed: an integer of at least 0 (numpy's generators refuse negative seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed {value} must be 0 or more")
    return value


def positive(text: str) -> float:
    """A finite number above 0 (minutes, mm, scales)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be above 0")
    return value


def non_negative(text: str) -> float:
    """A finite number of at least 0 (loss weights)."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be 0 or more")
    return value


def slice_mm(text: str) -> float:
    """A slice thickness for rendered images, 1-8 mm (`synthesis.pairs.Appearance`)."""
    value = _float(text)
    if not 1.0 <= value <= 8.0:
        raise argparse.ArgumentTypeError(f"{value:g} mm: use 1 mm up to 8 mm")
    return value


def ventricle_ml(text: str) -> float:
    """A total ventricle volume in mL within the range the resizing and the generators cover."""
    from .anatomy.ventricles import MAX_ML, MIN_ML

    value = _float(text)
    if not MIN_ML <= value <= MAX_ML:
        raise argparse.ArgumentTypeError(f"{value:g} mL is outside {MIN_ML:g}-{MAX_ML:g} mL")
    return value


def volume_spec(text: str) -> str:
    """'uniform:A:B', a list '15,30,60' or 'natural' (see `anatomy.corpus.parse_volumes`)."""
    from .anatomy.corpus import parse_volumes
    from .errors import InputError

    try:
        parse_volumes(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from exc
    return text


def output_folder(text: str) -> str:
    """A folder that exists and is writable, or that can be made inside a writable folder."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: {existing} is not writable")
    return text


def output_file(text: str) -> str:
    """A file path whose folder exists (or can be made) and is writable, and that is not a folder."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    output_folder(str(Path(text).parent))
    return text


def scan(text: str) -> str:
    """A scan to read: a NIfTI, NRRD or MGZ file, or a folder holding one DICOM series."""
    from .io import MGH_SUFFIXES, NIFTI_SUFFIXES, NRRD_SUFFIXES, suffix_of

    path = Path(text)
    if path.is_dir():
        return text
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    if suffix_of(path) not in NIFTI_SUFFIXES + NRRD_SUFFIXES + MGH_SUFFIXES + (".dcm",):
        raise argparse.ArgumentTypeError(f"{text}: unsupported file type '{suffix_of(path)}' (use .nii, .nii.gz, "
                                         ".nrrd, .mgz, or a folder of DICOM files)")
    return text


def existing_file(text: str) -> str:
    """A file that exists."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def model_folder(text: str) -> str:
    """An existing folder (a trained model's, or one of scans)."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    return text


def add_device(parser: argparse.ArgumentParser, context: str = "") -> None:
    """`--device`, resolved by `models.choose_device` (a missing GPU is refused there, before any work)."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help=f"{context}auto (a CUDA GPU when one is usable, else the CPU), cpu or cuda")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value
