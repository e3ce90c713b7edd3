"""`ventkit train generators`: all five generator stages in order, in one time budget, resumable.

The entry point for a lent GPU (`--device cuda`) as much as for a long CPU run: each stage resumes from
its run folder under `runs/`, trains until its step target or the budget's end, and a stage starts only
once the one before it has reached its target (a diffusion model is never trained on a half-trained
autoencoder).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..synthesis.image_model import ImageModelConfig
from ..synthesis.mask_model import MaskModelConfig
from .loop import LoopSettings

STAGES = ("mask_ae", "mask_ldm", "image_ae", "image_ldm", "image_decoder")


def train_generators(mask_data: list, image_data: list | None, runs: str | Path, minutes: float,
                     steps: dict[str, int], device: str = "auto", checkpoint_minutes: float = 5.0,
                     mask_cfg: MaskModelConfig = MaskModelConfig(), image_cfg: ImageModelConfig = ImageModelConfig(),
                     log=print) -> dict[str, int]:
    """Train the stages in `STAGES` order (image stages only with `image_data`); returns steps reached."""
    from .image import train_image_ae, train_image_decoder, train_image_ldm
    from .mask import train_mask_ae, train_mask_ldm
    from .mask_data import MaskDataset

    runs = Path(runs)
    deadline = time.time() + minutes * 60
    datasets: dict[bool, MaskDataset] = {}

    def data(images: bool) -> MaskDataset:
        if images not in datasets:
            datasets[images] = MaskDataset(image_data if images else mask_data, images=images)
        return datasets[images]

    trainers = {
        "mask_ae": lambda s: train_mask_ae(data(False), runs / "mask_ae", s, mask_cfg, device=device),
        "mask_ldm": lambda s: train_mask_ldm(data(False), runs / "mask_ae", runs / "mask_ldm", s, mask_cfg,
                                             device=device),
        "image_ae": lambda s: train_image_ae(data(True), runs / "image_ae", s, image_cfg, device=device),
        "image_ldm": lambda s: train_image_ldm(data(True), runs / "image_ae", runs / "image_ldm", s, image_cfg,
                                               device=device),
        "image_decoder": lambda s: train_image_decoder(data(True), runs / "image_ldm", runs / "image_decoder", s,
                                                       device=device),
    }
    reached: dict[str, int] = {}
    for stage in STAGES:
        if stage.startswith("image") and not image_data:
            break
        left = (deadline - time.time()) / 60
        if left < 0.2:
            break
        settings = LoopSettings(max_steps=steps[stage], minutes=left, checkpoint_minutes=checkpoint_minutes,
                                quiet=True)
        reached[stage] = trainers[stage](settings)
        log(f"{stage}: step {reached[stage]} of {steps[stage]} ({(deadline - time.time()) / 60:.1f} min left)")
        if reached[stage] < steps[stage]:
            break
    return reached
