"""Benchmark of one training iteration of a VentSegment nnU-Net on this CPU, by memory order of the network.

    python bench/segment_train_speed.py [--model NAME | --model-dir DIR] [--iterations 4]

The network, batch size and patch come from a model folder's nnU-Net plans (default: the default model of
`ventkit segment`); one iteration is a forward pass with deep supervision, a loss over every output, the
backward pass and nnU-Net's SGD step, on random data. Each memory order gets one warm-up iteration, then
the mean of `--iterations`:
  contiguous        PyTorch's default order, nnU-Net's
  channels_last_3d  channels last, the order `nnUNetTrainerVentkit` trains in on a CPU
and the ratio of the two is printed. Stop other work on the machine first: the two share its cores.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def network_and_batch(folder: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    """nnU-Net's network for the plans in `folder` (with deep supervision), and a random batch of its patch."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(load_json(str(folder / "plans.json")))
    config = plans.get_configuration("3d_fullres")
    classes = plans.get_label_manager(load_json(str(folder / "dataset.json"))).num_segmentation_heads
    net = nnUNetTrainer.build_network_architecture(plans, config, 1, classes, True)
    return net, torch.randn(config.batch_size, 1, *config.patch_size)


def seconds_per_iteration(net: torch.nn.Module, batch: torch.Tensor, order: torch.memory_format, n: int) -> float:
    net.to(memory_format=order)
    batch = batch.contiguous(memory_format=order)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99, nesterov=True)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = sum(out.float().square().mean() for out in net(batch))
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="shipped model name (default: the default model of `ventkit segment`)")
    ap.add_argument("--model-dir", help="an nnU-Net model folder instead of a shipped model")
    ap.add_argument("--iterations", type=int, default=4)
    args = ap.parse_args()
    from ventkit.segmentation.segment import DEFAULT_MODEL, model_folder

    folder = Path(args.model_dir) if args.model_dir else model_folder(args.model or DEFAULT_MODEL)
    net, batch = network_and_batch(folder)
    print(f"model {folder}: batch {tuple(batch.shape)}, {torch.get_num_threads()} threads")
    results = {}
    for name, order in (("contiguous", torch.contiguous_format), ("channels_last_3d", torch.channels_last_3d)):
        results[name] = seconds_per_iteration(net, batch, order, args.iterations)
        print(f"{name:<17} {results[name]:6.2f} s/iteration")
    print(f"time ratio channels_last_3d / contiguous: {results['channels_last_3d'] / results['contiguous']:.2f}")


if __name__ == "__main__":
    main()
