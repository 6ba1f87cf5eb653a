"""One trial: distil a synthetic set, look at it, evaluate it, compare with the full-data baseline.

`ddorch run` calls `run_trial` directly; Ray Tune sweeps run the same function in each trial.
Everything goes to one MLflow run; a failure (bad input found late, NaN loss, a killed trial)
marks that run FAILED with the reason and keeps what was logged.

The headline number is `acc_{model}_mean`: the final set, mean over the eval seeds. DataDAM's and
PAD's scripts report instead the best mean over evaluations during distillation (DataDAM's
main_DataDAM.py every 2000 iterations, `max_mean`; PAD's distill/PAD.py every `eval_it`,
`Max_Accuracy`). With `checkpoint_eval_every` a trial computes that too, as
`acc_{model}_best_checkpoint_test_selected`: chosen by test accuracy, so optimistic and not
comparable with the headline.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ddcore.analyses.cross_arch import CrossArchConfig, cross_architecture
from ddcore.baseline import full_data_baseline
from ddcore.data import get_spec, load_dataset
from ddcore.errors import DDError
from ddcore.evaluate import EvalProtocol, EvalResult, evaluate, get_protocol
from ddcore.methods import MethodConfig, StepReport, get_method
from ddcore.models import get_model
from ddcore.runtime import peak_memory_mib, reset_peak_memory, resolve_device
from ddcore.synthetic import SyntheticSet
from ddcore.visualize import save_curves, save_grids
from orchestrator import run_schema as schema
from orchestrator.analyses import record_analysis
from orchestrator.run_schema import Tag
from orchestrator.tracking import Tracker


@dataclass
class TrialConfig:
    """Everything that defines a trial; the method's own knobs live in `method_config`."""

    dataset: str
    method: str
    method_config: MethodConfig
    preset: str = "paper"
    eval_models: list[str] = field(default_factory=lambda: ["ConvNetD3"])
    eval_seeds: int = 3
    eval_protocol: str | None = None  # a name from ddcore.evaluate.PROTOCOLS; None: the data set's (DatasetSpec)
    eval_epochs: int | None = None  # override the protocol's epochs (quick runs)
    eval_batch_size: int | None = None  # override the protocol's batch size
    # Also evaluate the first eval model with all seeds every N iterations (best-of-checkpoints; a
    # resumed trial only knows the checkpoints since it resumed).
    checkpoint_eval_every: int | None = None
    baseline: bool = True  # compare with the (cached) full-data baseline of each eval model
    cross_arch_models: list[str] = field(default_factory=list)  # if any: the cross-architecture matrix too
    data_root: str | None = None
    image_size: int | None = None

    def protocol(self) -> EvalProtocol:
        """The resolved evaluation protocol (a one-line error for unknown names)."""
        name = self.eval_protocol or get_spec(self.dataset).eval_protocol
        return get_protocol(name, self.eval_batch_size, self.eval_epochs)

    def to_dict(self) -> dict:
        """Every setting, and the protocol's resolved values under `protocol` (logged as `protocol.*`)."""
        values = asdict(self)
        values["method_config"] = self.method_config.to_dict()
        values["protocol"] = asdict(self.protocol())
        return values


def reporting_every(method_config: MethodConfig, every: int | None) -> MethodConfig:
    """The loop calls back every `log_every` iterations: make every `every`-th iteration one of them."""
    if not every or every % method_config.log_every == 0:
        return method_config
    return replace(method_config, log_every=math.gcd(method_config.log_every, every))


def best_checkpoint(checkpoints: list[tuple[int, float]]) -> tuple[int, float]:
    """(iteration, mean accuracy) of the best checkpoint; the earliest of ties."""
    return max(checkpoints, key=lambda point: (point[1], -point[0]))


@dataclass
class Resume:
    """Where a restored trial picks up: its checkpointed set and iteration (momentum restarts)."""

    synthetic: SyntheticSet
    iteration: int


# Called at every intermediate evaluation: (iterations done, current set, eval accuracy).
CheckpointHook = Callable[[int, SyntheticSet, float], None]


class TrialStopped(Exception):
    """Raised by a `CheckpointHook` to end its trial on purpose (e.g. it cannot reach a target).

    The MLflow run is then KILLED with the reason in `ddorch.stopped`, like a trial ASHA stops.
    """


@dataclass
class TrialResult:
    run_id: str
    synthetic: SyntheticSet
    evaluations: dict[str, EvalResult]
    baselines: dict[str, EvalResult]
    distill_seconds: float
    artefact_dir: Path
    prepare_seconds: float = 0.0  # the method's work before distilling (PAD: experts)
    peak_memory_mib: float = 0.0  # GPU: peak allocated during distillation; CPU: process peak RSS
    best_checkpoint: tuple[int, float] | None = None  # (iteration, mean) with `checkpoint_eval_every`


@functools.lru_cache(maxsize=2)
def _load_cached(dataset: str, data_root: str | None, image_size: int | None):
    """Trials that share a process (Ray Tune reuses actors) load the data set once."""
    return load_dataset(dataset, data_root, image_size)


def _check_models(names: list[str], channels: int, classes: int, size: int) -> None:
    for name in names:
        get_model(name, channels, classes, size)  # raises a one-line DDError for unknown names


def run_trial(
    config: TrialConfig,
    tracker: Tracker,
    progress: bool = True,
    output_dir: Path | None = None,
    report_every: int | None = None,
    on_checkpoint: CheckpointHook | None = None,
    resume: Resume | None = None,
) -> TrialResult:
    """Distil, save and log artefacts, evaluate on each architecture, compare with baselines.

    With `report_every`, the set is evaluated every so many iterations (first eval model, one
    seed) and logged as `eval_accuracy`; `on_checkpoint` then receives it (Ray Tune reports and
    checkpoints there). `resume` continues a checkpointed distillation.
    """
    try:
        return _run(config, tracker, progress, output_dir, report_every, on_checkpoint, resume)
    except DDError as error:
        tracker.finish(failure=str(error))
        raise
    except TrialStopped as stop:
        tracker.finish(stopped=str(stop))
        raise
    except SystemExit as error:
        # A clean exit asked for from outside: Ray Tune's schedulers (ASHA) end trials this way.
        if error.code in (0, None):
            tracker.finish(stopped="stopped early by the scheduler")
        else:
            tracker.finish(failure=f"SystemExit: {error.code}")
        raise
    except BaseException as error:  # KeyboardInterrupt, a killed worker, a bug: never leave RUNNING
        tracker.finish(failure=f"{type(error).__name__}: {error}")
        raise


def _run(
    config: TrialConfig,
    tracker: Tracker,
    progress: bool,
    output_dir: Path | None,
    report_every: int | None,
    on_checkpoint: CheckpointHook | None,
    resume: Resume | None,
) -> TrialResult:
    if config.checkpoint_eval_every is not None and config.checkpoint_eval_every < 1:
        raise DDError(f"checkpoint_eval_every must be positive, got {config.checkpoint_eval_every}")
    method = get_method(config.method)
    data = _load_cached(config.dataset, config.data_root, config.image_size)
    method_config = reporting_every(config.method_config, config.checkpoint_eval_every)
    method_config.validate(data.class_counts())
    _check_models(
        [method_config.model, *config.eval_models, *config.cross_arch_models],
        data.channels,
        data.num_classes,
        data.image_size,
    )
    protocol = config.protocol()
    if resume is None:
        tracker.log_params(config.to_dict())
    tracker.set_tags({Tag.DATASET: config.dataset, Tag.METHOD: config.method, Tag.PRESET: config.preset})

    all_seeds = tuple(range(config.eval_seeds))
    first_model = config.eval_models[0]
    curves: dict[str, list[tuple[int, float]]] = {}
    checkpoints: list[tuple[int, float]] = []  # (iteration, mean over all seeds) of the first eval model

    def evaluate_set(
        model_name: str, synthetic: SyntheticSet, seeds: tuple[int, ...], show: bool = False
    ) -> EvalResult:
        return evaluate(
            model_name,
            synthetic.images,
            synthetic.labels,
            data,
            protocol,
            seeds,
            method_config.device,
            lr=synthetic.learned_lr,
            dsa_strategy=method_config.dsa_strategy,
            progress=show,
        )

    def record_checkpoint(iteration: int, result: EvalResult) -> None:
        checkpoints.append((iteration, result.accuracy_mean))
        tracker.log_metrics({schema.checkpoint_acc_mean(first_model): result.accuracy_mean}, step=iteration)

    def due(every: int | None, iteration: int) -> bool:
        return bool(every) and iteration % every == 0 and iteration < method_config.iterations

    def on_step(report: StepReport) -> None:
        tracker.log_metrics(report.losses, step=report.iteration)
        for name, value in report.losses.items():
            curves.setdefault(name, []).append((report.iteration, value))
        checkpoint, quick = due(config.checkpoint_eval_every, report.iteration), due(report_every, report.iteration)
        if not (checkpoint or quick):
            return
        snapshot = report.snapshot()
        # One evaluation serves both: each seed trains alone, so seed 0 of all seeds is the quick check.
        result = evaluate_set(first_model, snapshot, all_seeds if checkpoint else (0,))
        if checkpoint:
            record_checkpoint(report.iteration, result)
        if quick:
            accuracy = result.runs[0].accuracy
            tracker.log_metrics({schema.EVAL_ACCURACY: accuracy}, step=report.iteration)
            if on_checkpoint is not None:
                on_checkpoint(report.iteration, snapshot, accuracy)

    device = resolve_device(method_config.device)
    started = time.perf_counter()
    prepared = method.prepare(data, method_config, progress)  # PAD: its experts, cached or trained
    prepare_seconds = time.perf_counter() - started
    if prepared.artefacts or prepared.metrics:
        tracker.log_metrics({"prepare_seconds": prepare_seconds, **prepared.metrics})
        for path in prepared.artefacts:
            tracker.log_artifact(path, "prepared")
    reset_peak_memory(device)
    started = time.perf_counter()
    synthetic = method.distill(
        data,
        method_config,
        callback=on_step,
        progress=progress,
        start=resume.synthetic if resume else None,
        start_iteration=resume.iteration if resume else 0,
    )
    distill_seconds = time.perf_counter() - started
    peak_mib = peak_memory_mib(device)
    tracker.log_metrics(
        {
            "distill_seconds": distill_seconds,
            "peak_memory_mib": peak_mib,
            "iterations_per_second": (method_config.iterations - (resume.iteration if resume else 0)) / distill_seconds,
        }
    )

    artefacts = Path(output_dir or tempfile.mkdtemp(prefix="ddorch-")) / tracker.run_id
    synthetic.save(artefacts / "synthetic.pt")
    for path in save_grids(synthetic, artefacts / "grids"):
        tracker.log_artifact(path, "grids")
    tracker.log_artifact(artefacts / "synthetic.pt")
    if curves:
        tracker.log_artifact(save_curves(curves, artefacts / "loss_curve.png", "iteration", "loss", log_y=True))

    evaluations: dict[str, EvalResult] = {}
    baselines: dict[str, EvalResult] = {}
    tracker.log_metrics({"eval_lr": protocol.training_lr(synthetic.learned_lr)})
    for model_name in config.eval_models:
        result = evaluate_set(model_name, synthetic, all_seeds, progress)
        evaluations[model_name] = result
        tracker.log_metrics(
            {
                schema.acc_mean(model_name): result.accuracy_mean,
                schema.acc_std(model_name): result.accuracy_std,
                schema.balanced_acc_mean(model_name): result.balanced_accuracy_mean,
                schema.train_seconds(model_name): result.train_seconds_mean,
                schema.flops(model_name): result.flops_per_image,
            }
        )
        if config.baseline:
            baseline, _ = full_data_baseline(data, model_name, device=method_config.device, progress=progress)
            baselines[model_name] = baseline
            tracker.log_metrics(
                {
                    schema.baseline_acc(model_name): baseline.accuracy_mean,
                    schema.baseline_train_seconds(model_name): baseline.train_seconds_mean,
                }
            )

    best = None
    if config.checkpoint_eval_every:  # the final set is the last checkpoint
        record_checkpoint(method_config.iterations, evaluations[first_model])
        best = best_checkpoint(checkpoints)
        tracker.log_metrics(
            {schema.best_checkpoint_acc(first_model): best[1], schema.best_checkpoint_iteration(first_model): best[0]}
        )

    if config.cross_arch_models:  # on this run itself (see orchestrator.analyses), same seeds and protocol
        matrix = cross_architecture(
            synthetic,
            data,
            CrossArchConfig(
                tuple(config.cross_arch_models),
                config.eval_seeds,
                config.eval_epochs,
                method_config.device,
                eval_protocol=config.eval_protocol,
                eval_batch_size=config.eval_batch_size,
            ),
            progress,
        )
        record_analysis(tracker, "cross_arch", matrix, artefacts.parent)

    summary = {
        "run_id": tracker.run_id,
        "config": config.to_dict(),
        "eval_protocol": asdict(protocol),
        "eval_lr": protocol.training_lr(synthetic.learned_lr),
        "checkpoints": {
            "note": "best of the checkpoints by test accuracy: optimistic, not comparable with the final mean",
            "model": first_model,
            "every": config.checkpoint_eval_every,
            "mean_by_iteration": checkpoints,
            "best_iteration": best[0],
            "best_mean": best[1],
        }
        if best
        else None,
        "prepare_seconds": prepare_seconds,
        "distill_seconds": distill_seconds,
        "peak_memory_mib": peak_mib,
        "evaluations": {name: asdict(result) for name, result in evaluations.items()},
        "baselines": {name: asdict(result) for name, result in baselines.items()},
    }
    (artefacts / "summary.json").write_text(json.dumps(summary, indent=2))
    tracker.log_artifact(artefacts / "summary.json")
    tracker.finish()
    return TrialResult(
        tracker.run_id, synthetic, evaluations, baselines, distill_seconds, artefacts, prepare_seconds, peak_mib, best
    )
