"""Runs by id prefix (as git takes commits) and the recent-runs listing of `ddorch runs`.

Every command that takes a run id goes through `get_run`, so a unique prefix works everywhere.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from datetime import datetime

from ddcore.errors import DDError
from orchestrator.store import run_schema as schema
from orchestrator.store.run_schema import Tag

FULL_ID = re.compile(r"[0-9a-f]{32}")
PREFIX = re.compile(r"[0-9a-f]{4,32}")
SHOWN_MATCHES = 10


def find_run(client, identifier: str, uri: str):
    """The run whose id is `identifier` or starts with it; None when none does.

    An ambiguous prefix fails in one line naming the matches; non-hex text matches nothing
    (the report also takes sweep names).
    """
    if FULL_ID.fullmatch(identifier):
        from mlflow.exceptions import MlflowException

        try:
            return client.get_run(identifier)
        except MlflowException:
            return None
    if not PREFIX.fullmatch(identifier):
        return None
    matches = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"attributes.run_id LIKE '{identifier}%'",
        max_results=SHOWN_MATCHES + 1,
    )
    if len(matches) > 1:
        shown = ", ".join(f"{r.info.run_id} ({r.info.run_name})" for r in matches[:SHOWN_MATCHES])
        more = " and more" if len(matches) > SHOWN_MATCHES else ""
        raise DDError(f"run id prefix '{identifier}' is ambiguous in {uri}: {shown}{more}; give more characters")
    return matches[0] if matches else None


def get_run(client, identifier: str, uri: str):
    """Like `find_run`, but a missing run is an error."""
    if re.fullmatch(r"[0-9a-f]{1,3}", identifier):
        raise DDError(f"run id prefix '{identifier}' is too short: give at least 4 characters")
    run = find_run(client, identifier, uri)
    if run is None:
        raise DDError(f"no run '{identifier}' in {uri}; `ddorch runs` lists the recent ones")
    return run


@dataclass(frozen=True)
class RunRow:
    """One line of `ddorch runs`."""

    run_id: str
    name: str
    status: str
    dataset: str
    method: str
    ipc: str
    accuracy: float | None
    started: datetime


def recent_runs(client, experiment: str, limit: int) -> list[RunRow]:
    """The experiment's newest runs first (sweep trials, analyses and lossless trials included)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise DDError(f"no MLflow experiment named '{experiment}'")
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit)
    return [_row(run) for run in runs]


def _row(run) -> RunRow:
    params, tags = run.data.params, run.data.tags
    return RunRow(
        run_id=run.info.run_id,
        name=run.info.run_name or "-",
        status=_status(run),
        dataset=tags.get(Tag.DATASET) or params.get("dataset", "-"),
        method=tags.get(Tag.METHOD) or params.get("method", "-"),
        ipc=tags.get(Tag.IPC) or params.get("method_config.ipc", "-"),
        accuracy=_accuracy(run),
        started=datetime.fromtimestamp(run.info.start_time / 1000),
    )


def _status(run) -> str:
    if schema.stopped_early(run.info.status, run.data.tags):
        return "stopped early"
    return run.info.status.lower()


def first_eval_model(run) -> str | None:
    """The network a run's headline accuracy is measured on (the first it was evaluated with)."""
    try:
        return ast.literal_eval(run.data.params.get("eval_models", "[]"))[0]
    except (ValueError, SyntaxError, IndexError):
        return None


def _accuracy(run) -> float | None:
    """The first evaluation network's final mean (over sets, for a run of several); a sweep's parent: its
    best trial's."""
    metrics = run.data.metrics
    first = first_eval_model(run)
    found = schema.headline(metrics, first) if first else None
    return found.mean if found else metrics.get(f"best_{schema.EVAL_ACCURACY}")


def set_runs(client, run) -> list:
    """A run of several distilled sets (`ddorch run --distill-seeds N`): its sets' child runs, by seed;
    any other run: none."""
    if Tag.DISTILL_SETS not in run.data.tags:
        return []
    children = client.search_runs(
        [run.info.experiment_id], schema.tag_filter(Tag.PARENT, run.info.run_id), max_results=1000
    )
    return sorted(children, key=lambda child: int(child.data.tags.get(Tag.DISTILL_SEED, "0")))
