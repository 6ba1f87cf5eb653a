"""Ray Tune sweeps: many trials of `run_trial`, early-stopped by ASHA, one MLflow parent run.

Each trial is the same trial function as `ddorch run`, with an evaluation every `report_every`
distillation iterations that it reports to Tune (metric `val_eval_accuracy`, on the validation part
held out of the training images, or `eval_accuracy` with `selection` test; time attribute
`iteration`) together with a checkpoint of the synthetic set, so ASHA can stop weak trials and a
restored trial continues where it stopped. Trials log to one child MLflow run each, nested under
the sweep's parent run and tagged with the trial's id and a hash of its settings: a restored
trial logs into its own run (its checkpoint names it) instead of starting a duplicate, and a
trial that a restored sweep re-sampled with other settings gets a new run.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ddcore.baseline import cache_dir, caching_in
from ddcore.errors import DDError
from ddcore.synthetic import SyntheticSet
from ddcore.visualize import save_grids
from orchestrator.engine.cluster import check_resources
from orchestrator.engine.experiments import ExperimentPreset, SearchSpace
from orchestrator.engine.resolve import Layers, check_data, resolve_trial
from orchestrator.engine.trial import TrialConfig, check_precision, run_trial, trial_key
from orchestrator.engine.trial_hooks import eval_metrics
from orchestrator.store import run_schema as schema
from orchestrator.store.run_schema import Status, Tag, tag_filter
from orchestrator.store.shared_cache import sharing
from orchestrator.store.tracking import Tracker, command_line
from orchestrator.store.trial_cache import Resume

TIME_ATTR = "iteration"
DISTILL_SETS_PER_TRIAL = 1  # a trial distils one set: its accuracy (and the best trial's) rests on one set


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs from the driver; paths are absolute (trials run in their own folder)."""

    tracking_uri: str
    experiment: str
    parent_run_id: str
    output_dir: str
    data_root: str | None
    device: str = "auto"
    cache_dir: str | None = None  # the driver's baseline cache (DDORCH_CACHE_DIR); trials fill and share it
    source: str = ""  # the driver's command line (MLflow's source name on every trial run)
    force_bf16: bool = False  # trials run bf16 even where their hardware lacks it (`--force-bf16`)


def build_trial(preset: ExperimentPreset, sampled: dict[str, Any], context: SweepContext) -> TrialConfig:
    """The typed trial config of one sampled point (`preset_trial` with the driver's paths and device)."""
    return preset_trial(preset, sampled, context.data_root, context.device, context.force_bf16)


def preset_trial(
    preset: ExperimentPreset, sampled: dict[str, Any], data_root: str | None, device: str, force_bf16: bool = False
) -> TrialConfig:
    """The trial of one sampled point: the preset's fixed values, the point, the device and log cadence
    (flags) and `--set`, in `resolve_trial`'s order."""
    flags = {"device": device, "log_every": _log_every(preset)}
    return resolve_trial(
        preset.method,
        preset.dataset,
        preset.preset,
        None,
        preset.eval,
        Layers(fixed=preset.fixed, sampled=sampled, flags=flags, settings=preset.settings),
        data_root=data_root,
        cross_arch_models=preset.cross_arch_models,
        force_bf16=force_bf16,
        selection=preset.selection,
    )


def check_sweep(
    preset: ExperimentPreset, space: SearchSpace, data_root: str | None, device: str, force_bf16: bool, local: bool
) -> None:
    """Every trial the sweep can sample, refused in one line before Ray starts or a run is recorded:
    its values (`resolve_trial`) and, for trials that run on this machine, its data and this
    machine's bf16 (`check_precision`)."""
    from orchestrator.engine.plan import sweep_points

    trials = [preset_trial(preset, point, data_root, device, force_bf16) for point in sweep_points(space)[0]]
    if local:
        check_data(trials)
        for trial in trials:
            check_precision(trial)


def trial_length(preset: ExperimentPreset) -> int:
    """Iterations of a trial that runs to its end (ASHA's `max_t`); paths play no part in it."""
    return preset_trial(preset, {}, None, "auto").method_config.iterations


def _log_every(preset: ExperimentPreset) -> int:
    return max(1, min(10, preset.report_every))


def trainable(sampled: dict[str, Any], preset: ExperimentPreset, context: SweepContext) -> None:
    """One Ray Tune trial (function API), caching where the driver does, shared through its tracking server."""
    with caching_in(context.cache_dir), sharing(context.tracking_uri):
        _trial(sampled, preset, context)


def _trial(sampled: dict[str, Any], preset: ExperimentPreset, context: SweepContext) -> None:
    import ray
    from ray import tune

    resume, checkpoint_run_id = _restore(tune.get_checkpoint())
    trial = build_trial(preset, sampled, context)
    trial_id = tune.get_context().get_trial_id()
    key = trial_key(trial)
    existing, stale = _child_runs(context, trial_id, key)  # a retry, or a restored sweep
    if existing is None or existing.info.run_id != checkpoint_run_id:
        resume = None  # never continue a set distilled with other settings
    if existing is not None and existing.info.status == Status.FINISHED:
        # Finished before the driver died but after Ray's last snapshot: report, don't redo.
        _report_finished(existing, trial)
        return
    tracker = _child_tracker(context, existing, trial, sampled, trial_id, key)
    _supersede(tracker, stale, trial_id)
    node_id = ray.get_runtime_context().get_node_id()
    tracker.set_tags({Tag.NODE_ID: node_id})

    def report(iteration: int, synthetic: SyntheticSet, accuracy: float) -> None:
        with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as pictures:
            synthetic.save(Path(folder) / "synthetic.pt")
            # The latest set and its grids in MLflow too: a trial ASHA stops keeps what it had.
            tracker.log_artifact(Path(folder) / "synthetic.pt")
            for path in save_grids(synthetic, pictures):
                tracker.log_artifact(path, "grids")
            (Path(folder) / "state.json").write_text(
                json.dumps({"iteration": iteration, "child_run_id": tracker.run_id})
            )
            tune.report(
                {metric(preset): accuracy, TIME_ATTR: iteration, "child_run_id": tracker.run_id},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )

    result = run_trial(
        trial,
        tracker,
        progress=False,
        output_dir=Path(context.output_dir),
        report_every=preset.report_every,
        on_checkpoint=report,
        resume=resume,
    )
    first = result.evaluations[trial.eval.models[0]]
    tune.report(
        {
            **eval_metrics(first),
            TIME_ATTR: trial.method_config.iterations,
            "child_run_id": tracker.run_id,
            "final_accuracy_std": first.accuracy_std,
            "distill_seconds": result.distill_seconds,
            "node_id": node_id,
        }
    )


def _report_finished(run, trial: TrialConfig) -> None:
    from ray import tune

    model, metrics = trial.eval.models[0], run.data.metrics
    finished = {schema.EVAL_ACCURACY: schema.acc_mean, schema.VAL_EVAL_ACCURACY: schema.val_acc_mean}
    tune.report(
        {
            **{name: metrics[per_model(model)] for name, per_model in finished.items() if per_model(model) in metrics},
            TIME_ATTR: trial.method_config.iterations,
            "child_run_id": run.info.run_id,
            "node_id": run.data.tags.get(Tag.NODE_ID, ""),
        }
    )


def metric(preset: ExperimentPreset) -> str:
    """What ASHA reads and the sweep ranks by: the validation part's accuracy, or the test set's."""
    return schema.eval_metric(preset.selection)


def _child_tracker(
    context: SweepContext, existing, trial: TrialConfig, sampled: dict[str, Any], trial_id: str, key: str
) -> Tracker:
    """The trial's child run: its own again (running once more), else a new one named by what it is,
    tagged with its trial id and settings."""
    if existing is not None:
        tracker = Tracker(context.tracking_uri, existing.info.experiment_id, existing.info.run_id)
        tracker.client.set_terminated(existing.info.run_id, Status.RUNNING)
        return tracker
    return Tracker.start(
        context.tracking_uri,
        context.experiment,
        run_name=schema.run_name(trial.dataset, trial.method, trial.method_config.ipc, sampled),
        tags={Tag.TRIAL_ID: trial_id, Tag.TRIAL_KEY: key},
        parent_run_id=context.parent_run_id,
        source=context.source,
    )


def _child_runs(context: SweepContext, trial_id: str, key: str):
    """The trial's own MLflow child run (its id and settings match) if any, and the stale ones.

    A restored sweep re-samples the trials Ray created after its last snapshot under the same
    trial ids: a run of that id with other settings (`trial_key`) is another trial's, never reused.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(context.tracking_uri)
    experiment = client.get_experiment_by_name(context.experiment)
    runs = client.search_runs(
        [experiment.experiment_id],
        f"{tag_filter(Tag.TRIAL_ID, trial_id)} and {tag_filter(Tag.PARENT, context.parent_run_id)}",
    )
    live = [r for r in runs if Tag.SUPERSEDED not in r.data.tags]
    own = [r for r in live if r.data.tags.get(Tag.TRIAL_KEY) == key]
    stale = [r for r in live if r.data.tags.get(Tag.TRIAL_KEY) != key]
    return (own[0] if own else None), stale


def _supersede(tracker: Tracker, stale: list, trial_id: str) -> None:
    """Point stale runs of this trial id at the run that replaced them; end any left RUNNING."""
    for run in stale:
        tracker.client.set_tag(run.info.run_id, Tag.SUPERSEDED, tracker.run_id)
        if run.info.status == Status.RUNNING:  # its worker died with the driver
            Tracker(tracker.tracking_uri, tracker.experiment_id, run.info.run_id).finish(
                stopped=f"superseded by run {tracker.run_id}: the resumed sweep gave trial {trial_id} other settings"
            )


def _restore(checkpoint) -> tuple[Resume | None, str | None]:
    if checkpoint is None:
        return None, None
    with checkpoint.as_directory() as folder:
        state = json.loads((Path(folder) / "state.json").read_text())
        synthetic = SyntheticSet.load(Path(folder) / "synthetic.pt")
    return Resume(synthetic, state["iteration"]), state["child_run_id"]


@dataclass
class SweepSettings:
    """Flags of `ddorch sweep` after defaults from the preset are applied."""

    name: str
    num_samples: int
    max_concurrent: int
    cpus_per_trial: float
    gpus_per_trial: float
    storage_path: str
    max_failures: int = 2
    seed: int | None = None  # of the search: the same seed samples the same trial settings


def _sweep_path(settings: SweepSettings) -> Path:
    return Path(settings.storage_path) / settings.name


def check_resumable(name: str, storage_path: str) -> None:
    """`--resume` of a sweep Ray never snapshotted is a typo or the wrong folder: one line, nothing started."""
    from ray import tune

    if not tune.Tuner.can_restore(str(Path(storage_path) / name)):
        raise DDError(
            f"no sweep {name!r} to resume in {storage_path} "
            "(check --name and --storage-path, or start it again without --resume)"
        )


def run_sweep(
    preset: ExperimentPreset,
    space: SearchSpace,
    settings: SweepSettings,
    context_args: dict[str, Any],
    resume: bool = False,
    callbacks: tuple = (),
    verbose: bool = False,
):
    """Build (or restore) the Tuner, run it, and return Ray's ResultGrid and the parent run id.

    `callbacks` are Ray Tune callbacks, e.g. the live view of `orchestrator.views.live`; `verbose` turns
    on Tune's own progress output. A resumed sweep keeps the ones it started with (Tune restores its
    run config; `Tuner.restore` takes neither)."""
    import os

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    # Quiet terminals: our own table reports the sweep; Tune's snapshot-frequency hint is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if resume:
        check_resumable(settings.name, settings.storage_path)
    check_resources(settings.cpus_per_trial, settings.gpus_per_trial)
    parent = _parent_run(preset, space, settings, context_args, resume)
    context = SweepContext(
        parent_run_id=parent.run_id, cache_dir=str(cache_dir()), source=command_line(), **context_args
    )
    iterations = trial_length(preset)
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    fn = tune.with_resources(tune.with_parameters(trainable, preset=preset, context=context), resources)
    if resume:
        tuner = tune.Tuner.restore(str(_sweep_path(settings)), trainable=fn, resume_errored=True)
    else:
        tuner = tune.Tuner(
            fn,
            param_space=space.to_tune(),
            tune_config=tune.TuneConfig(
                metric=metric(preset),
                mode="max",
                num_samples=settings.num_samples,
                reuse_actors=True,  # no new process (torch import, data load) per trial
                # The seed makes the sampled settings reproducible; this searcher is no `Searcher`,
                # so it takes the concurrency limit itself (Tune ignores max_concurrent_trials with it).
                search_alg=BasicVariantGenerator(random_state=settings.seed, max_concurrent=settings.max_concurrent),
                scheduler=ASHAScheduler(
                    time_attr=TIME_ATTR,
                    max_t=iterations,
                    grace_period=min(preset.asha.grace_period, iterations),
                    reduction_factor=preset.asha.reduction_factor,
                ),
            ),
            run_config=tune.RunConfig(
                name=settings.name,
                storage_path=settings.storage_path,
                verbose=2 if verbose else 0,
                failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=list(callbacks),
            ),
        )
    return tuner.fit(), parent, iterations


def _parent_run(preset, space, settings, context_args, resume: bool) -> Tracker:
    """The sweep's parent MLflow run; on --resume the existing one (found by its sweep-name tag)."""
    if resume:
        return _resumed_parent(settings.name, context_args["tracking_uri"], context_args["experiment"])
    parent = Tracker.start(
        context_args["tracking_uri"],
        context_args["experiment"],
        run_name=settings.name,
        tags={Tag.SWEEP: settings.name, Tag.EXPERIMENT: preset.name},
        description=(
            f"Sweep of {preset.method} on {preset.dataset} (experiment {preset.name}): {settings.num_samples} "
            f"samples of {', '.join(space.names())}, one child run per trial. Rerun it, or continue it with "
            f"--resume:\n\n    {command_line()}\n"
        ),
    )
    parent.log_params(
        {"preset": asdict(preset), "space": {d.name: asdict(d) for d in space.distributions}, "sweep": asdict(settings)}
    )
    return parent


def _resumed_parent(name: str, tracking_uri: str, experiment_name: str) -> Tracker:
    """Running again; a one-line error without it (its finished trials' runs would be out of reach)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    found = experiment and client.search_runs([experiment.experiment_id], tag_filter(Tag.SWEEP, name), max_results=1)
    if not found:
        raise DDError(
            f"sweep {name!r} has no parent run in MLflow experiment {experiment_name!r} at {tracking_uri}: "
            "resume with the --tracking-uri and --experiment it started with"
        )
    client.set_terminated(found[0].info.run_id, Status.RUNNING)
    return Tracker(tracking_uri, experiment.experiment_id, found[0].info.run_id)


@dataclass
class TrialRow:
    """One line of the sweep's results table."""

    trial_id: str
    params: dict[str, Any]
    accuracy: float | None  # test; None for a trial stopped early under `selection` val (never tested)
    iteration: int
    status: str  # finished | stopped early | failed
    child_run_id: str | None
    error: str | None = None
    distill_sets: int = DISTILL_SETS_PER_TRIAL  # what `accuracy` rests on (results.csv says it)
    val_accuracy: float | None = None  # on the validation part (`selection` val)
    selected_by: str = "test"  # which of the two ranked the trials and chose the best (schema.SELECTIONS)

    @property
    def chosen(self) -> float | None:
        return self.val_accuracy if self.selected_by == "val" else self.accuracy


def summarize(results, iterations: int, selection: str) -> list[TrialRow]:
    """Rows of Ray's ResultGrid, best first by `selection`'s accuracy; `stopped early` = ASHA ended it
    before the last iteration."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        reached = int(metrics.get(TIME_ATTR, 0))
        if result.error is not None:
            status = "failed"
        else:
            status = "finished" if reached >= iterations else "stopped early"
        rows.append(
            TrialRow(
                trial_id=metrics.get("trial_id", result.path.rsplit("/", 1)[-1] if result.path else "?"),
                params=dict(result.config or {}),
                accuracy=metrics.get(schema.EVAL_ACCURACY),
                iteration=reached,
                status=status,
                child_run_id=metrics.get("child_run_id"),
                error=str(result.error).splitlines()[0] if result.error else None,
                val_accuracy=metrics.get(schema.VAL_EVAL_ACCURACY),
                selected_by=selection,
            )
        )
    return sorted(rows, key=lambda r: (r.chosen is None, -(r.chosen or 0.0)))


def record_in_parent(parent: Tracker, rows: list[TrialRow], space: SearchSpace, output_dir: Path) -> Path:
    """Results CSV, accuracy-vs-parameter plots, the best config and the best trial's grid, on the parent run."""
    import pandas as pd

    from ddcore.visualize import save_scatter

    folder = output_dir / parent.run_id
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([{**asdict(r), **{f"param.{k}": v for k, v in r.params.items()}} for r in rows]).drop(
        columns="params"
    )
    csv = folder / "results.csv"
    table.to_csv(csv, index=False)
    parent.log_artifact(csv)
    scored = [r for r in rows if r.chosen is not None]
    chosen_by = schema.eval_metric(rows[0].selected_by) if rows else schema.EVAL_ACCURACY
    for name in space.names():
        points = [
            (r.params.get(name), r.chosen, r.status) for r in scored if isinstance(r.params.get(name), (int, float))
        ]
        if points:
            parent.log_artifact(save_scatter(points, folder / f"accuracy_vs_{name}.png", name, chosen_by), "plots")
    finished = [r for r in scored if r.status == "finished"]
    if finished:
        best = finished[0]
        parent.log_params({f"best.{k}": v for k, v in best.params.items()})
        parent.log_metrics({f"best_{chosen_by}": best.chosen, **winners_curse(finished)})
        if best.child_run_id:
            grid = parent.client.download_artifacts(best.child_run_id, "grids/grid_all_classes.png", str(folder))
            parent.log_artifact(grid, "best_trial")
    close_children(parent, rows)
    parent.finish(failure=None if finished else failures(rows))
    return folder


def winners_curse(finished: list[TrialRow]) -> dict[str, float]:
    """The chosen trial's test accuracy, the best test accuracy of all finished trials and how far the
    first is below the second: choosing on the test set would have reported the second, an upward-biased
    estimate (the winner's curse). `finished` best first; nothing when the test set chose (no difference)."""
    tested = [r.accuracy for r in finished if r.accuracy is not None]
    if finished[0].selected_by != "val" or finished[0].accuracy is None:
        return {}
    return {
        schema.SWEEP_CHOSEN_TEST: finished[0].accuracy,
        schema.SWEEP_MAX_TEST: max(tested),
        schema.SWEEP_CURSE: max(tested) - finished[0].accuracy,
    }


def failures(rows: list[TrialRow]) -> str | None:
    """One line on the failed trials (`N of M trials failed (first: ...)`); None when none failed."""
    failed = [r for r in rows if r.status == "failed"]
    if not failed:
        return None
    return f"{len(failed)} of {len(rows)} trials failed (first: {failed[0].error or 'no error recorded'})"


def close_children(parent: Tracker, rows: list[TrialRow]) -> None:
    """Once the tuner has returned no trial runs: end any child run still marked RUNNING.

    A trial's own handler ends its run, but not when its worker died first (a killed driver takes
    its workers along) or when Ray ended the trial without that handler getting to run; the
    run then takes its status from Ray's outcome for the trial: FAILED, FINISHED as stopped early
    (ASHA), or KILLED (interrupted).
    """
    outcome = {r.child_run_id: r for r in rows if r.child_run_id}
    running = parent.client.search_runs(
        [parent.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.run_id}' and attributes.status = 'RUNNING'",
    )
    for run in running:
        child = Tracker(parent.tracking_uri, parent.experiment_id, run.info.run_id)
        row = outcome.get(run.info.run_id)
        if row is not None and row.status == "failed":
            child.finish(failure=row.error or "failed")
        elif row is not None and row.status == "stopped early":
            child.finish(stopped="stopped early by the scheduler", stopped_at=row.iteration)
        else:
            child.finish(stopped="ended by the sweep before the trial could close its run")
