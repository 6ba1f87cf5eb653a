"""`ddorch models`, `ddorch datasets` and `ddorch env`: what this install and this machine offer."""

from __future__ import annotations

from pathlib import Path

import typer

from ddcore.data import DATASET_NAMES, DATASETS
from orchestrator.cli import options
from orchestrator.views import tables


def models(
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help=f"Take the input shape from a data set: {DATASET_NAMES} (default: use the three options below).",
    ),
    channels: int = typer.Option(1, "--channels", min=1, help="Input channels."),
    image_size: int = typer.Option(28, "--image-size", min=8, help="Input height and width."),
    num_classes: int = typer.Option(10, "--num-classes", min=2, help="Output classes."),
) -> None:
    """List the registered networks with their parameter counts and FLOPs for one input shape.

    Example: ddorch models --dataset mnist
    """
    from ddcore.data import get_spec
    from ddcore.evaluate import count_flops
    from ddcore.models import get_model, list_models, parameter_count

    if dataset:
        spec = get_spec(dataset)
        channels, image_size, num_classes = spec.channels, spec.image_size, spec.num_classes

    rows = []
    for name in list_models():
        net = get_model(name, channels, num_classes, image_size)
        rows.append([name, f"{parameter_count(net):,}", f"{count_flops(net, channels, image_size) / 1e6:.2f}"])
    title = f"Networks for {channels}x{image_size}x{image_size} inputs, {num_classes} classes"
    tables.show(tables.table(title, ("model", "parameters", "MFLOPs / image"), rows))


def datasets(
    data_root: Path | None = options.DataRootOption,
) -> None:
    """List the data sets and whether each is found under the data root.

    Example: ddorch datasets --data-root ~/data
    """
    from ddcore.data import dataset_status, resolve_data_root

    root = resolve_data_root(data_root)
    rows = [[name, dataset_status(name, root)[1]] for name in DATASETS]
    tables.show(tables.table(f"Data sets (data root: {root})", ("name", "status"), rows, first_left=True))


def env(
    calibrate: bool = typer.Option(
        False,
        "--calibrate",
        help="Also time one DataDAM iteration and one evaluation step in each precision native here "
        "(a few seconds: the dry runs' calibration).",
    ),
    data_root: Path | None = options.DataRootOption,
    tracking_uri: str | None = options.TrackingUriOption,
) -> None:
    """Print this machine's set-up as plain text to paste into an issue: versions, CPU and GPUs, the
    precisions they compute natively, the data sets found, the tracking store and cache folder in use.

    Example: ddorch env --calibrate | cat
    """
    from orchestrator.engine.environment import calibration_lines, environment_lines

    lines = environment_lines(data_root, tracking_uri)
    typer.echo("\n".join(lines))
    if calibrate:
        typer.echo("\n".join(calibration_lines(data_root)))
