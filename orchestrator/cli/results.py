"""`ddorch results` and `ddorch runs`: what the store holds."""

from __future__ import annotations

import tempfile

import typer

from ddcore.errors import DDError
from orchestrator.cli import options
from orchestrator.views import tables
from orchestrator.views.tables import console


def results(
    sweep_name: str = typer.Argument(..., help="The sweep's name (default: the experiment's name)."),
    tracking_uri: str | None = options.TrackingUriOption,
    mlflow_experiment: str = options.ExperimentOption,
) -> None:
    """Print a finished sweep's results table again, from MLflow.

    Example: ddorch results digits_datadam
    """

    import pandas as pd
    from mlflow.tracking import MlflowClient

    from orchestrator.store.run_schema import SELECTED_ON, Tag, tag_filter
    from orchestrator.store.tracking import check_reachable, resolve_tracking_uri
    from orchestrator.views.report import winners_curse

    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(mlflow_experiment)
    runs = client.search_runs([found.experiment_id], tag_filter(Tag.SWEEP, sweep_name)) if found else []
    if not runs:
        raise DDError(f"no sweep named '{sweep_name}' in {uri}")
    with tempfile.TemporaryDirectory() as folder:
        table = pd.read_csv(client.download_artifacts(runs[0].info.run_id, "results.csv", folder))
    if "distill_sets" not in table:  # sweeps recorded before the column: one set per trial, as ever
        table.insert(table.columns.get_loc("error") + 1, "distill_sets", 1)
    if "selected_by" not in table:  # sweeps recorded before validation parts: ranked on the test set
        table.insert(table.columns.get_loc("distill_sets") + 1, "val_accuracy", None)
        table.insert(table.columns.get_loc("val_accuracy") + 1, "selected_by", "test")
    chose = SELECTED_ON[table["selected_by"].iloc[0]] if len(table) else SELECTED_ON["test"]
    console.print(
        f"Sweep {sweep_name} (parent run {runs[0].info.run_id}, {runs[0].info.status}), ranked on the {chose}"
    )
    console.print(table.to_string(index=False))
    for line in winners_curse(runs[0]):
        console.print(line, soft_wrap=True)


def runs(
    limit: int = typer.Option(20, "--limit", min=1, help="How many runs, newest first."),
    tracking_uri: str | None = options.TrackingUriOption,
    experiment: str = options.ExperimentOption,
) -> None:
    """List recent MLflow runs; any unique prefix of an id works wherever a command takes a run id.

    Example: ddorch runs --limit 5 --experiment ddorch
    """
    from mlflow.tracking import MlflowClient

    from orchestrator.store.runs import recent_runs
    from orchestrator.store.tracking import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    rows = (
        [
            r.run_id[:8],
            r.name,
            r.status,
            r.dataset,
            r.method,
            r.ipc,
            "-" if r.accuracy is None else f"{100 * r.accuracy:.2f}",
            f"{r.started:%Y-%m-%d %H:%M}",
        ]
        for r in recent_runs(MlflowClient(uri), experiment, limit)
    )
    columns = ("id", "name", "status", "data set", "method", "IPC", "accuracy %", "started")
    names = ("id", "name", "status", "data set", "method")
    tables.show(tables.table(f"Recent runs in {experiment} ({uri})", columns, rows, left=names))
