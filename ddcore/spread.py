"""Accuracy over several distilled sets: the headline over sets, the spread over networks, and the
two sources of that spread (which distilled set, which network trained on it).

DC, DSA and DM report the mean and std over several synthetic sets, each evaluated by several
networks. Here `accuracies[i][j]` is network j trained on set i: `a` sets (distillation seeds),
`n` networks each (evaluation seeds); every set has the same `n` (a balanced design).

Standard deviations are population ones (numpy's `np.std`, as `EvalResult.accuracy_std` and the
papers' scripts report them); the interval of `difference` uses sample ones.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

ESTIMATOR = "one-way random-effects ANOVA (method of moments), negative between-set estimate set to 0"


@dataclass(frozen=True)
class OverSets:
    """One network's accuracies over `sets` distilled sets of `networks` evaluation networks each (fractions).

    `between_set_var` is None with one set, `within_set_var` None with one network per set: the data
    cannot tell them."""

    set_means: tuple[float, ...]  # each set's mean over its networks
    mean_over_sets: float  # the headline: the mean of the set means
    std_over_sets: float  # population std of the set means: how much the distillation seed moves it
    mean_over_networks: float  # over all sets x networks (equal to mean_over_sets: the design is balanced)
    std_over_networks: float  # population std over all sets x networks, pooled
    between_set_var: float | None
    within_set_var: float | None
    networks: int  # per set

    @property
    def sets(self) -> int:
        return len(self.set_means)


def over_sets(accuracies: list[list[float]]) -> OverSets:
    """Summaries and variance components of `accuracies[set][network]` (see the module docstring).

    The components are the ANOVA estimators of the one-way random-effects model
    y_ij = mu + s_i + e_ij, s_i ~ (0, var_between), e_ij ~ (0, var_within) (Searle, Casella and
    McCulloch, "Variance Components", Wiley 1992, chapter 3, the 1-way classification, ANOVA
    estimation; Montgomery, "Design and Analysis of Experiments", 8th ed., section 3.9), with a sets of n networks, set means m_i and grand mean M:

        MSW = sum_i sum_j (y_ij - m_i)^2 / (a (n - 1))     within-set mean square
        MSB = n sum_i (m_i - M)^2 / (a - 1)                between-set mean square
        var_within  = MSW
        var_between = max(0, (MSB - MSW) / n)

    E[MSW] = var_within and E[MSB] = var_within + n var_between, so both are unbiased before the
    truncation at 0 (a negative estimate means the set means vary no more than the networks predict).
    """
    if not accuracies or any(len(row) != len(accuracies[0]) or not row for row in accuracies):
        raise ValueError("the same number (at least 1) of network accuracies for every set")
    a, n = len(accuracies), len(accuracies[0])
    set_means = tuple(statistics.fmean(row) for row in accuracies)
    everything = [value for row in accuracies for value in row]
    grand = statistics.fmean(set_means)
    within = None
    if n > 1:
        within = sum((y - m) ** 2 for row, m in zip(accuracies, set_means) for y in row) / (a * (n - 1))
    between = None
    if a > 1:
        msb = n * sum((m - grand) ** 2 for m in set_means) / (a - 1)
        between = max(0.0, (msb - (within or 0.0)) / n)
    return OverSets(
        set_means,
        grand,
        statistics.pstdev(set_means),
        statistics.fmean(everything),
        statistics.pstdev(everything),
        between,
        within,
        n,
    )


@dataclass(frozen=True)
class Difference:
    """A - B in accuracy (fractions) and its interval; `basis` says which spread the interval uses."""

    value: float
    low: float | None  # None: no interval (one network and one set on a side)
    high: float | None
    basis: str  # "between sets" or "within a set only"
    confidence: float

    @property
    def within_noise(self) -> bool | None:
        """The interval holds 0 (no difference can be claimed); None without an interval."""
        return None if self.low is None else self.low <= 0 <= self.high

    def text(self) -> str:
        """`+0.45 points (95 % interval -0.10 .. +1.00 between sets: within noise)`."""
        head = f"{100 * self.value:+.2f} points"
        if self.low is None:
            return f"{head} (interval unknown: one set and one network on a side)"
        verdict = "within noise" if self.within_noise else "outside noise"
        caveat = "; one set per row: the distillation seed's spread is not in it" if self.basis != BETWEEN else ""
        return (
            f"{head} ({100 * self.confidence:g} % interval {100 * self.low:+.2f} .. {100 * self.high:+.2f} "
            f"{self.basis}: {verdict}{caveat})"
        )


BETWEEN, WITHIN = "between sets", "within a set only"


def difference(a: list[list[float]], b: list[list[float]], confidence: float = 0.95) -> Difference:
    """mean(A) - mean(B) of two measurements' `accuracies[set][network]`, with Welch's t-interval.

    With two sets or more on each side the interval is over the set means (Welch 1947, degrees of
    freedom by Satterthwaite 1946): a set mean's variance is var_between + var_within / n, so it
    carries the distillation seed's spread. With one set on a side that spread is unknown: the
    interval is then Welch's over the networks, which says only how well each set was measured.
    """
    if len(a) > 1 and len(b) > 1:
        sample_a, sample_b, basis = over_sets(a).set_means, over_sets(b).set_means, BETWEEN
    else:
        sample_a, sample_b, basis = [y for row in a for y in row], [y for row in b for y in row], WITHIN
    value = statistics.fmean(sample_a) - statistics.fmean(sample_b)
    if len(sample_a) < 2 or len(sample_b) < 2:
        return Difference(value, None, None, basis, confidence)
    low, high = _welch(sample_a, sample_b, value, confidence)
    return Difference(value, low, high, basis, confidence)


def _welch(a, b, value: float, confidence: float) -> tuple[float, float]:
    from scipy.stats import t

    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return value, value
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t.ppf((1 + confidence) / 2, df) * se
    return value - half, value + half
