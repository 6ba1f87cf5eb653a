"""The unit speeds behind the benchmark estimates (`orchestrator.engine.bench.CPU_UNIT_SECONDS`), at several IPCs.

One DataDAM iteration of the `paper` preset on MNIST (the suite's trial rows: ConvNetD3, real
batch 64 per class, DSA) and one epoch of the `dc` evaluation protocol on a random real subset of
the same size (ConvNetD3, batch 256, DSA), each after a warm-up, on the CPU. With `--preset course`
(the seed's bi-level setting: real batch 256, 50 SGD steps of the network on the synthetic set after
each image update), the iteration is also timed without those steps, which prices one of them
(`datadam_network_step`).

    DDORCH_DATA_ROOT=../shared/data python benchmarks/suite_speeds.py [--ipcs 10,50] [--iterations 28] [--epochs 20]
    DDORCH_DATA_ROOT=../shared/data python benchmarks/suite_speeds.py --preset course --ipcs 10 --iterations 4 --epochs 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddcore.data import load_dataset  # noqa: E402
from ddcore.evaluate import get_protocol, train_and_test  # noqa: E402
from ddcore.methods import get_method  # noqa: E402


def iteration_seconds(data, ipc: int, iterations: int, preset: str = "paper", **overrides) -> float:
    method = get_method("datadam")
    config = method.config(preset, "mnist", ipc).with_overrides(iterations=iterations + 2, device="cpu", **overrides)
    run = method.run_class(data, config, None, 0, False)
    for step in range(2):  # warm-up
        run.step(step)
    started = time.perf_counter()
    for step in range(2, iterations + 2):
        run.step(step)
    return (time.perf_counter() - started) / iterations


def epoch_seconds(data, ipc: int, epochs: int) -> float:
    chosen = data.sample_per_class(ipc, torch.Generator().manual_seed(0)).flatten()
    protocol = get_protocol("dc", epochs=epochs)
    strategy = get_method("datadam").config("paper", "mnist", ipc).dsa_strategy
    images, labels = data.train_images[chosen], data.train_labels[chosen]
    run = train_and_test("ConvNetD3", images, labels, data, protocol, 0, torch.device("cpu"), dsa_strategy=strategy)
    return run.train_seconds / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipcs", default="10,50")
    parser.add_argument("--iterations", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=20, help="0: no evaluation epochs timed")
    parser.add_argument("--preset", default="paper", help="DataDAM preset of the timed iterations")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    data = load_dataset("mnist")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 1-minute load at start {load_start:.2f}")
    for ipc in (int(value) for value in args.ipcs.split(",")):
        iteration = iteration_seconds(data, ipc, args.iterations, args.preset)
        print(
            f"IPC {ipc}: DataDAM ({args.preset}) {iteration:.2f} s per iteration "
            f"({2000 * iteration / 60:.0f} min per 2,000)",
            flush=True,
        )
        steps = get_method("datadam").config(args.preset, "mnist", ipc).network_steps
        if steps:
            without = iteration_seconds(data, ipc, args.iterations, args.preset, network_steps=0)
            print(
                f"IPC {ipc}: without its {steps} network steps {without:.2f} s per iteration: "
                f"{(iteration - without) / steps:.3f} s per network step",
                flush=True,
            )
        if args.epochs:
            epoch = epoch_seconds(data, ipc, args.epochs)
            print(
                f"IPC {ipc}: dc evaluation {epoch:.3f} s per epoch ({epoch / (10 * ipc):.4f} per image; "
                f"{1000 * epoch / 60:.1f} min per 1000-epoch seed)",
                flush=True,
            )
    print(
        f"1-minute load at end {os.getloadavg()[0]:.2f}; rerun: python benchmarks/suite_speeds.py --ipcs {args.ipcs} --preset {args.preset}"
    )


if __name__ == "__main__":
    main()
