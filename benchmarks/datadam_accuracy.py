"""DataDAM accuracy benchmark: distil, evaluate with the DC protocol, compare.

Prints, and writes as JSON: distillation time and iterations/s, the final synthetic set's mean
test accuracy over the evaluation seeds (never the best of several checkpoints), a random real
subset of the same size under the same protocol, and an accuracy-vs-iterations curve (one seed
per checkpoint) so a missed target shows how far more iterations would go.

    python benchmarks/datadam_accuracy.py --dataset mnist --ipc 10 --init real --iterations 20000

Uses ddcore only (no MLflow), so it runs on a bare GPU machine too. DDORCH_DATA_ROOT as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddcore.data import load_dataset  # noqa: E402
from ddcore.evaluate import DC, evaluate  # noqa: E402
from ddcore.methods import get_method  # noqa: E402
from ddcore.methods.base import StepReport  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--init", default="real")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--batch-real", type=int, default=None)
    parser.add_argument("--lr-images", type=float, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--eval-model", default=None, help="network trained on the set (default: the one distilled with)"
    )
    parser.add_argument(
        "--no-random", action="store_true", help="skip the random-real-subset row (saves its evaluation)"
    )
    parser.add_argument("--eval-seeds", type=int, default=3)
    parser.add_argument("--eval-epochs", type=int, default=DC.epochs)
    parser.add_argument("--checkpoints", type=int, default=4, help="evaluation points on the curve")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    data = load_dataset(args.dataset)
    config = (
        get_method("datadam")
        .config(args.preset, args.dataset, args.ipc)
        .with_overrides(
            init=args.init,
            iterations=args.iterations,
            batch_real=args.batch_real,
            lr_images=args.lr_images,
            model=args.model,
            bf16=args.bf16 or None,
            device=args.device,
            log_every=50,
        )
    )
    protocol = replace(DC, epochs=args.eval_epochs)
    eval_model = args.eval_model or config.model
    load_start = os.getloadavg()
    seeds = tuple(range(args.eval_seeds))
    every = max(config.log_every, config.iterations // max(1, args.checkpoints) // config.log_every * config.log_every)
    curve: list[tuple[int, float]] = []

    def on_step(report: StepReport) -> None:
        if report.iteration % every == 0 and report.iteration < config.iterations:
            snap = report.snapshot()
            point = evaluate(
                eval_model,
                snap.images,
                snap.labels,
                data,
                protocol,
                (0,),
                config.device,
                dsa_strategy=config.dsa_strategy,
            )
            curve.append((report.iteration, point.accuracy_mean))
            print(
                f"  iteration {report.iteration}: loss {report.losses['loss']:.4f}, acc (1 seed) {100 * point.accuracy_mean:.2f}",
                flush=True,
            )

    started = time.perf_counter()
    synthetic = get_method("datadam").distill(data, config, callback=on_step)
    wall = time.perf_counter() - started  # includes the curve's evaluations
    started = time.perf_counter()
    final = evaluate(
        eval_model,
        synthetic.images,
        synthetic.labels,
        data,
        protocol,
        seeds,
        config.device,
        dsa_strategy=config.dsa_strategy,
    )
    eval_seconds = time.perf_counter() - started
    curve.append((config.iterations, final.accuracy_mean))
    random_real = None
    if not args.no_random:
        picked = data.sample_per_class(config.ipc, torch.Generator().manual_seed(0)).flatten()
        random_real = evaluate(
            eval_model,
            data.train_images[picked],
            data.train_labels[picked],
            data,
            protocol,
            seeds,
            config.device,
            dsa_strategy=config.dsa_strategy,
        )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and config.device != "cpu" else "cpu"
    result = {
        "dataset": args.dataset,
        "ipc": config.ipc,
        "init": config.init,
        "preset": args.preset,
        "model": config.model,
        "norm": "batch" if config.model.endswith("BN") else "instance",
        "eval_model": eval_model,
        "iterations": config.iterations,
        "device": device,
        "distill_wall_seconds_incl_curve": wall,
        "eval_seconds": eval_seconds,
        "eval_protocol": asdict(protocol),
        "accuracy_mean": final.accuracy_mean,
        "accuracy_std": final.accuracy_std,
        "accuracy_per_seed": [run.accuracy for run in final.runs],
        "balanced_accuracy_mean": final.balanced_accuracy_mean,
        "random_real_accuracy_mean": random_real.accuracy_mean if random_real else None,
        "random_real_accuracy_std": random_real.accuracy_std if random_real else None,
        "curve": curve,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
        "config": config.to_dict(),
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("config", "eval_protocol")}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
