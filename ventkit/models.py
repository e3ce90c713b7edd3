"""Shipped weights: where they live, their model cards, checksum verification and device choice.

Each model is a folder `Resources/Models/<name>/` holding `weights.pt` and `model_card.json`
(architecture, grid, data, steps, metrics, sha256). No weights are ever downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import VentkitError

MODELS_ENV = "VENTKIT_MODELS"


class WeightsError(VentkitError):
    """Weights that are missing, corrupted or do not match their model card."""


def models_dir() -> Path:
    """`$VENTKIT_MODELS`, else `Resources/Models` of this repository or extension."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV])
    return Path(__file__).resolve().parents[1] / "Resources" / "Models"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(folder: str | Path) -> dict:
    card = Path(folder) / "model_card.json"
    if not card.is_file():
        raise WeightsError(f"{card}: model card not found")
    return json.loads(card.read_text())


def verified_weights(folder: str | Path) -> tuple[Path, dict]:
    """Path of `weights.pt` in `folder` and its card, after checking the card's sha256."""
    folder = Path(folder)
    card = read_card(folder)
    weights = folder / card.get("weights_file", "weights.pt")
    if not weights.is_file():
        raise WeightsError(f"{weights}: weights file not found")
    actual = sha256_of(weights)
    if actual != card.get("sha256"):
        raise WeightsError(f"{weights}: checksum mismatch (sha256 {actual[:12]}…, model card says "
                           f"{str(card.get('sha256'))[:12]}…): the file is corrupted or not the shipped one")
    return weights, card


def choose_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise VentkitError("--device cuda was asked for, but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise VentkitError(f"unknown device '{device}' (use auto, cpu or cuda)")
    return device
