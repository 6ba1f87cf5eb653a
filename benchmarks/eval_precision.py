"""Evaluation precision: the `dc` protocol trained in fp32 and under bf16 autocast on one fixed set.

The set is a class-balanced random real MNIST subset (IPC 10 by default, subset seed 0: the same
images every run); DC's ConvNetD3 is trained on it with 3 seeds in fp32 (`dc`, the published
protocol) and 3 in bf16 (`dc-bf16`: the forwards under autocast, loss, weights and optimizer state
fp32; `ddcore.evaluate.EvalProtocol.precision`). It prints per-seed accuracy, mean ± std and the
training seconds of each precision, the time ratio fp32 / bf16, the load average at start and end
and the command to rerun, and appends the numbers as one JSON line to `--log`.

    DDORCH_DATA_ROOT=../shared/data python benchmarks/eval_precision.py [--epochs 1000] [--ipc 10] [--device auto]

Run it alone on idle cores: the ratio is only meaningful without other work on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddcore.data import get_spec, load_dataset  # noqa: E402
from ddcore.evaluate import EvalResult, evaluate, get_protocol  # noqa: E402
from ddcore.runtime import resolve_device  # noqa: E402

MODEL = "ConvNetD3"
LOG = Path(__file__).resolve().parent / "logs" / "eval_precision.jsonl"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000, help="epochs of the dc protocol (its own: 1000)")
    parser.add_argument("--ipc", type=int, default=10, help="images per class of the fixed real subset")
    parser.add_argument("--subset-seed", type=int, default=0, help="which random real subset")
    parser.add_argument("--seeds", type=int, default=3, help="networks trained per precision")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--log", type=Path, default=LOG, help="JSON-lines file the result is appended to")
    return parser.parse_args(argv)


def measure(precision: str, images, labels, data, args: argparse.Namespace) -> EvalResult:
    protocol = get_protocol("dc", epochs=args.epochs, precision=precision)
    result = evaluate(
        MODEL,
        images,
        labels,
        data,
        protocol,
        seeds=tuple(range(args.seeds)),
        device=args.device,
        dsa_strategy=get_spec("mnist").dsa_strategy,
    )
    accuracies = " ".join(f"{100 * r.accuracy:.2f}" for r in result.runs)
    print(
        f"  {protocol.name:<14} accuracy per seed % {accuracies}   mean {100 * result.accuracy_mean:.2f} ± "
        f"{100 * result.accuracy_std:.2f}   training {sum(r.train_seconds for r in result.runs):.1f} s",
        flush=True,
    )
    return result


def summary(result: EvalResult) -> dict:
    return {
        "protocol": result.protocol,
        "per_seed": [r.accuracy for r in result.runs],
        "mean": result.accuracy_mean,
        "std": result.accuracy_std,
        "train_seconds": sum(r.train_seconds for r in result.runs),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    command = "python benchmarks/eval_precision.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    load_start = os.getloadavg()[0]
    device = resolve_device(args.device)
    data = load_dataset("mnist")
    picked = data.sample_per_class(args.ipc, torch.Generator().manual_seed(args.subset_seed)).flatten()
    images, labels = data.train_images[picked], data.train_labels[picked]
    print(
        f"eval precision: {MODEL} on {len(images)} real MNIST images (IPC {args.ipc}, subset seed "
        f"{args.subset_seed}), dc {args.epochs} epochs, {args.seeds} seeds, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load at start {load_start:.2f}",
        flush=True,
    )
    started = time.time()
    fp32, bf16 = (summary(measure(p, images, labels, data, args)) for p in ("fp32", "bf16"))
    ratio = fp32["train_seconds"] / bf16["train_seconds"]
    load_end = os.getloadavg()[0]
    print(f"  time ratio fp32 / bf16 = {ratio:.2f}x (training)   load at end {load_end:.2f}")
    print(f"rerun: DDORCH_DATA_ROOT=../shared/data {command}")
    line = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "model": MODEL,
        "ipc": args.ipc,
        "subset_seed": args.subset_seed,
        "epochs": args.epochs,
        "fp32": fp32,
        "bf16": bf16,
        "ratio_fp32_over_bf16": ratio,
        "load_start": load_start,
        "load_end": load_end,
        "command": command,
    }
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as out:
        out.write(json.dumps(line) + "\n")
    print(f"appended to {args.log}")


if __name__ == "__main__":
    main()
