"""The trial loop's hooks (orchestrator.engine.trial_hooks): called in order at the reported iterations, one
shared evaluation per step, and the same metrics at the same steps as the single callback they replaced."""

import pytest
from mlflow.tracking import MlflowClient

from ddcore.evaluate import EvalSpec
from ddcore.methods import get_method
from orchestrator.engine.trial import TrialConfig, _run, _Trial
from orchestrator.engine.trial_hooks import (
    CheckpointEvaluation,
    GridLogger,
    MetricsLogger,
    QuickEvaluation,
    TrialHook,
    best_checkpoint,
)
from orchestrator.store import run_schema as schema
from orchestrator.store.tracking import Tracker

ITERATIONS, CHECKPOINT_EVERY, REPORT_EVERY, MODEL = 6, 2, 3, "ConvNetD1"


class Spy(TrialHook):
    """Records each call to the hook it wraps, then passes it on."""

    def __init__(self, hook: TrialHook, calls: list) -> None:
        self.hook, self.calls, self.name = hook, calls, type(hook).__name__

    def before_distill(self) -> None:
        self.calls.append((self.name, "before_distill"))
        self.hook.before_distill()

    def seeds_at(self, iteration: int) -> tuple[int, ...]:
        return self.hook.seeds_at(iteration)

    def after_step(self, step) -> None:
        self.calls.append((self.name, "after_step", step.iteration, step.seeds, sorted(step.report.losses)))
        self.hook.after_step(step)

    def after_distill(self) -> None:
        self.calls.append((self.name, "after_distill"))
        self.hook.after_distill()


@pytest.fixture(scope="module")
def spied_trial(tmp_path_factory):
    """A tiny digits trial with checkpoint (every 2) and quick (every 3) evaluations, its hooks spied on.
    Returns (calls, evaluated seeds in order, Tune-style reports, tracking URI, run id)."""
    folder = tmp_path_factory.mktemp("hooks")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    method_config = (
        get_method("datadam")
        .config("paper", "digits", 1)
        .with_overrides(iterations=ITERATIONS, batch_real=8, model=MODEL, device="cpu", log_every=1)
    )
    config = TrialConfig(
        "digits",
        "datadam",
        method_config,
        "paper",
        EvalSpec((MODEL,), seeds=2, epochs=1),
        baseline=False,
        checkpoint_eval_every=CHECKPOINT_EVERY,
    )
    tracker = Tracker.start(uri)
    reports = []
    trial = _Trial(config, tracker, False, REPORT_EVERY, lambda i, _s, a: reports.append((i, a)), None, None)
    calls, evaluated = [], []
    evaluate_set = trial.evaluate_set

    def counting(name, synthetic, seeds, show=False):
        evaluated.append(seeds)
        return evaluate_set(name, synthetic, seeds, show)

    trial.evaluate_set = counting
    trial.hooks = [Spy(hook, calls) for hook in trial.hooks]
    _run(trial, folder / "runs")
    return calls, evaluated, reports, uri, tracker.run_id


def test_the_hooks_are_called_in_order_at_the_reported_iterations(spied_trial):
    calls, evaluated, _, _, _ = spied_trial
    names = [cls.__name__ for cls in (MetricsLogger, GridLogger, CheckpointEvaluation, QuickEvaluation)]
    losses = calls[len(names)][-1]
    assert losses  # the method's loss terms, reported every iteration (log_every 1)

    def seeds(iteration):  # all seeds at a checkpoint (which also serves the quick check), seed 0 alone else
        return (0, 1) if iteration % CHECKPOINT_EVERY == 0 else (0,) if iteration % REPORT_EVERY == 0 else ()

    steps = [
        (name, "after_step", i, seeds(i) if i < ITERATIONS else (), losses)
        for i in range(1, ITERATIONS + 1)
        for name in names
    ]
    assert calls == [
        *((name, "before_distill") for name in names),
        *steps,
        *((name, "after_distill") for name in names),
    ]
    # One evaluation per evaluating step, shared by the hooks; then the final set's.
    assert evaluated == [(0, 1), (0,), (0, 1), (0, 1)]


def test_metric_names_and_steps_are_those_of_the_single_callback(spied_trial):
    calls, _, reports, uri, run_id = spied_trial
    client = MlflowClient(uri)
    metrics = client.get_run(run_id).data.metrics
    steps = {name: [m.step for m in client.get_metric_history(run_id, name)] for name in metrics}
    losses = calls[4][-1]
    every_iteration = list(range(1, ITERATIONS + 1))
    once = [
        schema.DISTILL_SECONDS,
        schema.PEAK_MEMORY_MIB,
        schema.ITERATIONS_PER_SECOND,
        "eval_lr",
        schema.acc_mean(MODEL),
        schema.acc_std(MODEL),
        schema.balanced_acc_mean(MODEL),
        schema.train_seconds(MODEL),
        schema.flops(MODEL),
        schema.best_checkpoint_acc(MODEL),
        schema.best_checkpoint_iteration(MODEL),
        schema.EVAL_NETWORKS,  # networks the first eval model's result rests on (sequential seeds)
    ]
    assert steps == {
        **dict.fromkeys(losses, every_iteration),
        schema.checkpoint_acc_mean(MODEL): [2, 4, 6],
        schema.EVAL_ACCURACY: [3, 6],  # the quick check, then the final set's mean
        **dict.fromkeys(once, [0]),
    }
    quick = client.get_metric_history(run_id, schema.EVAL_ACCURACY)[0]
    assert reports == [(3, quick.value)]  # what Ray Tune is handed: the logged quick accuracy
    images = {a.path.split("+step+")[1].split("+")[0] for a in client.list_artifacts(run_id, "images")}
    assert images == {"2", "3", "4", "6"}  # the grid at each intermediate evaluation, and the final set's


def test_the_best_checkpoint_is_the_earliest_of_ties():
    assert best_checkpoint([(2, 0.5), (4, 0.7), (6, 0.7)]) == (4, 0.7)
