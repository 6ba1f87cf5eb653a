"""`ddorch bench`: the accuracy benchmark's rows, listed, run one at a time on idle cores, and tabled.

The rows live in a benchmark folder (`benchmarks/` of a checkout: rows.toml, results.jsonl,
RESULTS.md, parts/); `orchestrator.engine.bench` runs them and `orchestrator.views.bench_tables`
writes their tables. Registered on the `ddorch` app as a command group by `orchestrator.cli`.
"""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from orchestrator.cli import options
from orchestrator.engine.bench import (
    BenchFolder,
    RunOptions,
    check_device,
    list_lines,
    load_results,
    load_rows,
    run_suite,
    select,
)
from orchestrator.views.bench_tables import update_results_md

bench_app = typer.Typer(
    help="The accuracy benchmark: rows in benchmarks/rows.toml, run one at a time on idle cores, "
    "recorded in benchmarks/results.jsonl and the tables of benchmarks/RESULTS.md.",
    no_args_is_help=True,
)


FolderOption = typer.Option(
    Path("benchmarks"),
    "--folder",
    help="The benchmark folder: rows.toml, results.jsonl, RESULTS.md and parts/ (default: a checkout's benchmarks/).",
)
RowsOption = typer.Option(None, "--rows", help="Comma-separated row names (default: every row, in rows.toml's order).")


@bench_app.command("list")
@options.friendly_errors
def list_rows(rows: str | None = RowsOption, device: str = options.DeviceOption, folder: Path = FolderOption) -> None:
    """List the rows: done or pending (and what earlier parts kept), the estimate in minutes, the table.

    Example: ddorch bench list --rows mnist_pad_ipc10
    """
    bench = BenchFolder(folder)
    chosen = select(load_rows(bench.rows), rows)
    for line in list_lines(chosen, load_results(bench.results), bench.parts, device):
        typer.echo(line)


@bench_app.command()
@options.friendly_errors
def run(
    rows: str | None = RowsOption,
    budget_minutes: float | None = typer.Option(
        None,
        "--budget-minutes",
        min=1,
        help="Start no row that would not finish in time; a longer row runs the part that fits (a distillation: "
        "until the budget ends), kept for the next run (default: no budget).",
    ),
    device: str = options.DeviceOption,
    rerun: bool = typer.Option(False, "--rerun", help="Run rows that already have a result."),
    max_load: float = typer.Option(0.5, "--max-load", help="Start no row above this 1-minute load average."),
    ignore_load: bool = typer.Option(False, "--ignore-load", help="Start anyway (recorded in the row)."),
    tracking_uri: str | None = options.TrackingUriOption,
    folder: Path = FolderOption,
) -> None:
    """Run the pending rows one at a time (MLflow experiment `benchmarks`), then regenerate RESULTS.md's tables.

    A row with a result of the same settings is skipped unless --rerun.

    Example: ddorch bench run --rows mnist_datadam_ipc10 --budget-minutes 90 --device cpu
    """
    bench = BenchFolder(folder)
    every_row = load_rows(bench.rows)
    chosen = select(every_row, rows)
    check_device(device)
    # A `kill` (how a background run is stopped) unwinds like Ctrl-C, so the row's MLflow run ends
    # FAILED with the reason instead of staying RUNNING.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    again = frozenset(row.name for row in chosen) if rerun else frozenset()
    options = RunOptions(again, budget_minutes, max_load, ignore_load, tracking_uri, device)
    run_suite(chosen, options, bench)
    update_results_md(load_results(bench.results), every_row, bench.results_md)


@bench_app.command()
@options.friendly_errors
def table(folder: Path = FolderOption) -> None:
    """Regenerate the tables in RESULTS.md from results.jsonl and rows.toml (the prose around them stays).

    Example: ddorch bench table
    """
    bench = BenchFolder(folder)
    rows, results = load_rows(bench.rows), load_results(bench.results)
    update_results_md(results, rows, bench.results_md)
    typer.echo(f"tables in {bench.results_md} regenerated from {len(results)} result line(s)")
