"""Live views of long commands: what runs, what ended and how, elapsed and estimated time left.

Each view is a progress object holding the state and rendering it (tested without Ray or a
terminal) drawn by one `Display`: redrawn in place on a terminal, printed once at the end when
piped. `SweepProgress` is fed by `LiveView`, a Ray Tune callback on the driver's event loop;
`LosslessProgress` by the lossless search's driver (`orchestrator.engine.lossless.SearchWatch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ddcore.tables import plural
from orchestrator.engine.ipc_search import IPCSearch
from orchestrator.engine.sweep import DISTILL_SETS_PER_TRIAL, TIME_ATTR
from orchestrator.store import run_schema as schema

if TYPE_CHECKING:
    from orchestrator.engine.lossless import Evaluation

Clock = Callable[[], float]

# --- shared by every view: time and drawing ---------------------------------------------------------


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.2f}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class Stopwatch:
    clock: Clock = time.monotonic

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def restart(self, elapsed: float = 0.0) -> None:
        """Continue from `elapsed` seconds on this clock (a resumed sweep: another process's clock)."""
        self.started = self.clock() - elapsed

    def timing(self, left: float | None) -> str:
        eta = "estimating time left" if left is None else f"about {_duration(left)} left"
        return f"elapsed {_duration(self.elapsed())}, {eta}"

    def left(self, done: float, total: float) -> float | None:
        """Elapsed time scaled by the work left; None before any work is done."""
        if done <= 0:
            return None
        return max(self.elapsed() * (total - done) / done, 0.0)


def _table(columns: tuple[str, ...], left: tuple[str, ...]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right", overflow="fold")
    return table


class Progress(Protocol):
    def render(self) -> Group: ...


class Display:
    """Draws a progress with Rich. On a terminal it is redrawn in place once a second (the clock
    moves between events; rendering it is cheap) and on every change; off a terminal (a pipe, a log
    file) it is printed once, when the work ends."""

    REFRESH_PER_SECOND = 1.0

    def __init__(self, progress: Progress, console: Console) -> None:
        self.progress = progress
        self.live = Live(
            console=console,
            get_renderable=progress.render,
            auto_refresh=True,
            refresh_per_second=self.REFRESH_PER_SECOND,
        )

    @property
    def console(self) -> Console:
        return self.live.console

    def start(self) -> None:
        if self.console.is_terminal and not self.live.is_started:
            self.live.start()

    def changed(self) -> None:
        if self.live.is_started:
            self.live.refresh()

    def stop(self) -> None:
        if self.live.is_started:
            self.live.stop()  # draws it a last time
        else:
            self.console.print(self.progress.render())


# --- the sweep (Ray Tune) -------------------------------------------------------------------------


class TrialState(str, Enum):
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped early"
    FAILED = "failed"


@dataclass
class TrialProgress:
    config: dict[str, Any]
    state: TrialState = TrialState.RUNNING
    iteration: int = 0
    accuracy: float | None = None  # test
    val_accuracy: float | None = None

    def chosen(self, selection: str) -> float | None:
        return self.val_accuracy if selection == "val" else self.accuracy


@dataclass
class SweepProgress:
    """What the sweep's view shows; `iterations` is a trial's full length (ASHA may stop it before)."""

    name: str
    total: int
    iterations: int
    clock: Clock = time.monotonic
    trials: dict[str, TrialProgress] = field(default_factory=dict)
    selection: str = "test"  # which accuracy ranks the trials (schema.SELECTIONS)

    def __post_init__(self) -> None:
        self.stopwatch = Stopwatch(self.clock)

    def start(self, trial_id: str, config: dict[str, Any]) -> None:
        self.trials.setdefault(trial_id, TrialProgress(dict(config))).state = TrialState.RUNNING

    def result(self, trial_id: str, config: dict[str, Any], metrics: dict[str, Any]) -> None:
        trial = self.trials.setdefault(trial_id, TrialProgress(dict(config)))
        trial.iteration = int(metrics.get(TIME_ATTR, trial.iteration))
        trial.accuracy = metrics.get(schema.EVAL_ACCURACY, trial.accuracy)
        trial.val_accuracy = metrics.get(schema.VAL_EVAL_ACCURACY, getattr(trial, "val_accuracy", None))

    def complete(self, trial_id: str) -> None:
        trial = self.trials[trial_id]
        trial.state = TrialState.FINISHED if trial.iteration >= self.iterations else TrialState.STOPPED

    def fail(self, trial_id: str) -> None:
        self.trials.setdefault(trial_id, TrialProgress({})).state = TrialState.FAILED

    def count(self, state: TrialState) -> int:
        return sum(trial.state == state for trial in list(self.trials.values()))

    def best(self) -> TrialProgress | None:
        scored = [
            t
            for t in list(self.trials.values())
            if t.chosen(self.selection) is not None and t.state != TrialState.FAILED
        ]
        return max(scored, key=lambda t: t.chosen(self.selection), default=None)

    def seconds_left(self) -> float | None:
        """Ended trials count whole, running ones by their iteration."""
        done = sum(
            1.0 if t.state != TrialState.RUNNING else min(t.iteration / self.iterations, 1.0)
            for t in list(self.trials.values())
        )
        return self.stopwatch.left(done, self.total)

    def headline(self) -> str:
        counts = ", ".join(f"{self.count(state)} {state.value}" for state in TrialState)
        waiting = max(self.total - len(self.trials), 0)
        return (
            f"Sweep {self.name}: {counts}, {waiting} waiting of {self.total} trials; "
            f"{self.stopwatch.timing(self.seconds_left())}"
        )

    def best_line(self) -> str:
        best = self.best()
        if best is None:
            return "best so far: none reported yet"
        settings = ", ".join(f"{k}={_value(v)}" for k, v in best.config.items())
        sets = plural(DISTILL_SETS_PER_TRIAL, "distilled set")
        on = schema.SELECTED_ON[self.selection]
        return (
            f"best so far: {100 * best.chosen(self.selection):.2f} % at iteration {best.iteration} "
            f"on {sets} ({settings}), ranked on the {on}"
        )

    def render(self) -> Group:
        trials = list(self.trials.items())  # a snapshot: the display's thread draws while Tune reports
        names = sorted({k for _, t in trials for k in t.config})
        columns = [f"{name} %" + (" (chose)" if name == self.selection else "") for name in schema.SELECTIONS[::-1]]
        table = _table(("trial", "state", "iteration", *columns, *names), left=("trial", "state"))
        for trial_id, t in trials:
            scores = [_percent(getattr(t, "val_accuracy", None)), _percent(t.accuracy)]
            iteration = f"{t.iteration}/{self.iterations}"
            table.add_row(trial_id, t.state.value, iteration, *scores, *(_value(t.config.get(n, "-")) for n in names))
        return Group(Text(self.headline()), Text(self.best_line()), table)


class LiveView(Callback):
    """Ray Tune callback feeding a `SweepProgress` and drawing it.

    `ddorch sweep --resume` gets it back without a `callbacks` argument (`Tuner.restore` has none):
    Tune restores the run config it pickled with the sweep, this callback included, and then the
    callback's last checkpointed state (`get_state` / `set_state`, Tune's public callback API).
    """

    def __init__(self, progress: SweepProgress, console: Console) -> None:
        self.progress = progress
        self.display = Display(progress, console)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config into the experiment folder; a terminal cannot be pickled.
        return {"progress": self.progress}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from orchestrator.views.tables import console  # the resuming process's terminal, the CLI's console

        self.__init__(state["progress"], console)
        self.progress.stopwatch.restart()  # the pickling process's clock means nothing here

    def get_state(self) -> dict[str, Any]:
        return {"trials": self.progress.trials, "elapsed": self.progress.stopwatch.elapsed()}

    def set_state(self, state: dict[str, Any]) -> None:
        """The trials seen before the sweep was interrupted; resumed ones report again."""
        self.progress.trials = state["trials"]
        self.progress.stopwatch.restart(state["elapsed"])

    def setup(self, **info: Any) -> None:
        self.display.start()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.start(trial.trial_id, trial.config)
        self.display.changed()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.progress.result(trial.trial_id, trial.config, result)
        self.display.changed()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.complete(trial.trial_id)
        self.display.changed()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.fail(trial.trial_id)
        self.display.changed()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.display.stop()


# --- the lossless-IPC search ----------------------------------------------------------------------


class IPCState(str, Enum):
    RUNNING = "running"
    LOSSLESS = "lossless"
    LOSSY = "lossy"
    STOPPED = "stopped early"
    FAILED = "failed"


EVALUATED = (IPCState.LOSSLESS, IPCState.LOSSY)


@dataclass
class IPCProgress:
    state: IPCState
    launched: float  # on the progress's clock
    accuracy: float | None = None  # fraction: the mean over seeds, or the halfway check when stopped
    seconds: float | None = None  # how long it ran; None while running or when reused from MLflow


@dataclass
class LosslessProgress:
    """What the lossless search's view shows: per method the IPCs running, evaluated and stopped
    early, and the smallest lossless IPC so far. Accuracies and the threshold are fractions."""

    name: str
    methods: tuple[str, ...]
    max_ipc: int
    concurrency: int
    threshold: float | None = None  # known once the target is
    clock: Clock = time.monotonic
    ipcs: dict[str, dict[int, IPCProgress]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stopwatch = Stopwatch(self.clock)
        for method in self.methods:
            self.ipcs.setdefault(method, {})

    def launched(self, method: str, ipc: int) -> None:
        self.ipcs[method][ipc] = IPCProgress(IPCState.RUNNING, self.clock())

    def evaluated(self, method: str, ipc: int, state: IPCState, accuracy: float | None, reused: bool) -> None:
        earlier = self.ipcs[method].get(ipc)
        seconds = None if reused or earlier is None else self.clock() - earlier.launched
        self.ipcs[method][ipc] = IPCProgress(state, self.clock(), accuracy, seconds)

    def count(self, method: str, *states: IPCState) -> int:
        return sum(p.state in states for p in list(self.ipcs[method].values()))

    def smallest_lossless(self, method: str) -> int | None:
        return min((i for i, p in list(self.ipcs[method].items()) if p.state == IPCState.LOSSLESS), default=None)

    def trials_left(self, method: str) -> int:
        """At most this many more IPCs of `method` to run, those running included."""
        search = IPCSearch(self.max_ipc)
        for ipc, p in list(self.ipcs[method].items()):
            if p.state != IPCState.RUNNING:
                search.record(ipc, p.state == IPCState.LOSSLESS)
        return search.at_most_left()

    def seconds_left(self) -> float | None:
        """At most: the trials left at the mean length of those run here, `concurrency` at a time,
        less what the running ones have done. None until one has finished here."""
        runs = [p for m in self.methods for p in list(self.ipcs[m].values())]
        lengths = [p.seconds for p in runs if p.seconds is not None]
        if not lengths:
            return None
        mean = sum(lengths) / len(lengths)
        now = self.clock()
        running_done = sum(min((now - p.launched) / mean, 1.0) for p in runs if p.state == IPCState.RUNNING)
        trials = sum(self.trials_left(m) for m in self.methods) - running_done
        return mean * max(trials, 0.0) / self.concurrency

    def headline(self) -> str:
        target = "target: resolving" if self.threshold is None else f"lossless at {100 * self.threshold:.2f} %"
        return f"Lossless search {self.name} ({target}); {self.stopwatch.timing(self.seconds_left())}"

    def method_line(self, method: str) -> str:
        smallest = self.smallest_lossless(method)
        return (
            f"{method}: {self.count(method, IPCState.RUNNING)} running, "
            f"{self.count(method, *EVALUATED)} evaluated ({self.count(method, IPCState.LOSSLESS)} lossless), "
            f"{self.count(method, IPCState.STOPPED)} stopped early, {self.count(method, IPCState.FAILED)} failed; "
            f"smallest lossless IPC so far: {smallest or 'none'}; at most {self.trials_left(method)} IPCs to go"
        )

    def versus_target(self, accuracy: float | None) -> str:
        if accuracy is None or self.threshold is None:
            return "-"
        return f"{100 * (accuracy - self.threshold):+.2f}"

    def _time(self, p: IPCProgress) -> str:
        if p.state == IPCState.RUNNING:
            return _duration(self.clock() - p.launched)
        return "reused" if p.seconds is None else _duration(p.seconds)

    def render(self) -> Group:
        table = _table(("method", "IPC", "state", "accuracy %", "vs threshold", "time"), left=("method", "state"))
        for method in self.methods:
            for ipc, p in sorted(list(self.ipcs[method].items())):
                accuracy = "-" if p.accuracy is None else f"{100 * p.accuracy:.2f}"
                table.add_row(method, str(ipc), p.state.value, accuracy, self.versus_target(p.accuracy), self._time(p))
        return Group(Text(self.headline()), *(Text(self.method_line(m)) for m in self.methods), table)


def ipc_state(evaluation: Evaluation) -> IPCState:
    if evaluation.status == "finished":
        return IPCState.LOSSLESS if evaluation.lossless else IPCState.LOSSY
    return IPCState.STOPPED if evaluation.status == "stopped early" else IPCState.FAILED


def evaluation_line(evaluation: Evaluation) -> str:
    e = evaluation
    accuracy = "-" if e.accuracy_mean is None else f"{100 * e.accuracy_mean:.2f} %"
    networks = e.decision.seeds if e.decision else 1  # stopped early: its one-network halfway check
    basis = f"{plural(e.distill_sets, 'distilled set')} x {plural(networks, 'network')}"
    reused = ", reused from MLflow" if e.reused else ""
    return (
        f"{e.method} IPC {e.ipc}: {accuracy} on {basis}, {'lossless' if e.lossless else 'lossy'} ({e.status}{reused})"
    )


class LosslessView:
    """The lossless search's watch (`orchestrator.engine.lossless.SearchWatch`): feeds a `LosslessProgress`
    and draws it; one line per evaluation is printed too (above the view on a terminal, the log off one)."""

    def __init__(self, progress: LosslessProgress, console: Console) -> None:
        self.progress = progress
        self.display = Display(progress, console)

    def begin(self, threshold: float) -> None:
        self.progress.threshold = threshold
        self.progress.stopwatch.restart()  # the target (a baseline trained now) is not the search's time
        self.display.start()

    def launched(self, method: str, ipc: int) -> None:
        self.progress.launched(method, ipc)
        self.display.changed()

    def evaluated(self, evaluation: Evaluation) -> None:
        e = evaluation
        self.progress.evaluated(e.method, e.ipc, ipc_state(e), e.accuracy_mean, e.reused)
        self.display.console.print(evaluation_line(e), markup=False)
        self.display.changed()

    def end(self) -> None:
        self.display.stop()
