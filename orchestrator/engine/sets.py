"""Several distilled sets of one trial (`ddorch run --distill-seeds N`): the result over sets.

One distilled set is one draw of the distillation's randomness (its seed: initial images, real
batches, augmentation); the networks trained on it (`eval_seeds`) measure that set only. DC, DSA
and DM report the mean and std over several sets, each evaluated by several networks. Here the
sets are the trial with distillation seeds `seed, seed + 1, ..., seed + N - 1` (`seed`: the
method config's, 0 by default), each a whole `run_trial` logged as a child MLflow run of one
parent run (MLflow's `mlflow.parentRunId` tag, as sweeps nest their trials), and the parent holds
the summaries of `ddcore.spread.over_sets`: the headline mean and std over the sets' means, the
mean and std over all networks, and the between-set and within-set variance components.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ddcore.errors import DDError
from ddcore.spread import ESTIMATOR, OverSets, over_sets
from orchestrator.engine.trial import TrialConfig, TrialResult, describe, run_trial
from orchestrator.store import run_schema as schema
from orchestrator.store.run_schema import Tag
from orchestrator.store.tracking import Tracker
from orchestrator.store.trial_cache import TrialCache

# A set's child run, given the set's trial and its seed (MLflow or `FolderTracker`, nested under the parent).
StartChild = Callable[[TrialConfig, int], Tracker]


def distill_seeds(first: int, count: int) -> list[int]:
    """The distillation seeds of `count` sets starting at `first`; a one-line error for fewer than 1."""
    if count < 1:
        raise DDError(f"--distill-seeds must be at least 1 (the number of distilled sets), got {count}")
    return list(range(first, first + count))


def set_config(config: TrialConfig, seed: int) -> TrialConfig:
    """The trial of one set: the same settings with distillation seed `seed`."""
    return replace(config, method_config=replace(config.method_config, seed=seed))


@dataclass
class SetsResult:
    run_id: str  # the parent run
    seeds: list[int]
    sets: list[TrialResult]  # in seed order, each with its own child run
    over_sets: dict[str, OverSets]  # by eval model; empty when the sets were not evaluated (eval_seeds 0)
    artefact_dir: Path
    set_seconds: list[float]  # each set's wall time: distillation, evaluation, artefacts, logging


def run_sets(
    config: TrialConfig,
    count: int,
    parent: Tracker,
    start_child: StartChild,
    progress: bool = True,
    output_dir: Path | None = None,
    cache: Callable[[TrialConfig], TrialCache | None] | None = None,
) -> SetsResult:
    """Distil and evaluate `count` sets one after the other, each in its child run, then log the
    summaries over sets on `parent` (params: the trial's and `distill_seeds`) and finish it. A set that
    fails ends its child and the parent FAILED. `cache` gives a set its `TrialCache` (parts kept on disk)."""
    try:
        seeds = distill_seeds(config.method_config.seed, count)
        parent.log_params({**config.to_dict(), "distill_seeds": count})
        parent.set_tags(
            {
                Tag.NOTE: describe(config, count),
                Tag.DISTILL_SETS: str(count),
                Tag.DATASET: config.dataset,
                Tag.METHOD: config.method,
                Tag.PRESET: config.preset,
            }
        )
        sets, seconds = [], []
        for seed in seeds:
            one = set_config(config, seed)
            started = time.perf_counter()
            sets.append(
                run_trial(one, start_child(one, seed), progress, output_dir, cache=cache(one) if cache else None)
            )
            seconds.append(time.perf_counter() - started)
        summaries = summarize(config, sets)
        log_summaries(parent, summaries, count)
        folder = Path(output_dir or tempfile.mkdtemp(prefix="ddorch-")) / parent.run_id
        write_summary(parent, folder, config, seeds, sets, seconds, summaries)
    except BaseException as error:
        parent.finish(failure=f"{type(error).__name__}: {error}")
        raise
    parent.finish()
    return SetsResult(parent.run_id, seeds, sets, summaries, folder, seconds)


def summarize(config: TrialConfig, sets: list[TrialResult]) -> dict[str, OverSets]:
    if not config.eval.seeds:
        return {}
    return {
        name: over_sets([[run.accuracy for run in result.evaluations[name].runs] for result in sets])
        for name in config.eval.models
    }


def log_summaries(parent: Tracker, summaries: dict[str, OverSets], count: int) -> None:
    """The parent's metrics (names in `orchestrator.store.run_schema`); a component the data cannot tell is not logged."""
    metrics: dict[str, float] = {schema.DISTILL_SETS: count}
    for name, s in summaries.items():
        metrics.update(
            {
                schema.acc_mean_over_sets(name): s.mean_over_sets,
                schema.acc_std_over_sets(name): s.std_over_sets,
                schema.acc_mean_over_networks(name): s.mean_over_networks,
                schema.acc_std_over_networks(name): s.std_over_networks,
            }
        )
        if s.between_set_var is not None:
            metrics[schema.between_set_var(name)] = s.between_set_var
        if s.within_set_var is not None:
            metrics[schema.within_set_var(name)] = s.within_set_var
    parent.log_metrics(metrics)


def write_summary(
    parent: Tracker,
    folder: Path,
    config: TrialConfig,
    seeds: list[int],
    sets: list[TrialResult],
    seconds: list[float],
    summaries: dict[str, OverSets],
) -> None:
    """The parent's summary.json: every set (seed, child run, its networks' accuracies) and the summaries."""
    summary = {
        "run_id": parent.run_id,
        "config": config.to_dict(),
        "distill_seeds": seeds,
        "sets": [
            {
                "seed": seed,
                "run_id": result.run_id,
                "distill_seconds": result.distill_seconds,
                "wall_seconds": wall,
                "accuracies": {name: [run.accuracy for run in e.runs] for name, e in result.evaluations.items()},
            }
            for seed, result, wall in zip(seeds, sets, seconds)
        ],
        "over_sets": {name: {**asdict(s), "sets": s.sets, "estimator": ESTIMATOR} for name, s in summaries.items()},
        "note": "over_sets: std_over_sets is the population std of the sets' means (each over its networks); "
        "std_over_networks pools all networks of all sets; variances are in accuracy fraction squared",
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    parent.log_artifact(folder / "summary.json")
