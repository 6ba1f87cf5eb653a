"""The lossless-IPC search without execution: one IPC's decision and which IPC to try next.

Pure functions and classes (no Ray, no MLflow, no training), so the search can be tested with an
accuracy oracle; `orchestrator.engine.lossless` drives it.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

# --- one IPC's decision --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Mean test accuracy over seeds (fractions), its t-interval, and the lossless threshold."""

    mean: float
    low: float
    high: float
    seeds: int
    threshold: float

    @property
    def lossless(self) -> bool:
        return self.mean >= self.threshold

    @property
    def within_noise(self) -> bool:
        """The interval straddles the threshold: another draw of seeds could flip the decision."""
        return self.low <= self.threshold <= self.high


def decide(mean: float, population_std: float, seeds: int, threshold: float, confidence: float = 0.95) -> Decision:
    """Lossless when the mean over `seeds` reaches `threshold`; Student's t-interval for the mean.

    The interval is mean ± t_{(1+c)/2, n-1} s / sqrt(n), s the sample standard deviation (the
    population one `EvalResult.accuracy_std` reports, times sqrt(n / (n-1))), clipped to [0, 1].
    More seeds narrow it; one seed gives no interval ([0, 1]), so a one-seed decision is always
    within noise. The target is taken as exact: its own seed noise is not in the interval.
    """
    if seeds < 2:
        return Decision(mean, 0.0, 1.0, seeds, threshold)
    from scipy.stats import t

    sample_std = population_std * math.sqrt(seeds / (seeds - 1))
    half = t.ppf((1 + confidence) / 2, seeds - 1) * sample_std / math.sqrt(seeds)
    return Decision(mean, max(0.0, mean - half), min(1.0, mean + half), seeds, threshold)


# --- the search, without execution ------------------------------------------------------------


def geometric_grid(max_ipc: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, 100, ... below `max_ipc`, then `max_ipc` itself (so it is always tried)."""
    grid, scale = [], 1
    while scale <= max_ipc:
        grid += [step * scale for step in (1, 2, 5) if step * scale < max_ipc]
        scale *= 10
    return grid + [max_ipc]


class IPCSearch:
    """Which IPC to evaluate next, from the decisions so far and the IPCs still running.

    Grid phase: the grid points in increasing order until one is lossless. Then bisection on the
    open interval between the largest lossy IPC below the smallest lossless one (`lo`, 0 if none)
    and that lossless IPC (`hi`): each new IPC halves the widest gap left between `lo`, the IPCs
    running inside the interval, and `hi`, so with one at a time it is plain bisection,
    ceil(log2(hi - lo)) evaluations at most, and with several at a time they split it further.
    Done when no integer lies between `lo` and `hi` (the answer is `hi`), or when the whole grid
    is lossy (not reached up to `max_ipc`).
    """

    def __init__(self, max_ipc: int) -> None:
        self.max_ipc = max_ipc
        self.grid = geometric_grid(max_ipc)
        self.lossless: dict[int, bool] = {}

    def record(self, ipc: int, lossless: bool) -> None:
        self.lossless[ipc] = lossless

    @property
    def smallest_lossless(self) -> int | None:
        return min((ipc for ipc, ok in self.lossless.items() if ok), default=None)

    def bounds(self) -> tuple[int, int | None]:
        """(largest lossy IPC below the smallest lossless one, or 0; the smallest lossless, or None)."""
        hi = self.smallest_lossless
        lossy = [ipc for ipc, ok in self.lossless.items() if not ok and (hi is None or ipc < hi)]
        return max(lossy, default=0), hi

    @property
    def done(self) -> bool:
        lo, hi = self.bounds()
        if hi is None:
            return all(ipc in self.lossless for ipc in self.grid)
        return hi - lo <= 1

    def at_most_left(self) -> int:
        """Evaluations still needed in the worst case: the untried grid points (all lossy but the
        last), then bisecting the gap below the lossless one."""
        if self.done:
            return 0
        lo, hi = self.bounds()
        if hi is not None:
            return math.ceil(math.log2(hi - lo))
        untried = [ipc for ipc in self.grid if ipc not in self.lossless]
        below = max((ipc for ipc in self.grid if ipc < untried[-1]), default=0)
        return len(untried) + math.ceil(math.log2(untried[-1] - below))

    def next_ipc(self, running: Collection[int] = ()) -> int | None:
        """The next IPC to launch; None when done or when only the running ones can tell more."""
        if self.done:
            return None
        lo, hi = self.bounds()
        if hi is None:
            return next((ipc for ipc in self.grid if ipc not in self.lossless and ipc not in running), None)
        points = sorted({lo, hi, *(ipc for ipc in running if lo < ipc < hi)})
        gaps = [(b - a, -a, a, b) for a, b in zip(points, points[1:]) if b - a > 1]
        if not gaps:
            return None
        _, _, a, b = max(gaps)  # the widest gap; the lowest of equally wide ones
        return (a + b) // 2
