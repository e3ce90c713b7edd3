"""Benchmark of one training iteration of a VentSegment nnU-Net on this CPU, by memory order of the network.

    python bench/segment_train_speed.py [--model NAME | --model-dir DIR] [--rounds 3] [--iterations 3]

The network, batch size and patch come from a model folder's nnU-Net plans (default: the default model of
`ventkit segment`); one iteration is a forward pass with deep supervision, nnU-Net's Dice + CE loss summed
over every output, the backward pass, gradient clipping and nnU-Net's SGD step, on a random image and random
labels. Two orders:
  contiguous        PyTorch's default order, nnU-Net's
  channels_last_3d  channels last, the order `nnUNetTrainerVentkit` trains in on a CPU
Each round times `--iterations` of each order in turn (after one warm-up iteration), so that a shared
host's drift reaches both; the means over the rounds and their ratio are printed. Stop other work on the
machine first: the two share its cores.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

ORDERS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def network_and_batch(folder: Path) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """nnU-Net's network for the plans in `folder` (with deep supervision), a random image batch of its
    patch and random labels of its classes."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(load_json(str(folder / "plans.json")))
    config = plans.get_configuration("3d_fullres")
    classes = plans.get_label_manager(load_json(str(folder / "dataset.json"))).num_segmentation_heads
    net = nnUNetTrainer.build_network_architecture(plans, config, 1, classes, True)
    shape = (config.batch_size, 1, *config.patch_size)
    return net, torch.randn(shape), torch.randint(0, classes, shape)


def iteration(net: torch.nn.Module, opt: torch.optim.Optimizer, image: torch.Tensor, labels: torch.Tensor,
              loss_fn) -> None:
    opt.zero_grad(set_to_none=True)
    outputs = net(image)
    targets = [labels]
    for out in outputs[1:]:
        targets.append(torch.nn.functional.interpolate(labels.float(), out.shape[2:], mode="nearest").long())
    sum(loss_fn(o, t) for o, t in zip(outputs, targets)).backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="shipped model name (default: the default model of `ventkit segment`)")
    ap.add_argument("--model-dir", help="an nnU-Net model folder instead of a shipped model")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=3)
    args = ap.parse_args()
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    from ventkit.segmentation.segment import DEFAULT_MODEL, model_folder

    folder = Path(args.model_dir) if args.model_dir else model_folder(args.model or DEFAULT_MODEL)
    net, image, labels = network_and_batch(folder)
    loss_fn = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                             dice_class=MemoryEfficientSoftDiceLoss)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99, nesterov=True)
    print(f"model {folder}: batch {tuple(image.shape)}, {torch.get_num_threads()} threads")
    seconds = {name: [] for name in ORDERS}
    for r in range(args.rounds):
        for name, order in ORDERS.items():
            net.to(memory_format=order)
            iteration(net, opt, image, labels, loss_fn)
            t0 = time.perf_counter()
            for _ in range(args.iterations):
                iteration(net, opt, image, labels, loss_fn)
            seconds[name].append((time.perf_counter() - t0) / args.iterations)
            print(f"round {r + 1} {name:<17} {seconds[name][-1]:6.2f} s/iteration", flush=True)
    mean = {name: statistics.mean(s) for name, s in seconds.items()}
    for name, m in mean.items():
        print(f"mean {name:<17} {m:6.2f} s/iteration")
    print(f"time ratio channels_last_3d / contiguous: {mean['channels_last_3d'] / mean['contiguous']:.2f}")


if __name__ == "__main__":
    main()
