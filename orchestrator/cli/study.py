"""`ddorch study`: studies (a rows file with a header, `orchestrator.engine.study`) listed, shown and run.

A study runs through the benchmark runner (`orchestrator.engine.bench.run_suite`, as `ddorch bench run`)
into its folder, so done parts are reused and a stopped study resumes; with `--address`, its parts run as
Ray tasks, several at once (`orchestrator.engine.study_cluster`), into the same folder. Registered on the `ddorch` app
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
    rerun_parts,
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


StudyAddressOption = typer.Option(
    None,
    "--address",
    help="Run the pending parts as Ray tasks on this cluster (HOST:PORT, auto or ray://...), several at once, "
    "each once the part it reads is done (default: one at a time in this process; $RAY_ADDRESS is not read). "
    "Wall times of parts run side by side are not comparable: a study's timed claims come from a run without it.",
)


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
        help="Start no part that would not finish in time; a longer trial runs the piece that fits (a "
        "distillation: until the budget ends), kept for the next run (default: no budget; not with --address).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print every part: done or pending, its estimate here and on a GPU; run nothing."
    ),
    rerun: bool = typer.Option(
        False,
        "--rerun",
        help="Run the parts again though done (with --only: those named; the parts they read only if not done); "
        "the report reads the last run.",
    ),
    address: str | None = StudyAddressOption,
    max_concurrent: int | None = typer.Option(
        None,
        "--max-concurrent",
        min=1,
        help="With --address: parts running at once (default: as many as the cluster's CPUs hold at --cpus-per-part).",
    ),
    cpus_per_part: float = typer.Option(
        1.0,
        "--cpus-per-part",
        min=0.01,
        help="With --address: CPUs Ray reserves per part (a GPU part also takes 1 GPU).",
    ),
    verbose: bool = options.VerboseOption,
    device: str = options.DeviceOption,
    tracking_uri: str | None = options.TrackingUriOption,
    folder: Path | None = StudyFolderOption,
) -> None:
    """Run a study's pending parts in dependency order (done parts, same settings, are reused).

    GPU parts (hardware = "gpu") are left out where there is no GPU (this machine's, or the cluster's
    with --address) unless --only names them. A failed part does not stop the others (exit code 1 at
    the end).

    Example: ddorch study run project-a --budget-hours 6 --dry-run
    """
    study = load_study(find_study(name))
    rows = select_parts(study, only)
    again = rerun_parts(study, only) if rerun else frozenset()
    bench = study_folder(study, folder)
    budget = 60 * budget_hours if budget_hours else None
    if dry_run:
        _dry_run(rows, bench, budget, on_gpu_only(rows, only, check_device(device)), again)
        return
    if address and budget:
        raise DDError(
            "--budget-hours is for a run on this machine (its estimates are this machine's): leave it out with --address"
        )
    # A `kill` unwinds like Ctrl-C, so a part's MLflow run ends FAILED instead of staying RUNNING.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # A study is not a timed benchmark: its parts start whatever the load.
    run_options = RunOptions(
        rerun=again, budget_minutes=budget, ignore_load=True, tracking_uri=tracking_uri, device=device, rerun_hint=False
    )
    if address:
        todo, appended, failed = _on_cluster(
            study, rows, only, bench, run_options, address, max_concurrent, cpus_per_part, verbose
        )
    else:
        on_gpu = on_gpu_only(rows, only, check_device(device))
        for row in on_gpu:
            typer.echo(f"skip {row.name}: a GPU part on a CPU (--only {row.name} runs it here)")
        todo = [row for row in rows if row not in on_gpu]
        failed = []
        appended = run_suite(todo, run_options, bench, failed=failed)
    done = len(todo) - len(pending(todo, load_results(bench.results)))
    typer.echo(f"{len(appended)} part(s) run now, {done} done in all of {len(todo)}; results in {bench.results}")
    if failed:  # exit 1 (2 is bad input), as `ddorch sweep` for failed trials: the study is incomplete
        typer.echo(f"error: part(s) {', '.join(failed)} failed; the other parts' results are recorded", err=True)
        raise typer.Exit(code=1)


def _on_cluster(study, rows, only, bench, run_options, address, max_concurrent, cpus_per_part, verbose):
    """The pending parts as Ray tasks (`orchestrator.engine.study_cluster`), every check before the first:
    (the parts to run, the lines appended, the parts that failed)."""
    from dataclasses import replace

    from orchestrator.engine.cluster import check_resources, check_shared_store, cluster_resources, connect
    from orchestrator.engine.study_cluster import ClusterRun, check_trials, max_parts, run_on_cluster
    from orchestrator.store.tracking import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(run_options.tracking_uri)
    check_reachable(uri)
    check_trials(rows, study.path)
    if not verbose:
        options.quiet_libraries()
    connect(address, verbose=verbose)
    available = cluster_resources(address)
    check_resources(cpus_per_part, 0, available, per="part")
    check_shared_store(uri, address)
    gpus = run_options.device != "cpu" and available.get("GPU", 0) >= 1
    if run_options.device == "cuda" and not gpus:
        raise DDError(f"--device cuda but the Ray cluster at {address} has no GPU")
    on_gpu = on_gpu_only(rows, only, gpus)
    for row in on_gpu:
        typer.echo(f"skip {row.name}: a GPU part and the Ray cluster has no GPU (--only {row.name} runs it on CPU)")
    todo = [row for row in rows if row not in on_gpu]
    cluster = ClusterRun(address, max_concurrent or max_parts(cpus_per_part, available), cpus_per_part, gpus)
    typer.echo(f"on the Ray cluster at {address}: up to {cluster.max_concurrent} part(s) at once")
    appended, failed = run_on_cluster(todo, replace(run_options, tracking_uri=uri), bench, cluster, typer.echo)
    return todo, appended, failed


def _dry_run(rows, bench, budget, on_gpu, again) -> None:
    lines = plan(rows, bench, budget, on_gpu, again)
    for line in lines:
        typer.echo(line.text())
    left_out = [line.row.name for line in lines if line.note.startswith("left out")]
    typer.echo(f"{len(lines)} parts; a run here would leave out: {', '.join(left_out) or 'none'}")


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
