"""The `ddorch` command line: a thin layer over the engine and the views, one module per command group.

This module only builds the app and registers the commands (as `transformers/commands/` and
`mlflow/cli/__init__.py` do); nothing below the CLI imports it (import-linter's layers contract in
pyproject.toml). Bad input never shows a traceback: library code raises `DDError` with one line,
which every command prints as `error: ...` before exiting with status 2 (`options.friendly_errors`, applied
to each command where it is registered, with the option groups: `options.as_command`).
"""

from __future__ import annotations

import typer

from orchestrator.cli import (
    analyses,
    baseline,
    bench,
    catalog,
    compare,
    experts,
    lossless,
    presets,
    report,
    results,
    run,
    server,
    study,
    sweep,
    ui,
)
from orchestrator.cli.options import as_command
from orchestrator.store.flags import canonical

app = typer.Typer(
    help="ddorch: distil, evaluate, sweep and report dataset-distillation experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"token_normalize_func": canonical},  # old flag spellings (orchestrator.store.flags)
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"ddorch {version('ddorch')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version."),
) -> None:
    """ddorch: distil, evaluate, sweep and report dataset-distillation experiments."""


# In `ddorch --help`'s order; typer names each command after its function (underscores as dashes).
COMMANDS = (
    baseline.baseline,
    run.run,
    compare.compare,
    ui.ui,
    server.server,
    presets.experiments,
    presets.show,
    sweep.sweep,
    results.results,
    results.runs,
    catalog.models,
    catalog.datasets,
    catalog.env,
    experts.experts,
    lossless.lossless,
    analyses.cross_arch,
    analyses.continual,
    analyses.nas_proxy,
    report.report,
)
for command in COMMANDS:
    app.command()(as_command(command))
app.add_typer(bench.bench_app, name="bench")
app.add_typer(study.study_app, name="study")


def main() -> None:
    app()
