"""`ddorch run`: one trial (distil, evaluate, compare), or `--distill-seeds N` sets under one parent run."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer

from orchestrator.cli import options
from orchestrator.store.run_schema import SELECTED_ON
from orchestrator.views import tables
from orchestrator.views.tables import console


class MethodSettings(options.group("method")):
    """The method's preset and the settings given over it: the `flags` layer of `resolve_trial`."""

    def flags(self) -> dict:
        """The settings by name, None where not given (--bf16 not given leaves the preset's)."""
        given = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "preset"}
        return {**given, "bf16": self.bf16 or None}


def run(
    dataset: str = options.DatasetOption,
    method: str = typer.Option("datadam", "--method", help="A distillation method (datadam or pad)."),
    given: MethodSettings = MethodSettings(),
    settings: list[str] = typer.Option([], "--set", help="Any method setting, e.g. --set syn_steps=20 (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the distillation (the first one with --distill-seeds)."),
    distill_seeds: int = typer.Option(
        1,
        "--distill-seeds",
        help="Distilled sets (seeds --seed .. --seed + N - 1), each evaluated with --eval-seeds networks; "
        "N > 1: one MLflow run with a child run per set, the result as mean ± std over the sets' means.",
    ),
    eval_models: str | None = typer.Option(
        None,
        "--eval-models",
        help="Comma-separated networks trained on the synthetic set (default: the network distilled with).",
    ),
    eval_seeds: int = typer.Option(3, "--eval-seeds", min=1, help="Networks trained per architecture."),
    evaluation: options.EvalOptions = options.EvalOptions(),
    selection: options.Selection = options.selection_option(options.Selection.test),
    checkpoint_eval_every: int | None = typer.Option(
        None,
        "--checkpoint-eval-every",
        min=1,
        help="Also evaluate the first eval model (all seeds) every N iterations and log the best mean "
        "(selected as --selection says: on the test set, as DataDAM's and PAD's scripts report, it is not "
        "comparable with the final mean). Default: off.",
    ),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Compare with the cached full-data baseline."),
    setup: options.Setup = options.Setup(),
) -> None:
    """Distil one synthetic set, evaluate it, compare with the full-data baseline, log it all to MLflow.

    Example: ddorch run --dataset digits --method datadam --ipc 10 --iterations 200
    """
    from orchestrator.engine.experiments import parse_overrides
    from orchestrator.engine.resolve import Layers, check_data, resolve_trial
    from orchestrator.engine.sets import distill_seeds as check_distill_seeds
    from orchestrator.engine.trial import check_precision, run_trial
    from orchestrator.store.run_schema import run_name
    from orchestrator.store.tracking import Tracker

    check_distill_seeds(seed, distill_seeds)
    flags = {**given.flags(), "seed": seed, "device": setup.device}
    overrides = parse_overrides(settings, method)
    trial = resolve_trial(
        method,
        dataset,
        given.preset,
        None,  # --ipc is a flag: the preset's per-IPC defaults follow the IPC that wins
        evaluation.spec(tuple(options.split_names(eval_models or "")), eval_seeds),
        Layers(flags=flags, settings=overrides),
        checkpoint_eval_every=checkpoint_eval_every,
        selection=selection.value,
        baseline=baseline,
        data_root=str(setup.data_root) if setup.data_root else None,
        image_size=setup.image_size,
        force_bf16=evaluation.force_bf16,
    )
    check_data([trial])  # loaded here, as the trial will (it reuses the load)
    check_precision(trial)
    method_config, protocol = trial.method_config, trial.protocol()
    name = run_name(dataset, method, method_config.ipc, {"init": method_config.init, **overrides})
    tracker = Tracker.start(setup.tracking_uri, setup.experiment, run_name=name)
    title = (
        f"{method} on {dataset}: IPC {method_config.ipc}, {method_config.init} init, distilled with "
        f"{method_config.model}, evaluated with the {protocol.name} protocol"
    )
    if distill_seeds > 1:
        _run_sets(trial, distill_seeds, tracker, setup.experiment, name, setup.output_dir, title)
        return
    result = run_trial(trial, tracker, progress=True, output_dir=setup.output_dir)

    tables.show(tables.trial(result, title))
    if result.best_checkpoint:
        iteration, accuracy = result.best_checkpoint
        console.print(
            f"best checkpoint ({trial.eval.models[0]}, selected on the {SELECTED_ON[trial.selection]}): "
            f"{100 * accuracy:.2f} % test accuracy "
            f"at iteration {iteration}"
        )
    if result.prepare_seconds:  # a method that prepares (PAD), however short it took
        console.print(f"prepared in {result.prepare_seconds:.1f} s (PAD: its experts, cached or trained)")
    console.print(
        f"distilled in {result.distill_seconds:.1f} s ({method_config.iterations / result.distill_seconds:.1f} it/s, "
        f"peak memory {result.peak_memory_mib:.0f} MiB); "
        f"MLflow run {result.run_id} in {tracker.tracking_uri}; artefacts in {result.artefact_dir}"
    )


def _run_sets(trial, count: int, parent, experiment: str, name: str, output_dir: Path, title: str) -> None:
    """`ddorch run --distill-seeds N`, N > 1: the sets as child runs of `parent`, then the result over sets."""
    from orchestrator.engine.sets import run_sets
    from orchestrator.store.run_schema import Tag
    from orchestrator.store.tracking import Tracker

    def start_child(one, seed: int):
        return Tracker.start(
            parent.tracking_uri,
            experiment,
            run_name=f"{name} seed={seed}",
            parent_run_id=parent.run_id,
            tags={Tag.DISTILL_SEED: str(seed)},
        )

    result = run_sets(trial, count, parent, start_child, progress=True, output_dir=output_dir)
    tables.show(tables.sets(result, f"{title}; {count} distilled sets"))
    for model, summary in result.over_sets.items():
        console.print(f"{model}: {tables.over_sets_line(summary)}", soft_wrap=True)
    seconds = sum(s.distill_seconds for s in result.sets)
    console.print(
        f"distilled {count} sets in {seconds:.1f} s; MLflow run {result.run_id} (one child run per set) in "
        f"{parent.tracking_uri}; artefacts in {result.artefact_dir}",
        soft_wrap=True,
    )
