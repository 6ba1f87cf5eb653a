"""A sweep's live view: trials running / finished / stopped early / failed, the best accuracy so
far with its settings, elapsed and estimated time left, redrawn in place as Ray Tune reports.

`SweepProgress` holds the state and renders it (tested without Ray); `LiveView` is the Ray Tune
callback that feeds it from the driver's event loop and draws it with Rich.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.sweep import METRIC, TIME_ATTR


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
    accuracy: float | None = None


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class SweepProgress:
    """What the live view shows; `iterations` is a trial's full length (ASHA may stop it before)."""

    name: str
    total: int
    iterations: int
    clock: Callable[[], float] = time.monotonic
    trials: dict[str, TrialProgress] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def start(self, trial_id: str, config: dict[str, Any]) -> None:
        self.trials.setdefault(trial_id, TrialProgress(dict(config))).state = TrialState.RUNNING

    def result(self, trial_id: str, config: dict[str, Any], metrics: dict[str, Any]) -> None:
        trial = self.trials.setdefault(trial_id, TrialProgress(dict(config)))
        trial.iteration = int(metrics.get(TIME_ATTR, trial.iteration))
        trial.accuracy = metrics.get(METRIC, trial.accuracy)

    def complete(self, trial_id: str) -> None:
        trial = self.trials[trial_id]
        trial.state = TrialState.FINISHED if trial.iteration >= self.iterations else TrialState.STOPPED

    def fail(self, trial_id: str) -> None:
        self.trials.setdefault(trial_id, TrialProgress({})).state = TrialState.FAILED

    def count(self, state: TrialState) -> int:
        return sum(trial.state == state for trial in self.trials.values())

    def best(self) -> TrialProgress | None:
        scored = [t for t in self.trials.values() if t.accuracy is not None and t.state != TrialState.FAILED]
        return max(scored, key=lambda t: t.accuracy, default=None)

    def seconds_left(self) -> float | None:
        """Elapsed time scaled by the work left: ended trials count whole, running ones by iteration."""
        done = sum(
            1.0 if t.state != TrialState.RUNNING else min(t.iteration / self.iterations, 1.0)
            for t in self.trials.values()
        )
        if done <= 0:
            return None
        elapsed = self.clock() - self.started
        return max(elapsed * (self.total - done) / done, 0.0)

    def headline(self) -> str:
        counts = ", ".join(f"{self.count(state)} {state.value}" for state in TrialState)
        waiting = max(self.total - len(self.trials), 0)
        left = self.seconds_left()
        eta = "estimating time left" if left is None else f"about {_duration(left)} left"
        return (
            f"Sweep {self.name}: {counts}, {waiting} waiting of {self.total} trials; "
            f"elapsed {_duration(self.clock() - self.started)}, {eta}"
        )

    def best_line(self) -> str:
        best = self.best()
        if best is None:
            return "best so far: none reported yet"
        settings = ", ".join(f"{k}={_value(v)}" for k, v in best.config.items())
        return f"best so far: {100 * best.accuracy:.2f} % at iteration {best.iteration} ({settings})"

    def render(self) -> Group:
        names = sorted({k for t in self.trials.values() for k in t.config})
        table = Table(show_edge=False, pad_edge=False)
        for column in ("trial", "state", "iteration", "accuracy %", *names):
            table.add_column(column, justify="left" if column in ("trial", "state") else "right", overflow="fold")
        for trial_id, t in self.trials.items():
            accuracy = "-" if t.accuracy is None else f"{100 * t.accuracy:.2f}"
            iteration = f"{t.iteration}/{self.iterations}"
            table.add_row(trial_id, t.state.value, iteration, accuracy, *(_value(t.config.get(n, "-")) for n in names))
        return Group(Text(self.headline()), Text(self.best_line()), table)


class LiveView(Callback):
    """Ray Tune callback drawing a `SweepProgress` with Rich: redrawn in place on a terminal; off a
    terminal (a pipe, a log file) printed once, when the sweep ends."""

    REDRAW_SECONDS = 1.0  # between reports, only the clock changes

    def __init__(self, progress: SweepProgress, console: Console) -> None:
        self.progress = progress
        self.live = Live(progress.render(), console=console, auto_refresh=False)
        self.drawn = progress.clock()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config into the experiment folder; a terminal cannot be pickled.
        return {"progress": self.progress}

    def _draw(self) -> None:
        if self.live.is_started:
            self.live.update(self.progress.render(), refresh=True)
        self.drawn = self.progress.clock()

    def setup(self, **info: Any) -> None:
        if self.live.console.is_terminal:
            self.live.start()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.start(trial.trial_id, trial.config)
        self._draw()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.progress.result(trial.trial_id, trial.config, result)
        self._draw()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.complete(trial.trial_id)
        self._draw()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.fail(trial.trial_id)
        self._draw()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.progress.clock() - self.drawn >= self.REDRAW_SECONDS:
            self._draw()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.live.is_started:
            self._draw()
            self.live.stop()
        else:
            self.live.console.print(self.progress.render())
