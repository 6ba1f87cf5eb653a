"""`ddorch lossless`: the smallest IPC whose set matches the full-data baseline."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from orchestrator.cli import options
from orchestrator.views import tables
from orchestrator.views.tables import console

# How the search decides and how many trials it runs, named as `LosslessConfig`'s fields.
SearchSettings = options.group("search")


def lossless(
    dataset: str = options.DatasetOption,
    method: str = typer.Option(
        "datadam",
        "--method",
        help="Method(s) searched one by one, comma-separated; add `random` for the random-real-subset curve: datadam,random.",
    ),
    model: str = typer.Option(
        "ConvNetD3",
        "--model",
        help="Network distilled with, evaluated on, and trained on the full data for the target.",
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="The method's preset (its per-IPC defaults; default: each method's first, see `ddorch run --help`).",
    ),
    search: SearchSettings = SearchSettings(),
    selection: options.Selection = options.selection_option(options.Selection.val),
    iterations: int | None = options.IterationsOption,
    evaluation: Annotated[
        options.EvalOptions, options.Offer("eval_protocol", "eval_epochs", "eval_precision", "force_bf16")
    ] = options.EvalOptions(),
    early_stop: bool = typer.Option(
        True, "--early-stop/--no-early-stop", help="Stop a trial halfway when it cannot become lossless."
    ),
    early_stop_margin: float = typer.Option(
        5.0,
        "--early-stop-margin",
        min=0,
        help="Stop when the halfway accuracy is this many points under the threshold.",
    ),
    ray: options.RayOptions = options.RayOptions(),
    dry_run: bool = options.DryRunOption,
    setup: Annotated[
        options.Setup, options.Offer("tracking_uri", "experiment", "output_dir", "data_root", "device")
    ] = options.Setup(),
) -> None:
    """Find the smallest IPC whose synthetic set matches the full-data accuracy (grid, then bisection, on Ray).

    Example: ddorch lossless --dataset digits --method datadam,random --max-ipc 50
    """
    from ddcore.data import given_data_root
    from orchestrator.engine.lossless import LosslessConfig, search_lossless

    config = LosslessConfig(
        **asdict(search),
        dataset=dataset,
        methods=tuple(options.split_names(method)),
        model=model,
        preset=preset,
        selection=selection.value,
        iterations=iterations,
        eval_protocol=evaluation.eval_protocol,
        eval_epochs=evaluation.eval_epochs,
        eval_precision=evaluation.eval_precision.value,
        force_bf16=evaluation.force_bf16,
        early_stop_margin=early_stop_margin if early_stop else None,
        address=ray.address,
        data_root=given_data_root(setup.data_root),  # a node without it resolves its own default
        tracking_uri=setup.tracking_uri,
        experiment=setup.experiment,
        output_dir=str(setup.output_dir),
        device=setup.device,
        verbose=ray.verbose,
    )
    ray.announce()
    if dry_run:
        from orchestrator.engine.cluster import check_resources, cluster_resources
        from orchestrator.engine.plan import lossless_plan

        available = cluster_resources(ray.address)
        check_resources(search.cpus_per_trial, search.gpus_per_trial, available)
        console.print("\n".join(lossless_plan(config, available).lines), soft_wrap=True, markup=False)
        return

    ray.quiet()
    report = search_lossless(config, watch=_lossless_view(config), progress=True)
    tables.show(tables.lossless(report, f"Lossless IPC on {dataset} with {model}", search.confidence))
    for name, result in report.results.items():
        console.print(f"{name}: {result.summary()}")
    trained, fixed = report.networks()
    console.print(f"sequential seeds: {trained} networks trained on the sets run here, {fixed} with a fixed count")
    if report.budget_spent:
        console.print(f"budget of {search.budget_hours:g} h spent: no new IPCs were launched after it")
    console.print(
        f"{report.launched} trial(s) run, the rest reused from MLflow; parent run {report.parent_run_id} "
        f"in {report.tracking_uri}; plot {report.plot}; table {report.table}"
    )
    if any(result.failed() for result in report.results.values()):  # as `sweep`: 1 = incomplete
        typer.echo("error: some trials failed (see above); the same command runs them again", err=True)
        raise typer.Exit(code=1)


def _lossless_view(config):
    from orchestrator.views.live import LosslessProgress, LosslessView

    name = f"{config.dataset} with {config.model}"
    return LosslessView(LosslessProgress(name, config.methods, config.max_ipc, config.max_concurrent), console)
