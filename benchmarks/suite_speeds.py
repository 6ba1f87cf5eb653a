"""The unit speeds behind the benchmark estimates (`orchestrator.engine.bench.CPU_UNIT_SECONDS`), at several IPCs.

One DataDAM iteration of the `paper` preset on MNIST (the suite's trial rows: ConvNetD3, real
batch 64 per class, DSA) and one epoch of the `dc` evaluation protocol on a random real subset of
the same size (ConvNetD3, batch 256, DSA), each after a warm-up, on the CPU.

    DDORCH_DATA_ROOT=../shared/data python benchmarks/suite_speeds.py [--ipcs 10,50] [--iterations 28] [--epochs 20]
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


def iteration_seconds(data, ipc: int, iterations: int) -> float:
    method = get_method("datadam")
    config = method.config("paper", "mnist", ipc).with_overrides(iterations=iterations + 2, device="cpu")
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
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    data = load_dataset("mnist")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 1-minute load at start {load_start:.2f}")
    for ipc in (int(value) for value in args.ipcs.split(",")):
        iteration = iteration_seconds(data, ipc, args.iterations)
        epoch = epoch_seconds(data, ipc, args.epochs)
        print(
            f"IPC {ipc}: DataDAM {iteration:.2f} s per iteration ({2000 * iteration / 60:.0f} min per 2,000); "
            f"dc evaluation {epoch:.3f} s per epoch ({epoch / (10 * ipc):.4f} per image; "
            f"{1000 * epoch / 60:.1f} min per 1000-epoch seed)",
            flush=True,
        )
    print(f"1-minute load at end {os.getloadavg()[0]:.2f}; rerun: python benchmarks/suite_speeds.py --ipcs {args.ipcs}")


if __name__ == "__main__":
    main()
