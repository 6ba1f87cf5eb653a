"""`ddorch baseline`: a network trained on the whole real training set (cached), the reference a set is judged by."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli import options
from orchestrator.views import tables
from orchestrator.views.tables import console


def baseline(
    dataset: str = options.DatasetOption,
    model: str = typer.Option("ConvNetD3", "--model", help="A name from `ddorch models`."),
    eval_seeds: int = typer.Option(1, "--eval-seeds", min=1, help="Networks trained (seeds 0..N-1)."),
    protocol: str = typer.Option(
        "full", "--protocol", help=f"full (the default) or a synthetic-set protocol: {options.PROTOCOL_CHOICES}."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Training batch size (default: the data set's full-data batch, 256; 32 for digits and mhist).",
    ),
    refresh: bool = typer.Option(False, "--refresh", help="Retrain even if a cached result exists."),
    setup: Annotated[options.Setup, options.Offer("data_root", "image_size", "device")] = options.Setup(),
    download: bool = options.DownloadOption,
) -> None:
    """Train MODEL on the whole real training set and test it: the full-data upper bound.

    Example: ddorch baseline --dataset digits --model ConvNetD3 --eval-seeds 3
    """
    from ddcore.baseline import baseline_protocol, cache_dir, full_data_baseline
    from ddcore.data import load_dataset
    from ddcore.evaluate import get_protocol

    chosen_protocol = (
        baseline_protocol(dataset, batch_size) if protocol == "full" else get_protocol(protocol, batch_size)
    )
    data = load_dataset(dataset, setup.data_root, setup.image_size, download)
    console.print(
        f"{data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test images, "
        f"{data.channels}x{data.image_size}x{data.image_size}, {data.num_classes} classes"
    )
    result, from_cache = full_data_baseline(
        data, model, tuple(range(eval_seeds)), chosen_protocol, setup.device, refresh=refresh, progress=True
    )
    console.print(
        tables.baseline(
            result, from_cache, f"Full-data baseline: {model} on {dataset} ({chosen_protocol.name} protocol)"
        )
    )
    console.print(
        f"accuracy {100 * result.accuracy_mean:.2f} ± {100 * result.accuracy_std:.2f} %, "
        f"balanced {100 * result.balanced_accuracy_mean:.2f} %, "
        f"{result.flops_per_image / 1e6:.2f} MFLOPs per image (fvcore: 1 multiply-add = 1 FLOP)"
    )
    console.print(f"results cached in {cache_dir() / 'baselines'}")
