"""Runs side by side (`ddorch compare`): settings, accuracies, time, memory, and their grids in one image.

Peak memory is the GPU's peak allocation during distillation, or on a CPU the process's peak
resident set (data set and libraries included), as each run recorded it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ddcore.errors import DDError
from ddcore.visualize import save_side_by_side
from orchestrator import run_schema as schema
from orchestrator.analyses import load_run_synthetic
from orchestrator.runs import get_run
from orchestrator.tracking import check_reachable, resolve_tracking_uri

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
    accuracy_names = sorted(
        {m for run in runs for m in run.data.metrics if m.startswith("acc_") and m.endswith("_mean")}
    )
    for name in accuracy_names:
        model = name.removeprefix("acc_").removesuffix("_mean")
        rows.append((f"{model} accuracy %", [_accuracy(run, model) for run in runs]))
    rows.append(("distill time s", [_number(run, schema.DISTILL_SECONDS, ".1f") for run in runs]))
    rows.append(("prepare time s (PAD experts)", [_number(run, schema.PREPARE_SECONDS, ".1f") for run in runs]))
    rows.append(("peak memory MiB", [_number(run, schema.PEAK_MEMORY_MIB, ".0f") for run in runs]))
    rows.append(("status", [run.info.status for run in runs]))

    sets, titles = [], []
    with tempfile.TemporaryDirectory() as folder:
        for run in runs:
            sets.append(load_run_synthetic(client, run.info.run_id, Path(folder) / run.info.run_id))
            titles.append(f"{run.info.run_id[:8]}: {run.data.params.get('method_config.init', '?')} init")
        image = save_side_by_side(sets, titles, out)
    return rows, [run.info.run_id[:8] for run in runs], image


def _accuracy(run, model: str) -> str:
    mean = run.data.metrics.get(schema.acc_mean(model))
    std = run.data.metrics.get(schema.acc_std(model), 0.0)
    return "-" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _number(run, metric: str, spec: str) -> str:
    value = run.data.metrics.get(metric)
    return "-" if value is None else format(value, spec)
