"""Shipped weights: where they live, their model cards, checksum verification and device choice.

Each model is a folder `Resources/Models/<name>/` holding its weights and `model_card.json`
(architecture, grid, data, steps, metrics, and the sha256 of every file), with the same card as
`README.md` for people. No weights are ever downloaded.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import VentkitError

class WeightsError(VentkitError):
    """Weights that are missing, corrupted or do not match their model card."""


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
    try:
        found = json.loads(card.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{card}: not a readable model card ({exc})") from exc
    if not isinstance(found, dict):
        raise WeightsError(f"{card}: not a model card (a JSON object is expected)")
    return found


def card_markdown(card: dict) -> str:
    """The model card for people: every entry of `model_card.json`, nested ones as indented lists."""
    def lines(value, depth):
        pad = "  " * depth
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, (dict, list)) and v:
                    yield f"{pad}- **{k}**:"
                    yield from lines(v, depth + 1)
                else:
                    yield f"{pad}- **{k}**: {v}"
        else:
            yield f"{pad}- {', '.join(map(str, value))}"

    body = {k: v for k, v in card.items() if k not in ("name", "files")}
    files = "\n".join(f"| `{f}` | `{digest}` |" for f, digest in card.get("files", {}).items())
    return (f"# Model card: {card.get('name', 'model')}\n\n" + "\n".join(lines(body, 0)) +
            "\n\n## Files (ventkit refuses any whose sha256 differs)\n\n| file | sha256 |\n|---|---|\n" + files + "\n")


def write_card(folder: str | Path, card: dict, files: list[str]) -> dict:
    """Write `model_card.json` with the sha256 of each of `files` (paths relative to `folder`), and the
    same card for people as `README.md`."""
    from .io import write_text

    folder = Path(folder)
    full = {**card, "files": {f: sha256_of(folder / f) for f in files}}
    write_text(folder / "README.md", card_markdown(full))
    write_text(folder / "model_card.json", json.dumps(full, indent=1))
    return full


def verified_model(folder: str | Path) -> dict:
    """The model card of `folder`, after checking the sha256 of every file it lists."""
    folder = Path(folder)
    card = read_card(folder)
    if not card.get("files"):
        raise WeightsError(f"{folder / 'model_card.json'}: lists no files to verify")
    for name, expected in card["files"].items():
        path = folder / name
        if not path.is_file():
            raise WeightsError(f"{path}: weights file not found")
        actual = sha256_of(path)
        if actual != expected:
            raise WeightsError(f"{path}: checksum mismatch (sha256 {actual[:12]}…, model card says "
                               f"{str(expected)[:12]}…): the file is corrupted or not the shipped one")
    return card


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
