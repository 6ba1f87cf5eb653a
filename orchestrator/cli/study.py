"""`ddorch study`: studies (a rows file with a header, `orchestrator.engine.study`) listed, shown and run.

A study runs through the benchmark runner (`orchestrator.engine.bench.run_suite`, as `ddorch bench run`)
into its folder, so done parts are reused and a stopped study resumes. Registered on the `ddorch` app
as a command group by `orchestrator.cli`.
"""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from ddcore.errors import DDError
from orchestrator.cli import options
from orchestrator.engine.bench import RunOptions, check_device, load_results, pending, run_suite
from orchestrator.engine.study import (
    find_study,
    list_studies,
    load_study,
    on_gpu_only,
    plan,
    select_parts,
    study_folder,
)

study_app = typer.Typer(
    help="Studies: named parts (trials, baselines, analyses, searches) run as one resumable command.",
    no_args_is_help=True,
)

StudyFolderOption = typer.Option(
    None, "--folder", help="The study's results.jsonl, parts/ and report (default: ./ddorch-studies/NAME/)."
)


@study_app.command("list")
@options.friendly_errors
def list_command() -> None:
    """List the studies ($DDORCH_PRESETS/studies/ first, then the shipped ones).

    Example: ddorch study list
    """
    for study in list_studies():
        typer.echo(f"{study.name:20} {len(study.rows):3} parts  {study.title}  ({study.path})")


@study_app.command()
@options.friendly_errors
def show(name: str = typer.Argument(..., help="A study's name (`ddorch study list`).")) -> None:
    """Print a study's sections and their parts.

    Example: ddorch study show project-a
    """
    study = load_study(find_study(name))
    typer.echo(f"{study.name}: {study.title} ({study.path})")
    for section in study.sections:
        typer.echo(f"\n[{section.id}] {section.title}" + (f": {section.question}" if section.question else ""))
        for row in study.section_rows(section):
            typer.echo(f"  {row.name:34} {_what(row)}")
    if not study.sections:
        for row in study.rows:
            typer.echo(f"  {row.name:34} {_what(row)}")


def _what(row) -> str:
    if row.kind == "analysis":
        return f"{row.analysis} of {row.of}"
    if row.kind == "search":
        return f"lossless search on {row.dataset}"
    gpu = " (GPU)" if row.hardware == "gpu" else ""
    if row.kind == "baseline":
        return f"full-data baseline, {row.dataset}, {row.eval_model}{gpu}"
    return f"{row.method} {row.preset or ''} IPC {row.ipc} {row.init} on {row.dataset}{gpu}"


@study_app.command()
@options.friendly_errors
def run(
    name: str = typer.Argument(..., help="A study's name (`ddorch study list`)."),
    only: str | None = typer.Option(
        None, "--only", help="Comma-separated parts, with every part they read that is not done (default: all)."
    ),
    budget_hours: float | None = typer.Option(
        None,
        "--budget-hours",
        min=0.01,
        help="Start no part that would not finish in time; a longer trial runs the piece that fits, kept for "
        "the next run (default: no budget).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print every part: done or pending, its estimate here and on a GPU; run nothing."
    ),
    address: str | None = options.AddressOption,
    device: str = options.DeviceOption,
    tracking_uri: str | None = options.TrackingUriOption,
    folder: Path | None = StudyFolderOption,
) -> None:
    """Run a study's pending parts in dependency order (done parts, same settings, are reused).

    GPU parts (hardware = "gpu") are left out on a CPU unless --only names them.

    Example: ddorch study run project-a --budget-hours 6 --dry-run
    """
    if address:  # run_suite runs parts in this process; spreading them over a cluster is issue 37's next step
        raise DDError("study run --address: not yet (a study runs its parts one at a time on this machine)")
    study = load_study(find_study(name))
    rows = select_parts(study, only)
    check_device(device)
    on_gpu = on_gpu_only(rows, only, device)
    bench = study_folder(study, folder)
    budget = 60 * budget_hours if budget_hours else None
    if dry_run:
        lines = plan(rows, bench, budget, on_gpu)
        for line in lines:
            typer.echo(line.text())
        left_out = [line.row.name for line in lines if line.note.startswith("left out")]
        typer.echo(f"{len(lines)} parts; a run here would leave out: {', '.join(left_out) or 'none'}")
        return
    for row in on_gpu:
        typer.echo(f"skip {row.name}: a GPU part on a CPU (--only {row.name} runs it here)")
    # A `kill` unwinds like Ctrl-C, so the part's MLflow run ends FAILED instead of staying RUNNING.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # A study is not a timed benchmark: its parts start whatever the load.
    run_options = RunOptions(
        budget_minutes=budget, ignore_load=True, tracking_uri=tracking_uri, device=device, rerun_hint=False
    )
    todo = [row for row in rows if row not in on_gpu]
    done = run_suite(todo, run_options, bench)
    typer.echo(
        f"{len(done)} part(s) run now, {len(todo) - len(pending(todo, load_results(bench.results)))} done in all of {len(todo)}; results in {bench.results}"
    )


@study_app.command()
@options.friendly_errors
def report(
    name: str = typer.Argument(..., help="A study's name (`ddorch study list`)."),
    output_dir: Path | None = typer.Option(
        None,
        "--output-dir",
        callback=lambda path: path and options._writable_folder(path),
        help="Folder for report.html (self-contained), report.md and images/ (default: the study's folder).",
    ),
    tracking_uri: str | None = options.TrackingUriOption,
    folder: Path | None = StudyFolderOption,
) -> None:
    """Write a study's HTML and Markdown report, by its sections: tables, grids, analyses, provenance.

    Parts not run yet are listed with the command that runs them.

    Example: ddorch study report project-a --output-dir report
    """
    from orchestrator.views.study_report import build_study_report

    study = load_study(find_study(name))
    written = build_study_report(study, study_folder(study, folder), output_dir, tracking_uri)
    typer.echo(f"report: {written.html_path} and {written.markdown_path} ({len(written.sections)} sections)")
