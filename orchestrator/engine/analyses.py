"""Analyses of a finished run's synthetic set, recorded in MLflow: cross-architecture matrix,
continual learning, NAS proxy (`ddorch cross-arch | continual | nas-proxy RUN_ID`).

Where they go: each analysis is a new MLflow run, a child of the analysed run (tag
`mlflow.parentRunId`) and linked to it by `ddorch.source_run`, tagged `ddorch.analysis=<kind>`.
The analysed run stays as its trial left it (its params are immutable in MLflow, and one run may
be analysed several times with different settings); each analysis has its own params, status and
the command that reproduces it (`ddorch.command`). Its artefacts sit in one folder named after
the kind: `table.json` (the numbers as shown), `result.json` (every seed) and the plots. A sweep
trial that asks for the cross-architecture matrix itself (preset field `cross_arch_models`)
records the same folder on its own run. `ddorch report` reads both.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from ddcore.analyses.continual import ContinualConfig, check_continual, continual_learning
from ddcore.analyses.cross_arch import CrossArchConfig, check_cross_arch, cross_architecture
from ddcore.analyses.nas_proxy import NasProxyConfig, check_nas_proxy, nas_proxy
from ddcore.data import load_dataset
from ddcore.data.base import RealDataset
from ddcore.errors import DDError, error_line
from ddcore.synthetic import SyntheticSet
from ddcore.tables import ResultTable
from orchestrator.store.flags import canonical
from orchestrator.store.run_schema import Tag
from orchestrator.store.runs import get_run
from orchestrator.store.tracking import Tracker, check_reachable, resolve_tracking_uri

ANALYSIS_TAG, SOURCE_TAG, COMMAND_TAG = Tag.ANALYSIS, Tag.SOURCE_RUN, Tag.COMMAND


class AnalysisResult(Protocol):
    """What every analysis result offers: the table, every number, plots, flat metrics."""

    def table(self) -> ResultTable: ...

    def to_dict(self) -> dict[str, Any]: ...

    def save_plots(self, folder: Path) -> list[Path]: ...

    def metrics(self) -> dict[str, float]: ...


@dataclass
class SourceRun:
    """A finished run whose synthetic set is analysed, with the real data set it was distilled from."""

    run_id: str
    tracking_uri: str
    experiment_name: str
    synthetic: SyntheticSet
    data: RealDataset


def load_run_synthetic(client, run_id: str, folder: str | Path) -> SyntheticSet:
    """The run's `synthetic.pt` artefact (logged by orchestrator.engine.trial), downloaded into `folder`."""
    import os

    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own output says what was loaded
    try:
        local = client.download_artifacts(run_id, "synthetic.pt", str(folder))
    except (MlflowException, OSError):
        raise DDError(
            f"run {run_id} has no synthetic.pt artefact (did it fail, or is it a sweep's parent run?)"
        ) from None
    return SyntheticSet.load(local)


def open_source_run(run_id: str, tracking_uri: str | None, data_root: str | Path | None) -> SourceRun:
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    run = get_run(client, run_id, uri)
    run_id = run.info.run_id  # the full id of a prefix
    with tempfile.TemporaryDirectory() as folder:
        synthetic = load_run_synthetic(client, run_id, folder)
    data = load_dataset(synthetic.dataset, data_root, image_size=synthetic.images.shape[-1])
    experiment = client.get_experiment(run.info.experiment_id).name
    return SourceRun(run_id, uri, experiment, synthetic, data)


def record_analysis(tracker: Tracker, kind: str, result: AnalysisResult, output_dir: Path) -> Path:
    """Write the analysis's table, numbers and plots under `output_dir/<run>/<kind>/` and log them."""
    folder = output_dir / tracker.run_id / kind
    folder.mkdir(parents=True, exist_ok=True)
    result.table().save(folder / "table.json")
    (folder / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    for path in [folder / "table.json", folder / "result.json", *result.save_plots(folder)]:
        tracker.log_artifact(path, kind)
    tracker.log_metrics(result.metrics())
    return folder


@contextmanager
def analysis_run(source: SourceRun, kind: str, params: dict[str, Any], command: str) -> Iterator[Tracker]:
    """A child MLflow run of `source` for one analysis; FAILED with the reason if the analysis raises."""
    tracker = Tracker.start(
        source.tracking_uri,
        source.experiment_name,
        run_name=f"{kind}-{source.run_id[:8]}",
        tags={
            ANALYSIS_TAG: kind,
            SOURCE_TAG: source.run_id,
            COMMAND_TAG: command,
            Tag.DATASET: source.synthetic.dataset,
            Tag.METHOD: source.synthetic.method,
        },
        parent_run_id=source.run_id,
    )
    tracker.log_params(params)
    try:
        yield tracker
    except BaseException as error:
        tracker.finish(failure=error_line(error))
        raise
    tracker.finish()


@dataclass
class AnalysisOutcome:
    result: AnalysisResult
    run_id: str
    folder: Path


def run_analysis(
    source: SourceRun,
    kind: str,
    params: dict[str, Any],
    command: str,
    compute,
    output_dir: Path,
) -> AnalysisOutcome:
    """Compute an analysis (`compute()` returns its result) inside its own child run and record it."""
    with analysis_run(source, kind, params, command) as tracker:
        result = compute()
        folder = record_analysis(tracker, kind, result, output_dir)
    return AnalysisOutcome(result, tracker.run_id, folder)


# kind -> (config class, check(synthetic, data, config), compute(synthetic, data, config, progress) -> result)
ANALYSES = {
    "cross_arch": (CrossArchConfig, check_cross_arch, cross_architecture),
    "continual": (ContinualConfig, check_continual, continual_learning),
    "nas_proxy": (NasProxyConfig, check_nas_proxy, nas_proxy),
}


def command_line(kind: str, run_id: str, config: Any) -> str:
    """The `ddorch` command that reproduces an analysis: every config field as its flag (CLI flags
    are the config's field names with dashes, under their current names), so later default changes
    cannot alter it."""
    parts = ["ddorch", kind.replace("_", "-"), run_id]
    for spec in fields(config):
        value, flag = getattr(config, spec.name), f"--{canonical(spec.name.replace('_', '-'))}"
        if isinstance(value, bool):  # a switch: its flag alone, when on
            parts += [flag] if value else []
        elif value is not None:
            parts += [flag, ",".join(value) if isinstance(value, (tuple, list)) else str(value)]
    return shlex.join(parts)


def analyse_run(
    kind: str,
    run_id: str,
    config: Any,
    tracking_uri: str | None = None,
    data_root: str | Path | None = None,
    output_dir: Path = Path("runs"),
    progress: bool = False,
) -> AnalysisOutcome:
    """Run one analysis on a run's synthetic set and record it as a child run of that run (bad
    settings are reported before the child run is created)."""
    config_class, check, compute = ANALYSES[kind]
    if not isinstance(config, config_class):
        raise TypeError(f"{kind} takes a {config_class.__name__}, got {type(config).__name__}")
    source = open_source_run(run_id, tracking_uri, data_root)
    check(source.synthetic, source.data, config)
    return run_analysis(
        source,
        kind,
        asdict(config),
        command_line(kind, source.run_id, config),
        lambda: compute(source.synthetic, source.data, config, progress),
        output_dir.resolve(),
    )
