"""A time-budgeted, resumable training loop shared by every `ventkit train` command.

State (models, optimizers, step, RNG) goes to `<run>/checkpoint.pt` atomically every few minutes and
at the end; a new call with the same run folder resumes from it. Losses are appended to
`<run>/loss_log.csv`; `preview(step)` is called every `preview_every` steps.
"""
from __future__ import annotations

import csv
import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from ..io import atomic_path
from ..progress import check_terminated


@dataclass
class LoopSettings:
    """When `train_loop` stops, saves and previews.

    Args:
        max_steps: the step to train up to (counted over resumed calls); an integer >= 0.
        minutes: time budget of this call, minutes; finite and >= 0.
        checkpoint_minutes: interval between checkpoints, minutes; finite and >= 0.
        preview_every: steps between previews; an integer >= 1.
        quiet: no progress bar.
    """

    max_steps: int
    minutes: float = 60.0
    checkpoint_minutes: float = 5.0
    preview_every: int = 500
    quiet: bool = False

    def __post_init__(self):
        if not (isinstance(self.max_steps, numbers.Integral) and self.max_steps >= 0):
            raise ValueError(f"max_steps must be an integer >= 0, got {self.max_steps!r}")
        for name in ("minutes", "checkpoint_minutes"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not (isinstance(self.preview_every, numbers.Integral) and self.preview_every >= 1):
            raise ValueError(f"preview_every must be an integer >= 1, got {self.preview_every!r}")


class Run:
    """A training run's folder: checkpoint, loss log and previews."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.checkpoint = self.folder / "checkpoint.pt"
        self.loss_log = self.folder / "loss_log.csv"

    def load(self) -> dict | None:
        if not self.checkpoint.is_file():
            return None
        return torch.load(self.checkpoint, map_location="cpu", weights_only=False)

    def save(self, state: dict) -> None:
        with atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)

    def recent_losses(self, last: int = 200) -> dict[str, float]:
        """Mean of each logged loss over the last `last` steps ({} without a log)."""
        if not self.loss_log.is_file():
            return {}
        with open(self.loss_log, newline="") as fh:
            rows = list(csv.DictReader(fh))[-last:]
        keys = [k for k in (rows[0] if rows else {}) if k not in ("step", "seconds")]
        values = {k: [float(r[k]) for r in rows if r[k]] for k in keys}
        return {k: round(sum(v) / len(v), 5) for k, v in values.items() if v}

    def log(self, rows: list[dict]) -> None:
        """Append `rows`; a loss that the log has no column for yet (a run resumed with another loss term)
        gets one, the earlier rows left empty there."""
        if not rows:
            return
        fields = list(rows[0])
        if self.loss_log.is_file():
            with open(self.loss_log, newline="") as fh:
                header = next(csv.reader(fh), None) or fields
            if set(fields) - set(header):
                with open(self.loss_log, newline="") as fh:
                    old = list(csv.DictReader(fh))
                header = [k for k in header if k != "seconds"] + [k for k in fields if k not in header] + ["seconds"]
                with atomic_path(self.loss_log) as tmp, open(tmp, "w", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=header, restval="")
                    w.writeheader()
                    w.writerows(old)
            fields = header
        new = not self.loss_log.is_file()
        with open(self.loss_log, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, restval="")
            if new:
                w.writeheader()
            w.writerows(rows)


def slim_checkpoint(run: Run, out: str | Path) -> Path:
    """The run's checkpoint without optimizer state and with fp16 weights: small enough to carry back from
    a lent GPU (training resumes from it with a fresh optimizer)."""
    state = run.load()
    if state is None:
        raise FileNotFoundError(f"{run.folder}: no checkpoint.pt")
    from ..synthesis.weights import half_precision

    state["modules"] = {k: half_precision(m) for k, m in state["modules"].items()}
    if "autoencoder" in state:
        state["autoencoder"] = half_precision(state["autoencoder"])
    state.pop("optimizers", None)
    with atomic_path(Path(out)) as tmp:
        torch.save(state, tmp)
    return Path(out)


def train_loop(run: Run, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
               step_fn: Callable[[int], dict[str, float]], settings: LoopSettings, extra_state: dict | None = None,
               preview: Callable[[int], None] | None = None) -> int:
    """Run `step_fn(step)` until `max_steps` or the time budget; returns the step reached."""
    state = run.load()
    step = 0
    if state is not None:
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in optimizers.items():
            if k not in state.get("optimizers", {}):
                continue  # a slim checkpoint (`slim_checkpoint`): the optimizer starts afresh
            lrs = [g["lr"] for g in o.param_groups]  # the caller's learning rate wins over the saved one
            o.load_state_dict(state["optimizers"][k])
            for g, lr in zip(o.param_groups, lrs):
                g["lr"] = lr
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]

    def save():
        run.save({"step": step, "modules": {k: m.state_dict() for k, m in modules.items()},
                  "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                  "torch_rng": torch.get_rng_state(), **(extra_state or {})})

    start = last_save = time.time()
    pending: list[dict] = []
    with tqdm(total=settings.max_steps, initial=step, desc=run.folder.name, disable=settings.quiet) as bar:
        try:
            while step < settings.max_steps and time.time() - start < settings.minutes * 60:
                check_terminated()
                t0 = time.time()
                losses = step_fn(step)
                step += 1
                pending.append({"step": step, **{k: round(v, 6) for k, v in losses.items()},
                                "seconds": round(time.time() - t0, 3)})
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
                if preview is not None and step % settings.preview_every == 0:
                    preview(step)
                if time.time() - last_save > settings.checkpoint_minutes * 60:
                    save()
                    run.log(pending)
                    pending, last_save = [], time.time()
        except KeyboardInterrupt:  # a terminated run (Cancel, SIGTERM) keeps its steps
            save()
            run.log(pending)
            raise
    save()
    run.log(pending)
    return step
