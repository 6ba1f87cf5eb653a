"""`ddorch compare`: runs side by side, with their grids."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli import options
from orchestrator.views import tables
from orchestrator.views.tables import console


def compare(
    run_ids: list[str] = typer.Argument(..., help="Two or more MLflow run ids or unique prefixes (`ddorch runs`)."),
    tracking_uri: str | None = options.TrackingUriOption,
    output_dir: Path = typer.Option(
        Path("."),
        "--output-dir",
        callback=options._writable_folder,
        help="Folder for compare.png, the runs' grids side by side.",
    ),
) -> None:
    """Show runs side by side: settings, accuracy per architecture, time, and one combined grid image.

    Example: ddorch compare 1a2b3c4d 5e6f7a8b --output-dir .
    """
    from orchestrator.views.compare import compare_runs

    table_rows, columns, image = compare_runs(run_ids, tracking_uri, output_dir / "compare.png")
    rows = ([label, *values] for label, values in table_rows)
    tables.show(tables.table("Runs side by side", ("", *columns), rows, first_left=True))
    console.print(f"grids side by side: {image}")
