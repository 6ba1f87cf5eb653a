"""What a trial does around its distillation loop, one hook per concern, called in order.

The shape is detectron2's (`detectron2/engine/train_loop.py`: `HookBase` with `before_train`,
`after_step`, `after_train`, which `TrainerBase.train` calls for every registered hook in the order
registered; `detectron2/engine/hooks.py`: `IterationTimer` times the whole loop, `EvalHook`
evaluates every `eval_period` iterations). Here the loop is `ddcore.methods.loop.run_loop`, which
calls back every `log_every` iterations; `orchestrator.engine.trial._Trial` turns each callback into a
`Step` and passes it to its hooks:

    hook.before_distill()
    for each reported window: hook.after_step(step)
    hook.after_distill()

Unlike detectron2's hooks these take what they need when built, not a reference to the trial.
Evaluations are shared: each hook says which seeds of the first eval model it needs at an iteration
(`seeds_at`), and the `Step` evaluates the union once, when a hook first asks for it.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable

import torch

from ddcore.evaluate import EvalResult
from ddcore.hardware import machine
from ddcore.methods import StepReport
from ddcore.runtime import peak_memory_mib, reset_peak_memory, resolve_device
from ddcore.synthetic import SyntheticSet
from ddcore.visualize import save_grids
from orchestrator.store import run_schema as schema
from orchestrator.store.tracking import Tracker
from orchestrator.store.trial_cache import Resume, TrialCache

# Called at every quick evaluation: (iterations done, current set, eval accuracy: the selection's). Ray Tune reports
# and checkpoints there (orchestrator.engine.sweep); a lossless search stops hopeless trials there.
CheckpointHook = Callable[[int, SyntheticSet, float], None]

# (iteration, the set, seeds) -> the first eval model's evaluation of the set with those seeds
Evaluate = Callable[[int, SyntheticSet, tuple[int, ...]], EvalResult]


class Step:
    """One reported window as the hooks see it. The set's snapshot and its evaluation are made once,
    when a hook first asks: one evaluation serves every hook (each seed trains alone, so seed 0 of
    all seeds is the quick check)."""

    def __init__(self, report: StepReport, seeds: tuple[int, ...], evaluate: Evaluate) -> None:
        self.report, self.iteration, self.seeds = report, report.iteration, seeds
        self._evaluate = evaluate

    @property
    def evaluates(self) -> bool:
        """Whether some hook evaluates the set at this step."""
        return bool(self.seeds)

    @functools.cached_property
    def snapshot(self) -> SyntheticSet:
        return self.report.snapshot()

    @functools.cached_property
    def evaluation(self) -> EvalResult:
        return self._evaluate(self.iteration, self.snapshot, self.seeds)


class TrialHook:
    """Does nothing by default; a hook overrides the phases it needs."""

    def before_distill(self) -> None:
        """Called once before the first iteration (not when the set comes from a cache)."""

    def seeds_at(self, iteration: int) -> tuple[int, ...]:
        """The seeds of the first eval model this hook needs evaluated at `iteration` (none: no evaluation)."""
        return ()

    def after_step(self, step: Step) -> None:
        """Called at every reported window, in the order the hooks were registered."""

    def after_distill(self) -> None:
        """Called once after the last iteration."""


def due(every: int | None, iteration: int, iterations: int) -> bool:
    """Every `every` iterations, before the last (the final set is evaluated after the loop)."""
    return bool(every) and iteration % every == 0 and iteration < iterations


class MetricsLogger(TrialHook):
    """The loss terms of every window to MLflow (and kept for the loss-curve artefact); the
    distillation's seconds, peak memory and speed once it ends (as detectron2's `IterationTimer`)."""

    def __init__(
        self, tracker: Tracker, device: str, iterations: int, start_iteration: int, earlier_seconds: float = 0.0
    ) -> None:
        self.tracker, self.device_name = tracker, device
        self.iterations, self.start_iteration = iterations, start_iteration
        self.earlier_seconds = earlier_seconds  # a resumed distillation's seconds before it resumed
        self.curves: dict[str, list[tuple[int, float]]] = {}
        self.seconds = self.peak_mib = 0.0
        self._started = 0.0
        self.device: torch.device | None = None

    def before_distill(self) -> None:
        self.device = resolve_device(self.device_name)  # here, not when built: a cached set needs no device
        reset_peak_memory(self.device)
        self._started = time.perf_counter()

    def after_step(self, step: Step) -> None:
        self.tracker.log_metrics(step.report.losses, step=step.iteration)
        for name, value in step.report.losses.items():
            self.curves.setdefault(name, []).append((step.iteration, value))

    def after_distill(self) -> None:
        here = time.perf_counter() - self._started
        self.seconds = self.earlier_seconds + here
        self.peak_mib = peak_memory_mib(self.device)
        self.tracker.log_metrics(
            {
                schema.DISTILL_SECONDS: self.seconds,
                schema.PEAK_MEMORY_MIB: self.peak_mib,
                schema.ITERATIONS_PER_SECOND: (self.iterations - self.start_iteration) / here,
            }
        )


PROGRESS_EVERY_S = 60.0  # a saved set costs milliseconds; a kill loses at most this much distillation


class TrialPaused(Exception):
    """Raised by `ProgressSaver` at its deadline, the set kept part-way: the same trial run again goes on.
    The MLflow run ends KILLED with the reason in `ddorch.stopped`."""


class ProgressSaver(TrialHook):
    """The set part-way into the trial's cache, at a reported window at most once every `PROGRESS_EVERY_S`
    (orchestrator.store.trial_cache): a trial killed part-way goes on from there when run again. Windows
    are `log_every` iterations apart; in DataDAM's course setting that is its T = 10 updates of one network,
    so a resume starts a fresh network just where an uninterrupted run would. At the first window past
    `deadline` (`time.monotonic()`), the set is kept and the trial paused (`TrialPaused`). The kept seconds
    name this machine only when all of them ran here: the next run prices its rest by their pace."""

    def __init__(
        self, cache: TrialCache, tracker: Tracker, iterations: int, resume: Resume | None, deadline: float | None
    ) -> None:
        self.cache, self.tracker, self.iterations, self.deadline = cache, tracker, iterations, deadline
        self.earlier_seconds = resume.distill_seconds if resume else 0.0
        here = machine()
        self.machine = here if not self.earlier_seconds or resume.machine == here else ""
        self._started = self._saved = 0.0

    def before_distill(self) -> None:
        self._started = self._saved = time.perf_counter()

    def after_step(self, step: Step) -> None:
        if step.iteration >= self.iterations:  # the last: kept as the distilled set
            return
        now = time.perf_counter()
        pause = self.deadline is not None and time.monotonic() >= self.deadline
        if now - self._saved >= PROGRESS_EVERY_S or pause:
            seconds = self.earlier_seconds + now - self._started
            self.cache.save_progress(Resume(step.snapshot, step.iteration, seconds, self.tracker.run_id, self.machine))
            self._saved = now
        if pause:
            raise TrialPaused(
                f"paused at iteration {step.iteration} of {self.iterations} as its time ran out: "
                f"the set is kept in {self.cache.folder} and the same trial goes on from there"
            )


class GridLogger(TrialHook):
    """The all-classes grid at every intermediate evaluation, as a step of one image key: the MLflow
    UI shows the set over iterations."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def after_step(self, step: Step) -> None:
        if step.evaluates:
            log_grid(self.tracker, step.snapshot, step.iteration)


def log_grid(tracker: Tracker, synthetic: SyntheticSet, iteration: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tracker.log_image(save_grids(synthetic, folder)[0], schema.GRID_IMAGE, iteration)


class CheckpointEvaluation(TrialHook):
    """Best-of-checkpoints: the first eval model, all seeds, every `every` iterations (None: never);
    the trial adds the final set with `best` (a resumed trial knows the checkpoints since it resumed).
    The accuracy `selection` names chooses the checkpoint; its test accuracy is the result."""

    def __init__(
        self, tracker: Tracker, every: int | None, model: str, seeds: tuple[int, ...], iterations: int, selection: str
    ) -> None:
        self.tracker, self.every, self.model, self.seeds, self.iterations = tracker, every, model, seeds, iterations
        self.selection = selection
        self.checkpoints: list[tuple[int, float, float]] = []  # (iteration, chosen mean, test mean) over all seeds

    def seeds_at(self, iteration: int) -> tuple[int, ...]:
        return self.seeds if due(self.every, iteration, self.iterations) else ()

    def after_step(self, step: Step) -> None:
        if due(self.every, step.iteration, self.iterations):
            self.record(step.iteration, step.evaluation)

    def record(self, iteration: int, result: EvalResult) -> None:
        self.checkpoints.append((iteration, selected(result, self.selection)[0], result.accuracy_mean))
        metrics = {schema.checkpoint_acc_mean(self.model): result.accuracy_mean}
        self.tracker.log_metrics(
            {**metrics, **val_metrics(result, schema.checkpoint_val_acc_mean(self.model))}, iteration
        )

    def best(self, final: EvalResult) -> tuple[int, float]:
        """The final set as the last checkpoint, then (iteration, test mean) of the best, logged."""
        self.record(self.iterations, final)
        iteration, _, test = best_checkpoint(self.checkpoints)
        chosen = schema.best_checkpoint_val_selected if self.selection == "val" else schema.best_checkpoint_acc
        self.tracker.log_metrics({chosen(self.model): test, schema.best_checkpoint_iteration(self.model): iteration})
        return iteration, test


def best_checkpoint(checkpoints: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """(iteration, chosen mean, test mean) of the best checkpoint by the chosen mean; the earliest of ties."""
    return max(checkpoints, key=lambda point: (point[1], -point[0]))


def selected(result: EvalResult, selection: str) -> tuple[float, float]:
    """(mean, population std) over seeds of the accuracy that chooses under `selection`."""
    if selection == "val":
        return result.val_accuracy_mean, result.val_accuracy_std
    return result.accuracy_mean, result.accuracy_std


def val_metrics(result: EvalResult, mean_name: str, std_name: str | None = None) -> dict[str, float]:
    """The validation mean (and std) under these names; nothing when the data set held no part out."""
    if result.val_accuracy_mean is None:
        return {}
    return {mean_name: result.val_accuracy_mean, **({std_name: result.val_accuracy_std} if std_name else {})}


def eval_metrics(result: EvalResult) -> dict[str, float]:
    """The stepped eval-accuracy points of `result` (test, and validation where held out)."""
    return {schema.EVAL_ACCURACY: result.accuracy_mean, **val_metrics(result, schema.VAL_EVAL_ACCURACY)}


class QuickEvaluation(TrialHook):
    """Every `every` iterations (None: never) the first eval model with seed 0, logged as
    `eval_accuracy` (and `val_eval_accuracy`), and the accuracy `selection` names handed to
    `on_checkpoint` (where Ray Tune reports)."""

    def __init__(
        self,
        tracker: Tracker,
        every: int | None,
        on_checkpoint: CheckpointHook | None,
        iterations: int,
        selection: str,
    ) -> None:
        self.tracker, self.every, self.on_checkpoint, self.iterations = tracker, every, on_checkpoint, iterations
        self.selection = selection

    def seeds_at(self, iteration: int) -> tuple[int, ...]:
        return (0,) if due(self.every, iteration, self.iterations) else ()

    def after_step(self, step: Step) -> None:
        if not due(self.every, step.iteration, self.iterations):
            return
        result = step.evaluation  # seed 0: the first of the seeds asked for
        quick = EvalResult(result.model, result.protocol, result.flops_per_image, result.runs[:1])
        self.tracker.log_metrics(eval_metrics(quick), step=step.iteration)
        if self.on_checkpoint is not None:
            self.on_checkpoint(step.iteration, step.snapshot, selected(quick, self.selection)[0])
