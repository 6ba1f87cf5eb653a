"""What the commands print: the console and every table, built from library results.

`orchestrator.cli` parses options, calls the library and prints what these functions build, so the
look of the output is changed here, in one place. Names are never cut: on a terminal cells fold onto
more lines; off a terminal (a pipe, a file) tables are plain aligned text of any width.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ddcore.tables import squared_points

console = Console()


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    first_left: bool = False,
    left: Sequence[str] = (),
) -> Table:
    """A table of strings, numbers right-aligned; names left-aligned: the first column when `first_left`,
    and the columns named in `left`."""
    built = Table(title=title)
    for i, column in enumerate(columns):
        names = (first_left and i == 0) or column in left
        built.add_column(column, justify="left" if names else "right", overflow="fold")
    for row in rows:
        built.add_row(*row)
    return built


def show(built: Table) -> None:
    """Print a table: boxed on a terminal; plain text off one, where Rich would cut it to 80 columns."""
    if console.is_terminal:
        console.print(built)
    else:
        console.print(plain(built), soft_wrap=True, markup=False, highlight=False)


def plain(built: Table) -> str:
    """The table as aligned text, two spaces between columns, title above and caption below."""
    columns = [[str(column.header), *map(str, column.cells)] for column in built.columns]
    widths = [max(len(cell) for cell in column) for column in columns]
    lines = [str(built.title)] if built.title else []
    for cells in zip(*columns):
        padded = (
            cell.ljust(width) if column.justify == "left" else cell.rjust(width)
            for cell, width, column in zip(cells, widths, built.columns)
        )
        lines.append("  ".join(padded).rstrip())
    if built.caption:
        lines.append(str(built.caption))
    return "\n".join(lines)


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def baseline(result: Any, from_cache: list[bool], title: str) -> Table:
    """`ddcore.baseline.full_data_baseline`'s seeds."""
    rows = (
        [
            str(run.seed),
            _percent(run.accuracy),
            _percent(run.balanced_accuracy),
            f"{run.train_seconds:.1f}",
            "yes" if cached else "no",
        ]
        for run, cached in zip(result.runs, from_cache)
    )
    return table(title, ("seed", "accuracy %", "balanced acc. %", "train time s", "cached"), rows)


def trial(result: Any, title: str) -> Table:
    """A trial's evaluation per architecture beside its full-data baseline (`orchestrator.engine.trial.TrialResult`)."""
    rows = []
    for name, evaluation in result.evaluations.items():
        full = result.baselines.get(name)
        rows.append(
            [
                name,
                f"{_percent(evaluation.accuracy_mean)} ± {_percent(evaluation.accuracy_std)}",
                _percent(evaluation.balanced_accuracy_mean),
                f"{evaluation.train_seconds_mean:.1f}",
                f"{evaluation.flops_per_image / 1e6:.2f}",
                _percent(full.accuracy_mean) if full else "-",
                f"{full.train_seconds_mean:.1f}" if full else "-",
            ]
        )
    columns = (
        "eval model",
        "accuracy %",
        "balanced %",
        "train s",
        "MFLOPs/img",
        "full-data acc. %",
        "full-data train s",
    )
    return table(title, columns, rows)


def sets(result: Any, title: str) -> Table:
    """Each distilled set's evaluation (mean ± std over its networks) and the result over the sets
    (`orchestrator.engine.sets.SetsResult`)."""
    models = list(result.over_sets)
    rows = [
        [
            str(seed),
            trial_result.run_id,
            *(
                f"{_percent(e.accuracy_mean)} ± {_percent(e.accuracy_std)}"
                for e in (trial_result.evaluations[m] for m in models)
            ),
            f"{trial_result.distill_seconds:.1f}",
            f"{wall:.1f}",
        ]
        for seed, trial_result, wall in zip(result.seeds, result.sets, result.set_seconds)
    ]
    over = result.over_sets.values()
    rows.append(
        ["over sets", "", *(f"{_percent(s.mean_over_sets)} ± {_percent(s.std_over_sets)}" for s in over), "", ""]
    )
    columns = ("distill seed", "MLflow child run", *(f"{m} accuracy %" for m in models), "distill s", "wall s")
    built = table(title, columns, rows, left=("MLflow child run",))
    built.caption = "a set's row: mean ± std over its networks; over sets: mean ± std of the sets' means"
    return built


def over_sets_line(summary: Any) -> str:
    """A `ddcore.spread.OverSets` in one line, each spread named by what it is over."""
    s = summary
    return (
        f"{_percent(s.mean_over_sets)} ± {_percent(s.std_over_sets)} % over {s.sets} sets (mean ± std of the sets' "
        f"means); over all {s.sets * s.networks} networks {_percent(s.mean_over_networks)} ± "
        f"{_percent(s.std_over_networks)} %; variance components (%², ANOVA): between sets "
        f"{squared_points(s.between_set_var)}, within a set {squared_points(s.within_set_var)}"
    )


def sweep_rows(title: str, rows: Any, names: list[str]) -> Table:
    """A sweep's trials, ranked (`orchestrator.engine.sweep.TrialRow`)."""

    def value(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    body = (
        [
            str(rank),
            *(value(row.params.get(n)) for n in names),
            "-" if row.val_accuracy is None else _percent(row.val_accuracy),
            "-" if row.accuracy is None else _percent(row.accuracy),
            str(row.distill_sets),
            str(row.iteration),
            row.status,
            row.child_run_id or "-",
        ]
        for rank, row in enumerate(rows, 1)
    )
    chose = rows[0].selected_by if rows else "test"
    scores = [f"{name} %" + (" (chose)" if name == chose else "") for name in ("val", "test")]
    return table(title, ("#", *names, *scores, "sets", "iterations", "status", "MLflow child run"), body)


def lossless(report: Any, title: str, confidence: float) -> Table:
    """Every IPC a lossless search evaluated (`orchestrator.engine.lossless.LosslessReport`)."""
    rows = []
    for result in report.results.values():
        for e in result.evaluations:
            d = e.decision
            rows.append(
                [
                    e.method,
                    str(e.ipc),
                    f"{report.compression_ratio(e.ipc):,.0f}x",
                    "-" if e.accuracy_mean is None else _percent(e.accuracy_mean),
                    "-" if e.test_accuracy is None else _percent(e.test_accuracy),
                    str(e.seeds or "-"),
                    f"{_percent(d.low)} .. {_percent(d.high)}" if d else "-",
                    "lossless" if e.lossless else "lossy",
                    "yes" if d and d.within_noise else "",
                    e.status + (" (reused)" if e.reused else ""),
                    e.run_id or "-",
                ]
            )
    title = (
        f"{title}: target {_percent(report.target.accuracy)} % ({report.target.source}"
        + ("" if report.target.test_accuracy is None else f"; test {_percent(report.target.test_accuracy)} %")
        + "), "
        f"lossless from {100 * report.threshold:.2f} %"
    )
    columns = (
        "method",
        "IPC",
        "compression",
        f"{report.config.selection} % (decides)",
        "test %",
        "networks",
        f"{100 * confidence:g}% interval",
        "decision",
        "within noise",
        "status",
        "MLflow run",
    )
    return table(title, columns, rows)


def analysis(result_table: Any) -> Table:
    """A `ddcore.tables.ResultTable`; its notes become the caption."""
    built = table(result_table.title, result_table.columns, result_table.rows)
    built.caption = "\n".join(result_table.notes)
    return built
