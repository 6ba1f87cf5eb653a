"""`ddorch report`: one HTML and Markdown report over runs and sweeps."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli import options
from orchestrator.views.tables import console


def report(
    ids: list[str] = typer.Argument(..., help="Run ids (or unique prefixes), sweep parent run ids or sweep names."),
    output_dir: Path = typer.Option(
        Path("report"),
        "--output-dir",
        callback=options._writable_folder,
        help="Folder for report.html (self-contained), report.md and images/.",
    ),
    title: str | None = typer.Option(None, "--title", help="The report's title (default: the ids it covers)."),
    tracking_uri: str | None = options.TrackingUriOption,
    experiment: str = options.ExperimentOption,
) -> None:
    """Write an HTML and a Markdown report over runs and sweeps: tables, grids, curves, analyses, commands.

    Example: ddorch report 1a2b3c4d digits_datadam --title "DataDAM on digits" --output-dir report
    """
    from orchestrator.views.report import build_report

    written = build_report(ids, output_dir, tracking_uri, experiment, title)
    console.print(f"report: {written.html_path} and {written.markdown_path} ({len(written.sections)} sections)")
