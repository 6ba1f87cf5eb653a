"""Runs side by side (`ddorch compare`): settings, accuracies, time, memory, and their grids in one image.

Peak memory is the GPU's peak allocation during distillation, or on a CPU the process's peak
resident set (data set and libraries included), as each run recorded it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ddcore.errors import DDError
from ddcore.tables import squared_points
from ddcore.visualize import save_side_by_side
from orchestrator.engine.analyses import load_run_synthetic
from orchestrator.store import run_schema as schema
from orchestrator.store.run_schema import Tag
from orchestrator.store.runs import get_run, set_runs
from orchestrator.store.tracking import check_reachable, resolve_tracking_uri

SETTINGS = (
    "dataset",
    "method",
    "method_config.ipc",
    "method_config.init",
    "method_config.model",
    "method_config.iterations",
)


def compare_runs(
    run_ids: list[str], tracking_uri: str | None, out: Path
) -> tuple[list[tuple[str, list[str]]], list[str], Path]:
    """Rows (label, one value per run), column titles, and the path of the combined grid image."""
    from mlflow.tracking import MlflowClient

    if len(run_ids) < 2:
        raise DDError("compare needs at least two run ids")
    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    runs = [get_run(client, run_id, uri) for run_id in run_ids]

    rows = [(name.split(".")[-1], [run.data.params.get(name, "-") for run in runs]) for name in SETTINGS]
    rows.append(("distilled sets", [str(int(run.data.metrics.get(schema.DISTILL_SETS, 1))) for run in runs]))
    models = sorted({m for run in runs for m in schema.evaluated_models(run.data.metrics)})
    several = any(schema.DISTILL_SETS in run.data.metrics for run in runs)
    for model in models:
        rows.append((f"{model} accuracy %", [_accuracy(run, model) for run in runs]))
        if several:  # the spread's two sources, where a run can tell them
            rows.append((f"{model} over all networks %", [_over_networks(run, model) for run in runs]))
            for label, metric in (("between sets", schema.between_set_var), ("within a set", schema.within_set_var)):
                rows.append(
                    (
                        f"{model} variance {label} %²",
                        [squared_points(run.data.metrics.get(metric(model))) for run in runs],
                    )
                )
    rows.append(("distill time s", [_number(run, schema.DISTILL_SECONDS, ".1f") for run in runs]))
    rows.append(("prepare time s (PAD experts)", [_number(run, schema.PREPARE_SECONDS, ".1f") for run in runs]))
    rows.append(("peak memory MiB", [_number(run, schema.PEAK_MEMORY_MIB, ".0f") for run in runs]))
    rows.append(("status", [run.info.status for run in runs]))

    sets, titles = [], []
    with tempfile.TemporaryDirectory() as folder:
        for run in runs:
            first_set = next(iter(set_runs(client, run)), None)  # a run of several sets: its first set's grid
            source = first_set or run
            sets.append(load_run_synthetic(client, source.info.run_id, Path(folder) / source.info.run_id))
            shown = f", set of seed {first_set.data.tags.get(Tag.DISTILL_SEED, '?')}" if first_set else ""
            titles.append(f"{run.info.run_id[:8]}: {run.data.params.get('method_config.init', '?')} init{shown}")
        image = save_side_by_side(sets, titles, out)
    return rows, [run.info.run_id[:8] for run in runs], image


def _accuracy(run, model: str) -> str:
    found = schema.headline(run.data.metrics, model)
    return "-" if found is None else found.text()


def _over_networks(run, model: str) -> str:
    metrics = run.data.metrics
    mean = metrics.get(schema.acc_mean_over_networks(model), metrics.get(schema.acc_mean(model)))
    std = metrics.get(schema.acc_std_over_networks(model), metrics.get(schema.acc_std(model), 0.0))
    return "-" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _number(run, metric: str, spec: str) -> str:
    value = run.data.metrics.get(metric)
    return "-" if value is None else format(value, spec)
