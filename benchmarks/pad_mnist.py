"""PAD benchmark: the expert stage and the distillation stage timed apart, then accuracy.

1. Speed-up of the expert stage: `--speedup-experts` experts of `--speedup-epochs` epochs trained
   one after the other in this process, then the same experts as parallel Ray tasks (in a
   throw-away cache, difficulty scores computed first and shared, so both time training only).
2. The experts PAD distils from, as Ray tasks, into the normal cache (`DDORCH_CACHE_DIR`): a
   second run, or a later `ddorch run --method pad` with the same expert settings, reuses them.
3. PAD distillation (the `paper` preset of the data set with the flags below), its time and peak
   memory (GPU: peak allocated; CPU: the process's peak resident set).
4. The final set (never the best checkpoint) evaluated with the DC protocol DataDAM's
   numbers use (benchmarks/datadam_accuracy.py: 1000 epochs, SGD, DSA), with PAD's learned lr and
   soft labels, over `--eval-seeds` seeds; `--random-real` adds a random real subset of the same size.

CPU budget (2 cores) for real MNIST, ConvNetD3, IPC 10:

    DDORCH_DATA_ROOT=/work/shared/data python benchmarks/pad_mnist.py --dataset mnist --ipc 10 \\
        --num-experts 4 --trajectory-epochs 8 --max-start-epoch 6 --current-max-start-epoch 3 \\
        --syn-steps 10 --iterations 200 --speedup-experts 2 --speedup-epochs 1 --device cpu

GPU (the preset: 10 experts x 20 epochs, 40 steps, 5000 iterations):

    python benchmarks/pad_mnist.py --dataset mnist --ipc 10 --device cuda --gpus-per-expert 0.25

Tiny check on the embedded digits: `python benchmarks/pad_mnist.py --dataset digits --tiny`.
Uses ddcore (and Ray), no MLflow, so it runs on a bare GPU machine too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddcore.data import load_dataset, resolve_data_root  # noqa: E402
from ddcore.evaluate import DC, evaluate  # noqa: E402
from ddcore.methods import get_method  # noqa: E402
from ddcore.methods.pad.difficulty import difficulty_scores  # noqa: E402
from ddcore.methods.pad.experts import obtain_experts  # noqa: E402
from ddcore.runtime import peak_memory_mib, reset_peak_memory, resolve_device  # noqa: E402
from orchestrator.engine.cluster import TaskPool, connect  # noqa: E402

TINY = dict(
    num_experts=2,
    trajectory_epochs=3,
    max_start_epoch=2,
    current_max_start_epoch=1,
    expert_epochs=1,
    syn_steps=2,
    iterations=4,
    model="MLP",
    log_every=2,
)


def speedup(
    data, expert_config, experts: int, epochs: int, data_root: str, cpus: float, gpus: float, device: str
) -> dict:
    """Seconds for the same experts in one process and as parallel Ray tasks, in a throw-away cache."""
    config = replace(expert_config, epochs=epochs)
    previous = os.environ.get("DDORCH_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["DDORCH_CACHE_DIR"] = cache
        try:
            if config.schedule is not None:
                difficulty_scores(data, config.difficulty, device)  # shared by both runs, not timed
            started = time.perf_counter()
            obtain_experts(data, config, experts, device=device)
            serial = time.perf_counter() - started
            started = time.perf_counter()
            obtain_experts(data, config, experts, TaskPool(cpus, gpus).map_unordered, data_root, refresh=True)
            parallel = time.perf_counter() - started
        finally:
            if previous is None:
                os.environ.pop("DDORCH_CACHE_DIR", None)
            else:
                os.environ["DDORCH_CACHE_DIR"] = previous
    return {
        "experts": experts,
        "epochs": epochs,
        "one_process_seconds": serial,
        "ray_tasks_seconds": parallel,
        "speedup": serial / parallel,
        "torch_threads_one_process": torch.get_num_threads(),
        "cpus_per_task": cpus,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--num-experts", type=int)
    parser.add_argument("--trajectory-epochs", type=int)
    parser.add_argument("--max-start-epoch", type=int)
    parser.add_argument("--current-max-start-epoch", type=int)
    parser.add_argument("--expert-epochs", type=int)
    parser.add_argument("--syn-steps", type=int)
    parser.add_argument("--batch-syn", type=int)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--expansion-end-iteration", type=int)
    parser.add_argument("--speedup-experts", type=int, default=2, help="0 skips the speed-up measurement")
    parser.add_argument("--speedup-epochs", type=int, default=1)
    parser.add_argument("--cpus-per-expert", type=float, default=1)
    parser.add_argument("--gpus-per-expert", type=float, default=0)
    parser.add_argument("--address", default=None, help="Ray cluster (default: a local instance)")
    parser.add_argument("--eval-seeds", type=int, default=3)
    parser.add_argument("--eval-epochs", type=int, default=DC.epochs)
    parser.add_argument(
        "--random-real", action="store_true", help="also evaluate a random real subset of the same size"
    )
    parser.add_argument("--tiny", action="store_true", help="a few seconds' settings to check the script end to end")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    data = load_dataset(args.dataset)
    data_root = str(resolve_data_root())
    flags = {
        name: getattr(args, name)
        for name in (
            "num_experts",
            "trajectory_epochs",
            "max_start_epoch",
            "current_max_start_epoch",
            "expert_epochs",
            "syn_steps",
            "batch_syn",
            "iterations",
            "expansion_end_iteration",
        )
    }
    config = get_method("pad").config("paper", args.dataset, args.ipc)
    config = config.with_overrides(**(TINY if args.tiny else {}), device=args.device)
    config = config.with_overrides(**flags)
    config.validate(data.class_counts())
    device = resolve_device(config.device)
    expert_config = config.expert_config(data.name, data.image_size)
    eval_epochs = 20 if args.tiny else args.eval_epochs
    connect(args.address)
    print(
        f"PAD on {args.dataset}: {config.num_experts} experts x {config.trajectory_epochs} epochs, IPC {config.ipc}, "
        f"{config.syn_steps} steps, {config.iterations} iterations, {config.model}, device {device}",
        flush=True,
    )

    result: dict = {
        "dataset": args.dataset,
        "config": asdict(config),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_count": os.cpu_count(),
    }
    if args.speedup_experts:
        result["speedup"] = speedup(
            data,
            expert_config,
            args.speedup_experts,
            1 if args.tiny else args.speedup_epochs,
            data_root,
            args.cpus_per_expert,
            args.gpus_per_expert,
            config.device,
        )
        s = result["speedup"]
        print(
            f"[speed-up] {s['experts']} experts x {s['epochs']} epochs: one process {s['one_process_seconds']:.1f} s, "
            f"Ray tasks {s['ray_tasks_seconds']:.1f} s, speed-up {s['speedup']:.2f}x",
            flush=True,
        )

    started = time.perf_counter()
    pool = TaskPool(args.cpus_per_expert, args.gpus_per_expert)
    bank = obtain_experts(
        data, expert_config, config.num_experts, pool.map_unordered, data_root, device=config.device, progress=True
    )
    result["experts"] = {
        "seconds": time.perf_counter() - started,
        "trained_now": len(bank.trained_now),
        "from_cache": len(bank) - len(bank.trained_now),
        "folder": str(bank.manifest.parent),
        "test_accuracy": [e["test_accuracy"] for e in json.loads(bank.manifest.read_text())["experts"].values()],
    }
    e = result["experts"]
    print(
        f"[experts] {e['trained_now']} trained, {e['from_cache']} cached, {e['seconds']:.1f} s; expert test accuracy "
        f"{100 * sum(e['test_accuracy']) / len(e['test_accuracy']):.2f} %",
        flush=True,
    )

    reset_peak_memory(device)
    losses: list[tuple[int, float]] = []
    started = time.perf_counter()
    synthetic = get_method("pad").distill(
        data, config, callback=lambda r: losses.append((r.iteration, r.losses["loss"])), progress=True
    )
    result["distill"] = {
        "seconds": time.perf_counter() - started,
        "peak_memory_mib": peak_memory_mib(device),
        "loss_curve": losses,
        "learned_lr": synthetic.learned_lr,
    }
    d = result["distill"]
    print(
        f"[distill] {d['seconds']:.1f} s ({config.iterations / d['seconds']:.3f} it/s), peak memory "
        f"{d['peak_memory_mib']:.0f} MiB, loss {losses[0][1]:.4f} -> {losses[-1][1]:.4f}, learned lr {synthetic.learned_lr:.4g}",
        flush=True,
    )

    protocol = replace(DC, epochs=eval_epochs)
    seeds = tuple(range(args.eval_seeds))
    final = evaluate(
        config.model,
        synthetic.images,
        synthetic.labels,
        data,
        protocol,
        seeds,
        config.device,
        lr=synthetic.learned_lr,
        dsa_strategy=config.dsa_strategy,
    )
    result["evaluation"] = {
        "protocol": asdict(protocol),
        "accuracies": [r.accuracy for r in final.runs],
        "mean": final.accuracy_mean,
        "std": final.accuracy_std,
    }
    print(
        f"[accuracy] {config.model}, {eval_epochs} epochs, {len(seeds)} seeds: "
        f"{100 * final.accuracy_mean:.2f} ± {100 * final.accuracy_std:.2f} %",
        flush=True,
    )
    if args.random_real:
        picked = data.sample_per_class(config.ipc, torch.Generator().manual_seed(0)).flatten()
        real = evaluate(
            config.model,
            data.train_images[picked],
            data.train_labels[picked],
            data,
            protocol,
            seeds,
            config.device,
            dsa_strategy=config.dsa_strategy,
        )
        result["random_real"] = {"mean": real.accuracy_mean, "std": real.accuracy_std}
        print(f"[random real subset] {100 * real.accuracy_mean:.2f} ± {100 * real.accuracy_std:.2f} %", flush=True)
    print(
        "DataDAM on the same protocol: benchmarks/RESULTS.md (DataDAM accuracy on MNIST) or "
        "benchmarks/datadam_accuracy.py --dataset mnist --ipc 10 --init real"
    )

    out = args.out or Path(f"pad_{args.dataset}_ipc{config.ipc}.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}; rerun: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
