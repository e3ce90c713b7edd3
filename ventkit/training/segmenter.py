"""`ventkit train segment`: nnU-Net v2 itself (planner, preprocessor, trainer), sized for a CPU budget.

nnU-Net's default schedule (1000 epochs x 250 iterations, features 32-320) is out of reach on a 2-core
CPU. `VentkitPlanner` is nnU-Net's default planner with a 2 mm target spacing and
16-160 features; `nnUNetTrainerVentkit` is its default trainer with short epochs, a checkpoint every
epoch and a wall-clock budget, so training resumes across sessions (`checkpoint_latest.pth`). Its
classes are side-agnostic (left and right come from the anatomy after prediction), so nnU-Net's
mirroring augmentation stays on.
Everything lives in one run folder holding nnU-Net's three folders (raw, preprocessed, results).
"""
from __future__ import annotations

import json
import os
import pickle
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from ..anatomy.nnunet import NnUNetDatasetWriter
from ..errors import InputError
from ..io import atomic_path, write_text
from ..models import choose_device, verified_model, write_card
from ..segmentation.predictor import CHECKPOINT, FOLD, MODEL_FILES

PLANS = "nnUNetPlansVentkit"
# 128 x 160 x 128 mm at 2 mm: the ventricular system with context, ~3x cheaper per step than a whole head
MAX_PATCH = (64, 80, 64)
CONFIGURATION = "3d_fullres"
TARGET_SPACING = (2.0, 2.0, 2.0)
DATASET_ID = 501
# CE weight per nnU-Net class (background, lateral, inferior lateral, 3rd, 4th) for a network trained from
# scratch: the small structures are 0.02-0.06 % of the voxels each; the weights fall linearly to 1 between
# the two fractions of CE_WEIGHTS_ANNEAL of the schedule, so that the final probabilities, and hence the
# volumes, are not biased (docs/segmenter.md: "Small structures")
CE_CLASS_WEIGHTS = (1.0, 2.0, 80.0, 80.0, 80.0)
CE_WEIGHTS_ANNEAL = (0.6, 0.9)
# the weights of a fine-tune (`init_from`), whose network already knows the small classes
FINE_TUNE_CE_WEIGHTS = (1.0, 1.0, 5.0, 2.0, 2.0)
# initial learning rate of a fine-tune (`init_from`); nnU-Net's 0.01 is for networks trained from scratch
FINE_TUNE_LR = 0.003
# the checkpoint of `slim_segmenter`'s folder
SLIM_CHECKPOINT = "checkpoint_latest.pth"


def ce_class_weights(epoch: int, num_epochs: int, peak: tuple[float, ...] = CE_CLASS_WEIGHTS) -> tuple[float, ...]:
    """`peak` until CE_WEIGHTS_ANNEAL[0] of the schedule, then linearly down to all ones."""
    start, end = (f * num_epochs for f in CE_WEIGHTS_ANNEAL)
    f = min(1.0, max(0.0, (end - epoch) / (end - start)))
    return tuple(1.0 + (w - 1.0) * f for w in peak)


class VentkitPlanner(ExperimentPlanner):
    """nnU-Net's default planner with a 2 mm grid, 16-160 features (4 M parameters), batch size 2 and
    patches of at most MAX_PATCH voxels."""

    def __init__(self, dataset_name_or_id, gpu_memory_target_in_gb: float = 4, preprocessor_name="DefaultPreprocessor",
                 plans_name=PLANS, overwrite_target_spacing=None, suppress_transpose=False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         list(overwrite_target_spacing or TARGET_SPACING), suppress_transpose)
        self.UNet_base_num_features = 16
        self.UNet_max_features_3d = 160

    def get_plans_for_configuration(self, *args, **kwargs) -> dict:
        plan = super().get_plans_for_configuration(*args, **kwargs)
        plan["batch_size"] = self.UNet_min_batch_size  # smaller networks would otherwise get bigger batches
        if len(plan["patch_size"]) == 3:  # 5 stages of stride 2 still fit: every side stays a multiple of 16
            plan["patch_size"] = tuple(int(min(p, m)) for p, m in zip(plan["patch_size"], MAX_PATCH))
        return plan


class nnUNetTrainerVentkit(nnUNetTrainer):  # noqa: N801 (nnU-Net's naming)
    """nnU-Net's default trainer with short epochs, a checkpoint per epoch and a deadline, and a loss that
    keeps the small ventricles (inferior lateral, 3rd, 4th: 0.02-0.06 % of the voxels each) alive.

    With nnU-Net's per-sample Dice, a patch without a structure punishes any voxel predicted as it, and
    the CE gradient of a structure that rare is tiny; batch Dice (nnU-Net's own option) and class-weighted
    CE (`ce_weights`, annealed to plain CE) keep the small classes learnt.
    """

    def __init__(self, plans: dict, configuration: str, fold, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = 50
        self.num_val_iterations_per_epoch = 5
        self.num_epochs = 100
        self.save_every = 1
        self.deadline: float | None = None
        self.ce_weights = CE_CLASS_WEIGHTS  # FINE_TUNE_CE_WEIGHTS for runs from a model that knows the classes

    def initialize(self) -> None:
        """nnU-Net's initialisation; on a CPU the network in channels-last memory order, whose 3-D
        convolutions train faster there (`python bench/segment_train_speed.py`, docs/segmenter.md)."""
        super().initialize()
        if self.device.type == "cpu":
            self.network.to(memory_format=torch.channels_last_3d)

    def _build_loss(self):
        """nnU-Net's Dice + CE with batch Dice, wrapped for deep supervision as nnU-Net does."""
        self.configuration_manager.configuration["batch_dice"] = True
        return super()._build_loss()

    def on_epoch_start(self) -> None:
        """Set this epoch's CE class weights (ce_class_weights from `ce_weights`), then nnU-Net's epoch start."""
        weights = ce_class_weights(self.current_epoch, self.num_epochs, self.ce_weights)
        ce = self.loss.loss.ce if isinstance(self.loss, DeepSupervisionWrapper) else self.loss.ce
        ce.weight = torch.tensor(weights, dtype=torch.float32, device=self.device)
        self.print_to_log_file(f"CE class weights {', '.join(f'{w:.1f}' for w in weights)}")
        super().on_epoch_start()

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written atomically: a session ending mid-save keeps the previous one."""
        with atomic_path(filename) as tmp:
            super().save_checkpoint(str(tmp))

    def _out_of_time(self, epoch_seconds: float) -> bool:
        return self.deadline is not None and time.time() + epoch_seconds > self.deadline

    def run_training(self) -> bool:
        """nnU-Net's loop, stopping before an epoch that would pass the deadline; True when finished."""
        self.on_train_start()
        epoch_seconds = 0.0
        for _ in range(self.current_epoch, self.num_epochs):
            if self._out_of_time(epoch_seconds):
                self.print_to_log_file(f"time budget reached at epoch {self.current_epoch}; resume to continue")
                self._stop_loaders()
                return False
            t0 = time.time()
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = [self.train_step(next(self.dataloader_train)) for _ in range(self.num_iterations_per_epoch)]
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val = [self.validation_step(next(self.dataloader_val)) for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val)
            self.on_epoch_end()
            epoch_seconds = time.time() - t0
        self.on_train_end()
        return True

    def _stop_loaders(self) -> None:
        for loader in (self.dataloader_train, self.dataloader_val):
            if hasattr(loader, "_finish"):
                loader._finish()


def use_run_folder(run: Path) -> dict[str, Path]:
    """Point nnU-Net's three environment folders into `run`."""
    folders = {k: run / k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for k, p in folders.items():
        p.mkdir(parents=True, exist_ok=True)
        os.environ[k] = str(p)
    return folders


def source_cases(src: Path) -> tuple[dict, list[str]]:
    """A source dataset's `dataset.json` and its complete training cases. A ventkit build still being
    written (no `dataset.json` yet) counts with the cases whose meta file, written last, is in place."""
    meta = src / "dataset.json"
    if meta.is_file():
        ds = json.loads(meta.read_text())
    elif (src / "meta").is_dir():
        writer = NnUNetDatasetWriter.reopen(src)
        ds = writer.dataset_json(src.name, writer.cases())
    else:
        raise InputError(src, "not an nnU-Net raw dataset (no dataset.json)")
    ending = ds["file_ending"]
    if (src / "meta").is_dir():
        cases = sorted(c["case_id"] for c in NnUNetDatasetWriter(src).cases() if not c["test"])
    else:
        cases = sorted(label.name[: -len(ending)] for label in (src / "labelsTr").glob(f"*{ending}"))
    return ds, cases


def without_ignore(labels: dict[str, int]) -> dict[str, int]:
    """A `dataset.json` "labels" without nnU-Net's "ignore" label."""
    return {k: v for k, v in labels.items() if k != "ignore"}


def link_datasets(sources: list[Path], raw: Path) -> dict:
    """One nnU-Net raw dataset made of symlinks to the training cases of every source dataset; run again,
    it adds the cases written since (a source that is still being built grows). Sources must share their
    classes; the merged labels hold "ignore" when any source marks voxels so."""
    first = None
    for d in ("imagesTr", "labelsTr"):
        (raw / d).mkdir(parents=True, exist_ok=True)
    n = 0
    labels: dict[str, int] = {}
    for k, src in enumerate(sources):
        ds, cases = source_cases(src)
        first = first or ds
        if without_ignore(ds["labels"]) != without_ignore(first["labels"]) or ds["file_ending"] != first["file_ending"]:
            raise InputError(src, "labels or file ending differ from the first dataset")
        labels.update(ds["labels"])
        ending = ds["file_ending"]
        for case in cases:
            image, label = src / "imagesTr" / f"{case}_0000{ending}", src / "labelsTr" / f"{case}{ending}"
            if not image.is_file() or not label.is_file():
                raise InputError(image, "image or label map of a complete case is missing")
            for target, link in ((image, raw / "imagesTr" / f"s{k}_{image.name}"),
                                 (label, raw / "labelsTr" / f"s{k}_{label.name}")):
                if not link.is_symlink():
                    link.symlink_to(target.resolve())
            n += 1
    if not n:
        raise InputError(", ".join(map(str, sources)), "no training cases")
    dataset = {**first, "labels": dict(sorted(labels.items(), key=lambda kv: kv[1])), "name": raw.name,
               "numTraining": n, "numTest": 0, "description": "ventkit: " + " + ".join(str(s) for s in sources)}
    write_text(raw / "dataset.json", json.dumps(dataset, indent=1))
    return dataset


def preprocess_new_cases(dataset_name: str, labels: dict[str, int]) -> int:
    """Preprocess, with the plans made at the start, the linked cases that are not preprocessed yet (cases
    added to a source since) or whose source files were rewritten since; each case's files are moved in
    whole, its data file last. When `labels` (the raw dataset's) differ from the preprocessed dataset's (a
    source gained nnU-Net's "ignore" label), every case is preprocessed again with them. Returns the count."""
    import shutil
    import tempfile

    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    raw = Path(os.environ["nnUNet_raw"]) / dataset_name
    pre = Path(os.environ["nnUNet_preprocessed"]) / dataset_name
    plans = PlansManager(str(pre / f"{PLANS}.json"))
    config = plans.get_configuration(CONFIGURATION)
    out = pre / config.data_identifier
    dataset = json.loads((pre / "dataset.json").read_text())
    done = set(nnUNetDatasetBlosc2.get_identifiers(str(out)))
    if dataset["labels"] != labels:  # every case again: nnU-Net samples patches by the labels it knew then
        dataset["labels"] = labels
        done = set()
    ending = dataset["file_ending"]

    def stale(case: str) -> bool:
        if case not in done:
            return True
        written = (out / f"{case}.b2nd").stat().st_mtime
        return any((raw / d / f"{case}{s}").stat().st_mtime > written
                   for d, s in (("imagesTr", f"_0000{ending}"), ("labelsTr", ending)))

    new = [p.name[: -len(ending)] for p in sorted((raw / "labelsTr").glob(f"*{ending}"))]
    new = [c for c in new if stale(c)]
    preprocessor = DefaultPreprocessor(verbose=False)
    for case in new:
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            preprocessor.run_case_save(str(Path(tmp) / case), [str(raw / "imagesTr" / f"{case}_0000{ending}")],
                                       str(raw / "labelsTr" / f"{case}{ending}"), plans, config, dataset)
            for suffix in ("_seg.b2nd", ".pkl", ".b2nd"):
                shutil.move(str(Path(tmp) / f"{case}{suffix}"), out / f"{case}{suffix}")
    write_text(pre / "dataset.json", json.dumps(dataset, indent=1))  # last: an interrupted run redoes them all
    return len(new)


def prepare(sources: list[str | Path], run: str | Path, name: str, num_processes: int = 1) -> str:
    """Link, fingerprint, plan and preprocess once per run folder; returns nnU-Net's dataset name. Later
    calls link and preprocess the cases added to the sources since (with the first plans)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                      plan_experiment_dataset, preprocess_dataset)

    run = Path(run)
    folders = use_run_folder(run)
    dataset_name = f"Dataset{DATASET_ID}_{name}"
    done = run / "prepared.json"
    sources = [Path(s) for s in sources]
    if done.is_file():
        if json.loads(done.read_text())["sources"] != [str(s.resolve()) for s in sources]:
            raise InputError(run, "run folder was prepared from other datasets; use a new --run")
        dataset = link_datasets(sources, folders["nnUNet_raw"] / dataset_name)
        preprocess_new_cases(dataset_name, dataset["labels"])
        return dataset_name
    link_datasets(sources, folders["nnUNet_raw"] / dataset_name)
    extract_fingerprint_dataset(DATASET_ID, num_processes=num_processes, check_dataset_integrity=True,
                                show_progress_bar=False)
    plan_experiment_dataset(DATASET_ID, VentkitPlanner)
    preprocess_dataset(DATASET_ID, PLANS, (CONFIGURATION,), (num_processes,), show_progress_bar=False)
    write_text(done, json.dumps({"sources": [str(s.resolve()) for s in sources], "dataset": dataset_name}))
    return dataset_name


def make_trainer(run: Path, dataset_name: str, device: str, resume: bool) -> nnUNetTrainerVentkit:
    from batchgenerators.utilities.file_and_folder_operations import load_json

    pre = run / "nnUNet_preprocessed" / dataset_name
    plans = {**load_json(str(pre / f"{PLANS}.json")), "continue_training": resume}
    return nnUNetTrainerVentkit(plans, CONFIGURATION, FOLD, load_json(str(pre / "dataset.json")),
                                torch.device(device))


def result_folder(run: Path, dataset_name: str) -> Path:
    return run / "nnUNet_results" / dataset_name / f"{nnUNetTrainerVentkit.__name__}__{PLANS}__{CONFIGURATION}"


def train_segmenter(sources: list[str | Path], run: str | Path, name: str, minutes: float = 60.0,
                    epochs: int = 100, iterations: int = 50, device: str = "auto",
                    init_from: str | Path | None = None, resume_from: str | Path | None = None) -> dict:
    """Prepare once, then train (resuming from `checkpoint_latest.pth`) until done or out of time.

    `init_from`: an nnU-Net checkpoint whose weights start a new run (`start_from`: every weight when it is
    a network of the same plans and classes, e.g. another VentSegment model, else all but its output
    layers); such a run trains at FINE_TUNE_LR with the milder FINE_TUNE_CE_WEIGHTS.
    `resume_from`: a folder of `slim_segmenter` (another machine's run, same data and settings) that a run
    folder without a checkpoint of its own goes on from, at its epoch, with a fresh optimizer.
    """
    run = Path(run)
    device = choose_device(device)
    settings_file = run / "settings.json"
    settings = {"name": name, "epochs": epochs, "iterations": iterations}
    carried = verified_model(resume_from)["run_settings"] if resume_from else None
    if settings_file.is_file():
        saved = json.loads(settings_file.read_text())
        if {k: saved.get(k) for k in settings} != settings:
            raise InputError(run, f"was started with {saved}; resume with the same settings or use a new --run")
        settings = saved  # keeps the weights it started from on record; they matter only to a new run
    elif carried:
        if {k: carried.get(k) for k in settings} != settings:
            raise InputError(resume_from, f"was trained with {carried}; resume with the same settings")
        settings = carried
    elif init_from:
        settings["init_from"] = str(Path(init_from).resolve())
    init_from = settings.get("init_from")
    if device == "cpu":
        os.environ.setdefault("nnUNet_n_proc_DA", "1")
        torch.set_num_threads(os.cpu_count() or 1)
    else:
        os.environ.setdefault("nnUNet_n_proc_DA", str(max(1, (os.cpu_count() or 2) - 2)))
    start = time.time()
    dataset_name = prepare(sources, run, name)
    write_text(settings_file, json.dumps(settings))
    fold_dir = result_folder(run, dataset_name) / f"fold_{FOLD}"
    latest = fold_dir / "checkpoint_latest.pth"
    if (fold_dir / CHECKPOINT).is_file():
        return {"finished": True, "epoch": epochs, "folder": str(fold_dir)}
    trainer = make_trainer(run, dataset_name, device, resume=latest.is_file() or bool(carried))
    trainer.num_epochs, trainer.num_iterations_per_epoch = epochs, iterations
    trainer.ce_weights = FINE_TUNE_CE_WEIGHTS if init_from else CE_CLASS_WEIGHTS
    trainer.deadline = start + minutes * 60
    if init_from:
        trainer.initial_lr = FINE_TUNE_LR
    if carried and not latest.is_file():
        resumable_from_slim(Path(resume_from) / SLIM_CHECKPOINT, trainer, run, latest)
    if latest.is_file():
        trainer.load_checkpoint(str(latest))
    elif init_from:
        trainer.initialize()
        start_from(trainer.network, init_from)
    finished = trainer.run_training()
    return {"finished": finished, "epoch": trainer.current_epoch, "folder": str(fold_dir)}


def start_from(network: torch.nn.Module, checkpoint: str | Path) -> None:
    """Load an nnU-Net checkpoint into `network`: every weight when it is the same network (a fine-tune
    keeps what the output layers know), else all but the output layers (nnU-Net's `load_pretrained_weights`)."""
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["network_weights"]
        net = getattr(network, "_orig_mod", network)
        own = net.state_dict()
        if own.keys() == state.keys() and all(own[k].shape == v.shape for k, v in state.items()):
            net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
        else:
            load_pretrained_weights(network, str(checkpoint), verbose=False)
    except (RuntimeError, KeyError, AssertionError, FileNotFoundError, pickle.UnpicklingError) as exc:
        raise InputError(checkpoint, f"cannot start from these weights ({type(exc).__name__}: {exc})") from exc


def map_shared(state: dict, fn) -> dict:
    """A copy of a state dict with `fn(key, tensor)` applied to each floating-point tensor once, aliased
    entries kept aliased (nnU-Net's U-Net lists each conv 3 times)."""
    done: dict[tuple, torch.Tensor] = {}
    out = {}
    for k, v in state.items():
        if v.is_floating_point():
            key = (v.data_ptr(), v.shape, v.stride())
            if key not in done:
                done[key] = fn(k, v)
            v = done[key]
        out[k] = v
    return out


def half_shared(state: dict) -> dict:
    """fp16 copy of a state dict that keeps aliased entries aliased."""
    return map_shared(state, lambda _, v: v.half())


def read_checkpoint(path: Path) -> dict:
    """An nnU-Net training checkpoint, or InputError naming why `path` is not one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise InputError(path, f"cannot read it as a checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
        raise InputError(path, "is not an nnU-Net checkpoint (no network_weights)")
    return ckpt


def check_run_checkpoint(ckpt: dict, run: Path, src: Path) -> dict:
    """The run's nnU-Net plans, after checking that `ckpt` (read from `src`) was trained with them (same
    dataset and network); InputError otherwise."""
    dataset = json.loads((run / "prepared.json").read_text())["dataset"]
    run_plans = json.loads((run / "nnUNet_preprocessed" / dataset / f"{PLANS}.json").read_text())
    ckpt_plans = ckpt.get("init_args", {}).get("plans", {})
    if ckpt_plans.get("dataset_name") != run_plans["dataset_name"] or (
            ckpt_plans.get("configurations", {}).get(CONFIGURATION, {}).get("architecture")
            != run_plans["configurations"][CONFIGURATION]["architecture"]):
        raise InputError(src, f"is not a checkpoint of the run {run} (another dataset or network)")
    return run_plans


def slim_segmenter(run: str | Path, out_dir: str | Path) -> Path:
    """The run's latest (or final) checkpoint without optimizer state, weights in fp16, in `out_dir` with a card
    (the run's settings, cases per source and epoch; sha256): small enough to commit, so that the run can go on from it
    on another machine (`train_segmenter(resume_from=out_dir)`, the same data rebuilt there)."""
    run, out_dir = Path(run), Path(out_dir)
    if not (run / "prepared.json").is_file():
        raise InputError(run, "not a segmenter run folder (no prepared.json)")
    prepared = json.loads((run / "prepared.json").read_text())
    fold_dir = result_folder(run, prepared["dataset"]) / f"fold_{FOLD}"
    src = next((p for p in (fold_dir / "checkpoint_latest.pth", fold_dir / CHECKPOINT) if p.is_file()), None)
    if src is None:
        raise InputError(run, "has no checkpoint yet")
    ckpt = read_checkpoint(src)
    slim = {k: v for k, v in ckpt.items() if k not in ("optimizer_state", "grad_scaler_state")}
    slim["network_weights"] = half_shared(ckpt["network_weights"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / SLIM_CHECKPOINT) as tmp:
        torch.save(slim, tmp)
    settings = json.loads((run / "settings.json").read_text())
    lr = ckpt["logging"].get("lrs") or [None]
    cases = {Path(s).name: len(source_cases(Path(s))[1]) for s in prepared["sources"]}
    write_card(out_dir, {"date": date.today().isoformat(), "run_settings": settings, "dataset": prepared["dataset"],
                         "cases_per_source": cases, "epoch": ckpt["current_epoch"],
                         "iterations": ckpt["current_epoch"] * settings["iterations"], "last_learning_rate": lr[-1]},
               [SLIM_CHECKPOINT])
    return out_dir


def resumable_from_slim(slim_path: Path, trainer: nnUNetTrainerVentkit, run: Path, latest: Path) -> None:
    """Write `latest` from a slim checkpoint of this run's data and network, with the initialised trainer's
    fresh optimizer state, so that nnU-Net's own resume loads it."""
    ckpt = read_checkpoint(slim_path)
    check_run_checkpoint(ckpt, run, slim_path)
    trainer.initialize()
    ckpt["network_weights"] = map_shared(ckpt["network_weights"], lambda _, v: v.float())
    ckpt["optimizer_state"], ckpt["grad_scaler_state"] = trainer.optimizer.state_dict(), None
    latest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(latest) as tmp:
        torch.save(ckpt, tmp)


def averaged_weights(paths: list[Path]) -> tuple[dict, list[int]]:
    """The mean of the network weights of checkpoints of one run (aliased entries stay aliased), and the
    epoch of each: snapshots taken late in a schedule, averaged as in stochastic weight averaging."""
    states, epochs = [], []
    for path in paths:
        ckpt = read_checkpoint(path)
        states.append(ckpt["network_weights"])
        epochs.append(int(ckpt.get("current_epoch", -1)))
    first = states[0]
    for path, state in zip(paths[1:], states[1:]):
        if state.keys() != first.keys() or any(state[k].shape != v.shape for k, v in first.items()):
            raise InputError(path, f"holds another network than {paths[0]}: average checkpoints of one run")
    mean = map_shared(first, lambda k, v: torch.stack([state[k].float() for state in states]).mean(0).to(v.dtype))
    return mean, epochs


def export_segmenter(run: str | Path, out_dir: str | Path, card: dict, allow_unfinished: bool = False,
                     average: list[str | Path] = (), checkpoint: str | Path | None = None) -> Path:
    """Ship a trained run: nnU-Net's folder layout, fp16 weights, no optimizer state, a model card in the
    model folder (sha256 of every file) and beside the checkpoint (its sha256). `checkpoint` ships a
    checkpoint of the run other than its final one (a snapshot of checkpoint_latest.pth, which a running
    training may be rewriting). With `average` (earlier checkpoints of the run), the weights shipped are
    the mean of those and the shipped checkpoint's (`averaged_weights`), and the card lists their epochs."""
    run, out_dir = Path(run), Path(out_dir)
    prepared = json.loads((run / "prepared.json").read_text())
    results = result_folder(run, prepared["dataset"])
    fold_dir = results / f"fold_{FOLD}"
    src = Path(checkpoint) if checkpoint else fold_dir / CHECKPOINT
    if checkpoint is None and not src.is_file():
        if not allow_unfinished:
            raise InputError(run, "training has not finished (no checkpoint_final.pth); pass --allow-unfinished "
                                  "to ship checkpoint_latest.pth")
        src = fold_dir / "checkpoint_latest.pth"
    ckpt = read_checkpoint(src)
    run_plans = check_run_checkpoint(ckpt, run, src)
    weights, averaged_epochs = (averaged_weights([src, *map(Path, average)]) if average
                                else (ckpt["network_weights"], []))
    (out_dir / f"fold_{FOLD}").mkdir(parents=True, exist_ok=True)
    stripped = {
        "network_weights": half_shared(weights),
        "trainer_name": nnUNetTrainer.__name__,  # same network; lets stock nnUNetv2_predict load it
        "init_args": {"configuration": CONFIGURATION, "fold": FOLD},
        "inference_allowed_mirroring_axes": ckpt.get("inference_allowed_mirroring_axes"),
        "current_epoch": ckpt["current_epoch"],
    }
    with atomic_path(out_dir / MODEL_FILES[2]) as tmp:
        torch.save(stripped, tmp)
    for f in MODEL_FILES[:2]:
        write_text(out_dir / f, (results / f).read_text())
    plans = run_plans["configurations"][CONFIGURATION]
    log = ckpt["logging"]
    settings = json.loads((run / "settings.json").read_text())
    # nnU-Net's U-Net reaches each conv by several names: count every tensor once
    n_params = int(sum({v.data_ptr(): v.numel() for v in ckpt["network_weights"].values()}.values()))
    full = {"date": date.today().isoformat(), "framework": "nnU-Net v2 (nnunetv2)", "configuration": CONFIGURATION,
            "architecture": {"class": plans["architecture"]["network_class_name"], "parameters": n_params,
                             "features_per_stage": plans["architecture"]["arch_kwargs"]["features_per_stage"],
                             "patch_size": plans["patch_size"], "spacing_mm": plans["spacing"]},
            "training": {"epochs": ckpt["current_epoch"], "iterations_per_epoch": settings["iterations"],
                         "trainer": nnUNetTrainerVentkit.__name__, "sources": prepared["sources"],
                         "initialised_from": settings.get("init_from"),
                         **({"weights_averaged_over_epochs": sorted(averaged_epochs)} if average else {}),
                         "final_train_loss": float(np.round(log["train_losses"][-1], 4))
                         if log.get("train_losses") else None,
                         "final_pseudo_dice": [float(np.round(x, 4)) for x in log["dice_per_class_or_region"][-1]]
                         if log.get("dice_per_class_or_region") else None},
            **card}
    write_cards(out_dir, full)
    return out_dir


def write_cards(out_dir: Path, card: dict) -> None:
    """The model card in the model folder (sha256 of every file) and the same card beside the checkpoint,
    checksumming the checkpoint relative to its folder."""
    write_card(out_dir, card, list(MODEL_FILES))
    write_card(out_dir / f"fold_{FOLD}", card, [CHECKPOINT])


def update_cards(out_dir: str | Path, fields: dict) -> None:
    """Set top-level `fields` in a shipped segmenter's two cards; its files are checked first and stay."""
    out_dir = Path(out_dir)
    card = {k: v for k, v in verified_model(out_dir).items() if k != "files"}
    write_cards(out_dir, {**card, **fields})


def restate_metrics(out_dir: str | Path, metrics: dict, note: str = "") -> None:
    """Replace the metrics (and with `note`, the postprocessing note) of a shipped segmenter's two cards;
    its files are checked first and stay as they are."""
    card = verified_model(Path(out_dir))
    update_cards(out_dir, {"metrics": {**card.get("metrics", {}), **metrics}, **({"postprocessing": note} if note else {})})
