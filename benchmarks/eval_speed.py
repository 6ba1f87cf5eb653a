"""Evaluation speed: K seeds trained as one wide network (`ddcore.models.wide`) against K runs in a row.

The setting of the performance issue: MNIST (real images when found), a class-balanced random real
subset at each IPC, DC's ConvNetD3 (32 px maps), the `dc` protocol (batch 256, DSA with MNIST's
strategy, lr x0.1 at half), 3 seeds. Both paths train the same networks (same initialisations,
shuffles and augmentations; tests/test_wide.py checks equality in float64), so the per-seed
accuracies should agree up to float32 drift. The time of an evaluation is proportional to its
epochs, so `--epochs` (default 100 of the protocol's 1000) gives the ratio at a tenth of the cost.

    DDORCH_DATA_ROOT=../shared/data python benchmarks/eval_speed.py --ipc 1,10 [--epochs 100] [--profile]

Run it alone on idle cores (it prints the load average at start and end).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddcore.data import get_spec, load_dataset  # noqa: E402
from ddcore.evaluate import get_protocol, train_and_test, train_and_test_seeds  # noqa: E402

MODEL = "ConvNetD3"
CPU = torch.device("cpu")


def subset(data, ipc: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    picks = [torch.nonzero(data.train_labels == c).flatten() for c in range(data.num_classes)]
    index = torch.cat([p[torch.randperm(len(p), generator=g)[:ipc]] for p in picks])
    return data.train_images[index], data.train_labels[index]


def sequential(images, labels, data, protocol, seeds, strategy) -> list:
    return [train_and_test(MODEL, images, labels, data, protocol, s, CPU, None, strategy) for s in seeds]


def batched(images, labels, data, protocol, seeds, strategy) -> list:
    return train_and_test_seeds(MODEL, images, labels, data, protocol, seeds, CPU, None, strategy, batch_seeds=True)


def timed(label: str, fn, setting: tuple) -> tuple[float, list]:
    started = time.perf_counter()
    runs = fn(*setting)
    seconds = time.perf_counter() - started
    training = sum(r.train_seconds for r in runs)
    accuracies = " ".join(f"{100 * r.accuracy:.2f}" for r in runs)
    print(
        f"  {label:<10} {seconds:8.1f} s in all, {training:8.1f} s training   accuracy per seed % {accuracies}",
        flush=True,
    )
    return seconds, runs


def profile(label: str, fn, setting: tuple) -> None:
    from torch.profiler import profile as torch_profile

    with torch_profile() as prof:
        fn(*setting)
    print(f"--- profile: {label}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipc", default="1,10", help="comma-separated IPCs")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the dc protocol to time (of 1000)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also profile 5 epochs of each path")
    args = parser.parse_args()

    data = load_dataset("mnist")
    spec = get_spec("mnist")
    protocol = get_protocol("dc", epochs=args.epochs)
    seeds = tuple(range(args.seeds))
    print(
        f"eval speed: {MODEL}, {protocol.name}, seeds {seeds}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    for ipc in (int(v) for v in args.ipc.split(",")):
        images, labels = subset(data, ipc)
        print(f"IPC {ipc} ({len(images)} images), {args.epochs} epochs:", flush=True)

        setting = (images, labels, data, protocol, seeds, spec.dsa_strategy)
        seq_seconds, seq_runs = timed("sequential", sequential, setting)
        wide_seconds, wide_runs = timed("batched", batched, setting)
        gap = statistics.fmean(r.accuracy for r in wide_runs) - statistics.fmean(r.accuracy for r in seq_runs)
        training_ratio = sum(r.train_seconds for r in seq_runs) / sum(r.train_seconds for r in wide_runs)
        print(
            f"  ratio sequential / batched = {seq_seconds / wide_seconds:.2f}x in all, {training_ratio:.2f}x training  "
            f"(mean accuracy batched - sequential: {100 * gap:+.2f} points)",
            flush=True,
        )
        if args.profile:
            short = (images, labels, data, get_protocol("dc", epochs=5), seeds, spec.dsa_strategy)
            profile(f"IPC {ipc} sequential, 5 epochs", sequential, short)
            profile(f"IPC {ipc} batched, 5 epochs", batched, short)
    print(f"load at end {os.getloadavg()[0]:.2f}")
    print("rerun: DDORCH_DATA_ROOT=../shared/data python benchmarks/eval_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
