"""The smallest lossless IPC: how few images per class train a network as well as the whole real set.

"Lossless" (DATM, Guo et al., ICLR 2024, reached it on CIFAR-10; PAD, Li et al. 2024, extends it):
the synthetic set of a method at IPC k trains the architecture to a mean test accuracy, over K
evaluation seeds, of at least the target minus a tolerance. The target is the same architecture
trained on the whole real training set with the full-data protocol (`ddcore.baseline`, cached;
computed if missing) or a number measured elsewhere (`target_accuracy`).

Three layers, so that the search can be tested with an accuracy oracle:
- `orchestrator.engine.ipc_search.decide`: one IPC's mean, t-interval over seeds, decision and whether
  it is within noise;
- `orchestrator.engine.ipc_search.IPCSearch`: pure, which IPC to try next given what is known and what
  is running (a geometric grid 1, 2, 5, 10, 20, 50, ... up to `max_ipc`, then bisection between
  the last lossy and the first lossless IPC), assuming accuracy does not fall as IPC grows;
- `search_lossless` (here): the driver: builds each trial (`orchestrator.engine.trial.run_trial` with the
  method's per-IPC preset), reuses finished trials found in MLflow, runs the rest through an
  `Executor` (Ray tasks by default; several at a time), stops launching when the budget is spent,
  and records everything under one parent MLflow run with a table and an accuracy-vs-IPC plot.

Choices on held-out data (`selection` "val", the default): the data set's validation part is held out
of everything that learns (distillation, experts, the full-data target), the target is the baseline's
validation accuracy, each IPC is decided on its set's validation accuracy, and the test accuracy of the
answer is reported beside it. Sequential seeds: each IPC starts with `eval_seeds` networks and adds one
at a time, up to `max_eval_seeds`, only while the t-interval straddles the threshold.

Early stop (ASHA-style, but against the target instead of against other trials): each learned
method's set is evaluated once (one seed) halfway through distillation; a trial more than
`early_stop_margin` points below the lossless threshold is stopped and counted as lossy. ASHA
itself would compare IPCs with each other, and small IPCs always look worse, so it does not fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar, Protocol

from ddcore.baseline import cache_dir, caching_in, full_data_baseline
from ddcore.data.base import RealDataset
from ddcore.errors import DDError
from ddcore.evaluate import EvalResult, EvalSpec, without_later_defaults
from ddcore.tables import plural
from orchestrator.engine.cluster import (
    TaskFailed,
    TaskPool,
    check_address,
    check_resources,
    check_shared_store,
    connect,
    node_id,
    requested_address,
)
from orchestrator.engine.ipc_search import Decision, IPCSearch, decide
from orchestrator.engine.resolve import Layers, resolve_trial
from orchestrator.engine.trial import (
    TrialConfig,
    TrialStopped,
    check_precision,
    load_cached,
    reporting_every,
    run_trial,
    settings_key,
    trial_key,
)
from orchestrator.engine.trial_hooks import selected
from orchestrator.store import run_schema as schema
from orchestrator.store.run_schema import Status, Tag, tag_filter
from orchestrator.store.shared_cache import sharing
from orchestrator.store.tracking import DEFAULT_EXPERIMENT, Tracker, check_reachable, command_line, resolve_tracking_uri


@dataclass
class LosslessConfig:
    """One lossless-IPC search. Accuracies, the tolerance and margins are in percent (points)."""

    dataset: str
    methods: tuple[str, ...] = ("datadam",)  # each searched on its own against the same target
    model: str = "ConvNetD3"  # distils with it, is evaluated on it, and is the full-data target's network
    preset: str | None = None  # the method's preset (None: each method's default); it sets the per-IPC defaults
    tolerance: float = 0.0  # points below the target that still count as lossless
    max_ipc: int = 100
    eval_seeds: int = 2  # networks first trained on each synthetic set
    max_eval_seeds: int = 5  # more, one at a time, while the decision is within noise (sequential seeds)
    selection: str = "val"  # what decides (run_schema.SELECTIONS): the validation part held out, or the test set
    confidence: float = 0.95  # of the t-interval over the K seeds
    iterations: int | None = None  # override the preset's distillation iterations (not for `random`)
    eval_protocol: str | None = None  # how each set is evaluated (ddcore.evaluate.PROTOCOLS); None: the data set's
    eval_epochs: int | None = None  # override the protocol's epochs (quick runs)
    eval_precision: str = "fp32"  # or "bf16": the evaluation forwards (ddcore.evaluate.PRECISIONS)
    target_accuracy: float | None = None  # full-data accuracy measured elsewhere; None: the cached baseline
    baseline_seeds: int = 3  # seeds of the full-data baseline when it is the target
    early_stop_margin: float | None = 5.0  # None: never stop a trial early
    budget_hours: float | None = None  # stop launching new IPCs after this much wall time
    # How to run it; none of these changes a result, so none is part of the search's identity.
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    data_root: str | None = None
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    output_dir: str = "runs"
    device: str = "auto"
    verbose: bool = False  # Ray's own log lines and the workers' output
    force_bf16: bool = False  # run bf16 where the trials' hardware lacks it (recorded on each trial)

    EXECUTION: ClassVar[tuple[str, ...]] = (
        "budget_hours",
        "max_concurrent",
        "cpus_per_trial",
        "gpus_per_trial",
        "address",
        "data_root",
        "tracking_uri",
        "experiment",
        "output_dir",
        "device",
        "verbose",
        "force_bf16",
    )

    def identity(self) -> dict:
        """The settings that define the search's results (a rerun with the same ones resumes it)."""
        values = {k: v for k, v in asdict(self).items() if k not in self.EXECUTION}
        if values["max_eval_seeds"] <= self.eval_seeds:  # fixed seeds: the identity of searches before sequential ones
            del values["max_eval_seeds"]
        if values["selection"] == "test":
            del values["selection"]
        return without_later_defaults(values)

    def validate(self) -> None:
        if not self.methods:
            raise DDError("give at least one method")
        checks = [
            (self.max_ipc >= 1, f"max IPC must be at least 1, got {self.max_ipc}"),
            (self.eval_seeds >= 1, f"eval seeds must be at least 1, got {self.eval_seeds}"),
            (
                self.max_eval_seeds >= self.eval_seeds,
                f"max eval seeds ({self.max_eval_seeds}) must be at least the eval seeds ({self.eval_seeds})",
            ),
            (self.selection in schema.SELECTIONS, f"unknown selection '{self.selection}'; use test or val"),
            (self.baseline_seeds >= 1, f"baseline seeds must be at least 1, got {self.baseline_seeds}"),
            (0 <= self.tolerance < 100, f"tolerance is in accuracy points, 0 to 100, got {self.tolerance}"),
            (0 < self.confidence < 1, f"confidence must be between 0 and 1, got {self.confidence}"),
            (
                self.target_accuracy is None or 0 < self.target_accuracy <= 100,
                f"target accuracy is a percentage (e.g. 99.49), got {self.target_accuracy}",
            ),
            (
                self.early_stop_margin is None or self.early_stop_margin >= 0,
                f"early-stop margin must be non-negative, got {self.early_stop_margin}",
            ),
            (self.budget_hours is None or self.budget_hours > 0, f"budget must be positive, got {self.budget_hours} h"),
            (self.max_concurrent >= 1, f"max concurrent must be at least 1, got {self.max_concurrent}"),
            (self.iterations is None or self.iterations >= 1, f"iterations must be positive, got {self.iterations}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DDError(message)
        trials = [build_request(self, method, 1, threshold=0.0).trial for method in self.methods]  # every value
        if requested_address(self.address)[0] is None:  # trials run on this machine: bf16 it lacks is refused now
            for trial in trials:
                check_precision(trial)

    def eval_spec(self) -> EvalSpec:
        """How each trial's set is evaluated: on `model` (the fields stay flat: `identity` hashes them)."""
        return EvalSpec(
            (self.model,), self.eval_seeds, self.eval_protocol, self.eval_epochs, precision=self.eval_precision
        )


# --- trials and their outcomes --------------------------------------------------------------------


@dataclass
class TrialRequest:
    """One IPC of one method to distil and evaluate, logging into its own child run."""

    method: str
    ipc: int
    trial: TrialConfig
    key: str  # identity of the trial's result; a finished run with this key is reused
    tracker: Tracker | None = None  # the child run; set by the driver when launched
    stop_below: float | None = None  # intermediate accuracy (fraction) under which to stop early
    report_every: int | None = None  # distillation iterations between intermediate evaluations
    threshold: float = 0.0  # the lossless threshold (fraction) sequential seeds decide against
    confidence: float = 0.95


@dataclass
class TrialOutcome:
    """What came back from running a request."""

    status: str  # finished | stopped early | failed
    accuracy_mean: float | None = None  # the selection's, over the eval seeds; when stopped early, the one-seed check
    accuracy_std: float | None = None  # population std over the seeds
    note: str = ""
    seeds: int = 0  # networks the accuracy rests on (sequential seeds: 2 up to `max_eval_seeds`)
    test_accuracy: float | None = None  # mean test accuracy over them (finished trials)


@dataclass
class Evaluation:
    """One row of the result table."""

    method: str
    ipc: int
    status: str  # finished | stopped early | failed
    accuracy_mean: float | None  # over the eval seeds; when stopped early, the one-seed halfway check
    decision: Decision | None  # None when stopped early or failed: counted as lossy
    run_id: str | None
    reused: bool = False  # found in MLflow from an earlier search, not run again
    note: str = ""
    distill_sets: int = 1  # the distilled sets the decision rests on: one per IPC (its interval is over networks)
    test_accuracy: float | None = None  # reported, never decides under `selection` val
    seeds: int = 0

    @property
    def lossless(self) -> bool:
        return self.decision is not None and self.decision.lossless


def build_request(config: LosslessConfig, method: str, ipc: int, threshold: float) -> TrialRequest:
    """The method's preset at this IPC (its per-IPC defaults), distilled and evaluated on `config.model`."""
    flags = {"model": config.model, "device": config.device, "iterations": config.iterations}
    trial = resolve_trial(
        method,
        config.dataset,
        config.preset,
        ipc,
        config.eval_spec(),
        Layers(flags=flags),
        baseline=config.target_accuracy is None,  # the cached baseline; never retrain it in every trial
        data_root=config.data_root,
        force_bf16=config.force_bf16,
        selection=config.selection,
        max_eval_seeds=config.max_eval_seeds if config.max_eval_seeds > config.eval_seeds else None,
    )
    report_every = trial.method_config.iterations // 2 if config.early_stop_margin is not None else 0
    trial = replace(trial, method_config=reporting_every(trial.method_config, report_every))
    return TrialRequest(
        method,
        ipc,
        trial,
        trial_key(trial),
        report_every=report_every or None,
        stop_below=threshold - config.early_stop_margin / 100 if report_every else None,
        threshold=threshold,
        confidence=config.confidence,
    )


class Executor(Protocol):
    """Runs requests, several at a time; `wait_one` blocks until one of them is done."""

    def submit(self, request: TrialRequest) -> None: ...

    def wait_one(self) -> tuple[TrialRequest, TrialOutcome]: ...


def execute(request: TrialRequest, output_dir: str, baseline_cache: str | None = None) -> TrialOutcome:
    """Run one request with `run_trial` (in a Ray worker or in this process); never raises for a bad trial."""
    stopped_at: list[float] = []

    def stop_if_hopeless(iteration: int, _synthetic, accuracy: float) -> None:
        if request.stop_below is not None and accuracy < request.stop_below:
            stopped_at.append(accuracy)
            raise TrialStopped(
                f"eval accuracy {100 * accuracy:.2f} % at iteration {iteration} is under "
                f"{100 * request.stop_below:.2f} %: cannot become lossless"
            )

    if node_id():
        request.tracker.set_tags({Tag.NODE_ID: node_id()})
    selection = request.trial.selection

    def undecided(result: EvalResult) -> bool:  # sequential seeds: another network could flip the decision
        mean, std = selected(result, selection)
        return decide(mean, std, len(result.runs), request.threshold, request.confidence).within_noise

    try:
        # the driver's folder, given as a value; shared through its tracking server
        with caching_in(baseline_cache), sharing(request.tracker.tracking_uri):
            result = run_trial(
                request.trial,
                request.tracker,
                progress=False,
                output_dir=Path(output_dir),
                report_every=request.report_every,
                on_checkpoint=stop_if_hopeless,
                more_seeds=undecided,
            )
    except TrialStopped as stop:
        return TrialOutcome("stopped early", accuracy_mean=stopped_at[-1], note=str(stop))
    except DDError as error:
        return TrialOutcome("failed", note=str(error))
    evaluation = result.evaluations[request.trial.eval.models[0]]
    mean, std = selected(evaluation, selection)
    return TrialOutcome("finished", mean, std, seeds=len(evaluation.runs), test_accuracy=evaluation.accuracy_mean)


class RayExecutor:
    """Each request a task of the cluster's pool (one worker process keeps its data set loaded)."""

    def __init__(self, cpus_per_trial: float, gpus_per_trial: float, output_dir: str) -> None:
        self._pool = TaskPool(cpus_per_trial, gpus_per_trial)
        self._output_dir = output_dir

    def submit(self, request: TrialRequest) -> None:
        self._pool.submit(execute, request, request, self._output_dir, str(cache_dir()))

    def wait_one(self) -> tuple[TrialRequest, TrialOutcome]:
        try:
            return self._pool.wait_one()
        except TaskFailed as failed:  # a killed worker, an unexpected exception
            failed.tag.tracker.finish(failure=failed.reason)
            return failed.tag, TrialOutcome("failed", note=failed.reason)


# --- MLflow: the parent run and finished trials ---------------------------------------------------


class TrialStore:
    """Earlier trials in MLflow, found by their `ddorch.trial_key` tag, and new child runs."""

    def __init__(self, parent: Tracker, experiment: str) -> None:
        self.parent = parent
        self.experiment = experiment

    def find(self, request: TrialRequest) -> tuple[str, TrialOutcome] | None:
        """An earlier run of the same trial that answers it: one that finished, or one stopped early
        whose halfway accuracy is also under this request's stop line (seeded: it would stop again)."""
        found = self.parent.client.search_runs(
            [self.parent.experiment_id],
            tag_filter(Tag.TRIAL_KEY, request.key),
        )
        model, selection = request.trial.eval.models[0], request.trial.selection
        mean, std = schema.selected_acc(selection)
        for run in found:
            metrics = run.data.metrics
            if run.info.status == Status.FINISHED and mean(model) in metrics:
                seeds = int(metrics.get(schema.EVAL_NETWORKS, request.trial.eval.seeds))  # runs before it: fixed
                test = metrics.get(schema.acc_mean(model))
                return run.info.run_id, TrialOutcome(
                    "finished", metrics[mean(model)], metrics[std(model)], seeds=seeds, test_accuracy=test
                )
            halfway = metrics.get(schema.eval_metric(selection))
            if (
                run.data.tags.get(Tag.STOPPED_EARLY) == "true"
                and halfway is not None
                and request.stop_below is not None
                and halfway < request.stop_below
            ):
                return run.info.run_id, TrialOutcome("stopped early", halfway, note=run.data.tags[Tag.STOPPED])
        return None

    def start_child(self, request: TrialRequest) -> Tracker:
        return Tracker.start(
            self.parent.tracking_uri,
            self.experiment,
            run_name=schema.run_name(request.trial.dataset, request.method, request.ipc),
            parent_run_id=self.parent.run_id,
            tags={Tag.TRIAL_KEY: request.key, Tag.METHOD: request.method, Tag.IPC: str(request.ipc)},
        )


def search_key(config: LosslessConfig) -> str:
    return settings_key(config.identity())


def parent_run(config: LosslessConfig, tracking_uri: str) -> Tracker:
    """The search's parent run: the one of an earlier search with the same settings, else a new one."""
    from mlflow.tracking import MlflowClient

    key = search_key(config)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(config.experiment)
    if experiment is not None:
        found = client.search_runs([experiment.experiment_id], tag_filter(Tag.LOSSLESS, key), max_results=1)
        if found:
            client.set_terminated(found[0].info.run_id, Status.RUNNING)
            return Tracker(tracking_uri, experiment.experiment_id, found[0].info.run_id)
    name = f"lossless-{config.dataset}-{config.model}-{'-'.join(config.methods)}"
    description = (
        f"Lossless-IPC search of {', '.join(config.methods)} on {config.dataset} with {config.model}: one child run "
        f"per IPC tried. The same command continues it, reusing finished trials:\n\n    {command_line()}\n"
    )
    parent = Tracker.start(
        tracking_uri, config.experiment, run_name=name, tags={Tag.LOSSLESS: key}, description=description
    )
    parent.log_params(config.identity())
    return parent


# --- the target -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    accuracy: float  # fraction; the selection's (the baseline's validation accuracy under `selection` val)
    source: str
    test_accuracy: float | None = None  # the baseline's test accuracy, reported beside a validation target


def resolve_target(config: LosslessConfig, data: RealDataset, progress: bool = False) -> Target:
    """`target_accuracy` when given (measured elsewhere), else the full-data baseline (cached or trained now)."""
    if config.target_accuracy is not None:
        return Target(config.target_accuracy / 100, "given (--target-accuracy, measured elsewhere)")
    result, from_cache = full_data_baseline(
        data,
        config.model,
        tuple(range(config.baseline_seeds)),
        device=config.device,
        progress=progress,
    )
    return Target(
        selected(result, config.selection)[0],
        f"full-data baseline of {config.model} ({result.protocol} protocol, {len(from_cache)} seed(s), "
        f"{sum(from_cache)} from the cache) on the {schema.SELECTED_ON[config.selection]}",
        result.accuracy_mean,
    )


# --- the driver -----------------------------------------------------------------------------------


@dataclass
class MethodResult:
    """One method's search: its evaluations (by IPC) and what they say."""

    method: str
    evaluations: list[Evaluation]
    search: IPCSearch
    selection: str = "test"  # which accuracy decided (run_schema.SELECTIONS)

    @property
    def smallest_lossless(self) -> int | None:
        return self.search.smallest_lossless if self.search.done else None

    def best(self) -> Evaluation | None:
        """The most accurate finished evaluation (else the best halfway check of stopped ones)."""
        scored = [e for e in self.evaluations if e.accuracy_mean is not None]
        return max(scored, key=lambda e: (e.decision is not None, e.accuracy_mean, -e.ipc), default=None)

    def failed(self) -> list[int]:
        """The IPCs whose trial failed (counted lossy; a rerun of the search runs them again)."""
        return sorted(e.ipc for e in self.evaluations if e.status == "failed")

    def summary(self) -> str:
        failed = self.failed()
        caveat = f"; trial failed at IPC {', '.join(map(str, failed))}, counted lossy" if failed else ""
        return self._answer() + caveat

    def _answer(self) -> str:
        best = self.best()
        best_text = "no evaluation" if best is None else f"best: {100 * best.accuracy_mean:.2f} % at IPC {best.ipc}"
        if best is not None and best.decision is None:
            best_text += ", halfway check of a trial stopped early"
        lo, hi = self.search.bounds()
        if self.search.done and hi is not None:
            answer = next(e for e in self.evaluations if e.ipc == hi and e.decision)
            noise = ", within noise" if answer.decision.within_noise else ""
            on = f" on the {schema.SELECTED_ON[self.selection]}" if self.selection == "val" else ""
            test = (
                ""
                if answer.test_accuracy is None or self.selection == "test"
                else f"; test {100 * answer.test_accuracy:.2f} %"
            )
            return (
                f"smallest lossless IPC {hi} ({100 * answer.decision.mean:.2f} %{on} on {plural(answer.distill_sets, 'set')}, "
                f"{plural(answer.seeds or answer.decision.seeds, 'network')}{noise}{test})"
            )
        if self.search.done:
            return f"not reached up to max IPC {self.search.max_ipc} ({best_text})"
        if hi is not None:
            return f"budget spent: lossless at IPC {hi}, the smallest lies in ({lo}, {hi}] ({best_text})"
        return f"budget spent before an answer: lossy up to IPC {lo} ({best_text})"


@dataclass
class LosslessReport:
    config: LosslessConfig
    target: Target
    threshold: float  # fraction
    results: dict[str, MethodResult]
    train_size: int
    num_classes: int
    parent_run_id: str
    tracking_uri: str
    plot: Path
    table: Path
    launched: int  # trials actually run (not reused)
    budget_spent: bool

    def networks(self) -> tuple[int, int]:
        """(networks trained on the sets the search ran, networks fixed `max_eval_seeds` would have trained)."""
        ran = [e for r in self.results.values() for e in r.evaluations if e.decision and not e.reused]
        return sum(e.seeds for e in ran), self.config.max_eval_seeds * len(ran)

    def compression_ratio(self, ipc: int) -> float:
        return self.train_size / (ipc * self.num_classes)


Clock = Callable[[], float]


class SearchWatch(Protocol):
    """Told what the search does, as it does it (e.g. `orchestrator.views.live.LosslessView`)."""

    def begin(self, threshold: float) -> None: ...

    def launched(self, method: str, ipc: int) -> None: ...

    def evaluated(self, evaluation: Evaluation) -> None: ...

    def end(self) -> None: ...


class Unwatched:
    def begin(self, threshold: float) -> None:
        pass

    def launched(self, method: str, ipc: int) -> None:
        pass

    def evaluated(self, evaluation: Evaluation) -> None:
        pass

    def end(self) -> None:
        pass


def search_lossless(
    config: LosslessConfig,
    executor: Callable[[], Executor] | None = None,
    watch: SearchWatch | None = None,
    progress: bool = False,
    clock: Clock = time.monotonic,
) -> LosslessReport:
    """Search each method's smallest lossless IPC.

    `executor` makes the executor, called only when a trial must run (a rerun that reuses every
    trial starts no Ray); the default runs Ray tasks on `config.address` or a local Ray. `watch`
    is told of every launch and evaluation once the target is known (`progress` draws the target's
    own training, before it).
    """
    started = clock()
    config.validate()
    data = load_cached(config.dataset, config.data_root, None, config.selection)  # as the trials load it
    if config.max_ipc > min(data.class_counts()):
        raise DDError(
            f"max IPC {config.max_ipc} is more than the smallest class of {config.dataset} holds "
            f"({min(data.class_counts())} training images{', less the validation part' if config.selection == 'val' else ''}): "
            f"pass --max-ipc {min(data.class_counts())} or less"
        )
    uri = resolve_tracking_uri(config.tracking_uri)
    check_reachable(uri)
    if executor is None:
        check_address(config.address)  # Ray starts lazily, after the parent run exists
        check_shared_store(uri, config.address)
    output_dir = str(Path(config.output_dir).resolve())
    with sharing(uri):
        target = resolve_target(config, data, progress)
    threshold = target.accuracy - config.tolerance / 100

    def ray_executor() -> Executor:
        connect(config.address, verbose=config.verbose)
        check_resources(config.cpus_per_trial, config.gpus_per_trial)
        return RayExecutor(config.cpus_per_trial, config.gpus_per_trial, output_dir)

    watch = watch or Unwatched()
    parent = parent_run(config, uri)
    watch.begin(threshold)
    try:
        parent.log_metrics({"target_accuracy": target.accuracy, "lossless_threshold": threshold})
        deadline = started + 3600 * config.budget_hours if config.budget_hours else math.inf
        searches = {method: IPCSearch(config.max_ipc) for method in config.methods}
        evaluations, launched, budget_spent = _drive(
            config,
            searches,
            executor or ray_executor,
            TrialStore(parent, config.experiment),
            threshold,
            deadline,
            clock,
            watch,
        )
    except BaseException as error:
        parent.finish(failure=f"{type(error).__name__}: {error}")
        raise
    finally:
        watch.end()
    results = {
        m: MethodResult(
            m, sorted((e for e in evaluations if e.method == m), key=lambda e: e.ipc), searches[m], config.selection
        )
        for m in config.methods
    }
    folder = Path(output_dir) / parent.run_id
    report = LosslessReport(
        config,
        target,
        threshold,
        results,
        len(data.train_labels),
        data.num_classes,
        parent.run_id,
        uri,
        folder / "accuracy_vs_ipc.png",
        folder / "lossless.csv",
        launched,
        budget_spent,
    )
    _record_in_parent(report, parent)
    return report


def _drive(
    config: LosslessConfig,
    searches: dict[str, IPCSearch],
    make_executor: Callable[[], Executor],
    store: TrialStore,
    threshold: float,
    deadline: float,
    clock: Clock,
    watch: SearchWatch,
) -> tuple[list[Evaluation], int, bool]:
    """Keep up to `max_concurrent` trials running; reused trials cost nothing and need no slot.

    If the driver stops (Ctrl-C, a crash), the child runs still running are marked FAILED, so a
    rerun does not mistake them for results and they do not stay RUNNING in MLflow forever.
    """
    running: dict[str, dict[int, TrialRequest]] = {method: {} for method in searches}
    evaluations: list[Evaluation] = []
    launched = 0
    budget_spent = False
    executor: Executor | None = None

    def accept(evaluation: Evaluation) -> None:
        evaluations.append(evaluation)
        searches[evaluation.method].record(evaluation.ipc, evaluation.lossless)
        watch.evaluated(evaluation)

    try:
        while True:
            while sum(map(len, running.values())) < config.max_concurrent:
                pick = _next_pick(searches, running)
                if pick is None:
                    break
                request = build_request(config, *pick, threshold)
                earlier = store.find(request)
                if earlier is not None:
                    accept(_evaluation(config, request, earlier[1], threshold, earlier[0], reused=True))
                    continue
                if clock() >= deadline:
                    budget_spent = True
                    break
                request.tracker = store.start_child(request)
                executor = executor or make_executor()
                executor.submit(request)
                watch.launched(request.method, request.ipc)
                running[request.method][request.ipc] = request
                launched += 1
            if not any(running.values()):
                break
            request, outcome = executor.wait_one()
            del running[request.method][request.ipc]
            accept(_evaluation(config, request, outcome, threshold, request.tracker.run_id))
    except BaseException as error:
        for request in (r for method in running.values() for r in method.values()):
            request.tracker.finish(failure=f"the lossless search stopped: {type(error).__name__}")
        raise
    return evaluations, launched, budget_spent and not all(s.done for s in searches.values())


def _evaluation(
    config: LosslessConfig,
    request: TrialRequest,
    outcome: TrialOutcome,
    threshold: float,
    run_id: str,
    reused: bool = False,
) -> Evaluation:
    decision = None
    if outcome.status == "finished":
        seeds = outcome.seeds or config.eval_seeds
        decision = decide(outcome.accuracy_mean, outcome.accuracy_std, seeds, threshold, config.confidence)
    return Evaluation(
        request.method,
        request.ipc,
        outcome.status,
        outcome.accuracy_mean,
        decision,
        run_id,
        reused,
        outcome.note,
        test_accuracy=outcome.test_accuracy,
        seeds=outcome.seeds,
    )


def _next_pick(searches: dict[str, IPCSearch], running: dict[str, dict[int, TrialRequest]]) -> tuple[str, int] | None:
    """The next (method, IPC), from the method with the fewest trials running (they share the slots)."""
    for method in sorted(searches, key=lambda m: len(running[m])):
        ipc = searches[method].next_ipc(running[method])
        if ipc is not None:
            return method, ipc
    return None


def _record_in_parent(report: LosslessReport, parent: Tracker) -> None:
    """The result table (CSV), the accuracy-vs-IPC plot and the answers on the parent run; then finish it."""
    import pandas as pd

    from ddcore.visualize import save_accuracy_vs_ipc

    report.table.parent.mkdir(parents=True, exist_ok=True)
    rows = [_row(report, e) for result in report.results.values() for e in result.evaluations]
    pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).to_csv(report.table, index=False)
    curves = {
        m: [
            (e.ipc, 100 * e.decision.mean, 100 * e.decision.low, 100 * e.decision.high)
            for e in r.evaluations
            if e.decision
        ]
        for m, r in report.results.items()
    }
    stopped = {
        m: [(e.ipc, 100 * e.accuracy_mean) for e in r.evaluations if e.status == "stopped early"]
        for m, r in report.results.items()
    }
    save_accuracy_vs_ipc(
        curves,
        stopped,
        100 * report.target.accuracy,
        100 * report.threshold,
        report.train_size / report.num_classes,
        report.plot,
    )
    parent.log_artifact(report.table)
    parent.log_artifact(report.plot)
    trained, fixed = report.networks()
    parent.log_metrics({"eval_networks": trained, "eval_networks_saved": fixed - trained})
    if report.target.test_accuracy is not None:
        parent.log_metrics({"target_test_accuracy": report.target.test_accuracy})
    for method, result in report.results.items():
        if result.smallest_lossless is not None:
            parent.log_metrics({f"smallest_lossless_ipc_{method}": result.smallest_lossless})
        parent.set_tags({f"{Tag.LOSSLESS}.{method}": result.summary()})
    parent.finish()


TABLE_COLUMNS = (
    "method",
    "ipc",
    "compression_ratio",
    "accuracy_mean_pct",  # the accuracy that decided: validation under `selection` val (`selected_by`)
    "test_accuracy_pct",
    "selected_by",
    "eval_networks",
    "ci_low_pct",
    "ci_high_pct",
    "decision",
    "within_noise",
    "status",
    "run_id",
    "note",
)


def _row(report: LosslessReport, evaluation: Evaluation) -> tuple:
    d = evaluation.decision
    return (
        evaluation.method,
        evaluation.ipc,
        report.compression_ratio(evaluation.ipc),
        None if evaluation.accuracy_mean is None else 100 * evaluation.accuracy_mean,
        None if evaluation.test_accuracy is None else 100 * evaluation.test_accuracy,
        report.config.selection,
        evaluation.seeds or None,
        100 * d.low if d else None,
        100 * d.high if d else None,
        "lossless" if evaluation.lossless else "lossy",
        bool(d and d.within_noise),
        evaluation.status,
        evaluation.run_id,
        evaluation.note,
    )
