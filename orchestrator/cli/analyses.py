"""`ddorch cross-arch`, `ddorch continual` and `ddorch nas-proxy`: analyses of a distilled set."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli import options
from orchestrator.views import tables
from orchestrator.views.tables import console

# What an analysis reads and writes: the run's store, the data set, the device, a local copy of its files.
AnalysisSetup = Annotated[options.Setup, options.Offer("tracking_uri", "output_dir", "data_root", "device")]


def _analyse(kind: str, run_id: str, config, setup: options.Setup) -> None:
    from orchestrator.engine.analyses import analyse_run

    outcome = analyse_run(kind, run_id, config, setup.tracking_uri, setup.data_root, setup.output_dir, progress=True)
    tables.show(tables.analysis(outcome.result.table()))
    console.print(f"MLflow run {outcome.run_id} (child of {run_id}); table, numbers and plots in {outcome.folder}")


def cross_arch(
    run_id: str = typer.Argument(
        ..., help="An MLflow run (id or unique prefix) with a synthetic set, from `ddorch run` or a sweep trial."
    ),
    eval_models: str = typer.Option(
        "MLP,ConvNetD3,LeNet,AlexNet,VGG11,ResNet18", "--eval-models", help="Comma-separated networks to train."
    ),
    eval_seeds: int = typer.Option(3, "--eval-seeds", min=1, help="Networks trained per cell (seeds 0..N-1)."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Override the protocol's epochs (default: the protocol's)."
    ),
    evaluation: Annotated[
        options.EvalOptions, options.Offer("eval_protocol", "eval_batch_size", "eval_precision", "force_bf16")
    ] = options.EvalOptions(),
    setup: AnalysisSetup = options.Setup(),
) -> None:
    """Train each network on the run's synthetic set and on random real subsets of its size: the cross-architecture matrix.

    Example: ddorch cross-arch 1a2b3c4d --eval-models MLP,ConvNetD3,ResNet18
    """
    from ddcore.analyses.cross_arch import CrossArchConfig

    config = CrossArchConfig(
        tuple(options.split_names(eval_models)),
        eval_seeds,
        epochs,
        setup.device,
        evaluation.eval_protocol,
        evaluation.eval_batch_size,
        evaluation.eval_precision.value,
        evaluation.force_bf16,
    )
    _analyse("cross_arch", run_id, config, setup)


def continual(
    run_id: str = typer.Argument(..., help="An MLflow run (id or unique prefix) with a synthetic set."),
    classes_per_task: int = typer.Option(2, "--classes-per-task", help="Classes arriving per task."),
    model: str = typer.Option("ConvNetD3", "--model", help="Network trained on each memory (and for herding)."),
    eval_seeds: int = typer.Option(3, "--eval-seeds", min=1, help="Networks trained per memory (seeds 0..N-1)."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Epochs per memory training (default: the DC protocol's 1000)."
    ),
    herding_epochs: int = typer.Option(
        5, "--herding-epochs", help="Full-data protocol epochs of the herding feature network."
    ),
    memories: str = typer.Option("distilled,random,herding", "--memories", help="Memory types to compare."),
    setup: AnalysisSetup = options.Setup(),
) -> None:
    """Class-incremental learning: distilled memory vs random and herding exemplars, accuracy after each task.

    Example: ddorch continual 1a2b3c4d --classes-per-task 2
    """
    from ddcore.analyses.continual import ContinualConfig

    config = ContinualConfig(
        classes_per_task, model, eval_seeds, epochs, herding_epochs, tuple(options.split_names(memories)), setup.device
    )
    _analyse("continual", run_id, config, setup)


def nas_proxy(
    run_id: str = typer.Argument(..., help="An MLflow run (id or unique prefix) with a synthetic set."),
    eval_models: str | None = typer.Option(
        None, "--eval-models", help="Comma-separated candidate networks (default: 9 ConvNet variants)."
    ),
    eval_seeds: int = typer.Option(1, "--eval-seeds", min=1, help="Networks trained per candidate and side."),
    proxy_epochs: int | None = typer.Option(None, "--proxy-epochs", help="Epochs on the synthetic set (default 1000)."),
    full_epochs: int | None = typer.Option(
        None, "--full-epochs", help="Epochs on real data (default: the full-data protocol's 20)."
    ),
    full_per_class: int | None = typer.Option(
        None, "--full-per-class", help="Real images per class for the real side (default: all)."
    ),
    setup: AnalysisSetup = options.Setup(),
) -> None:
    """Rank a pool of networks by training on the synthetic set vs on real data: Spearman correlation, time saved.

    Example: ddorch nas-proxy 1a2b3c4d --eval-seeds 1
    """
    from ddcore.analyses.nas_proxy import DEFAULT_POOL, NasProxyConfig

    candidates = tuple(options.split_names(eval_models)) if eval_models else DEFAULT_POOL
    config = NasProxyConfig(candidates, eval_seeds, proxy_epochs, full_epochs, full_per_class, setup.device)
    _analyse("nas_proxy", run_id, config, setup)
