"""`ddorch ui`: the MLflow UI over the store."""

from __future__ import annotations

import typer

from orchestrator.cli import options
from orchestrator.views.tables import console


def ui(
    tracking_uri: str | None = options.TrackingUriOption,
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="Port on 127.0.0.1."),
) -> None:
    """Start the MLflow web UI on 127.0.0.1 against ddorch's tracking store.

    Example: ddorch ui --port 5000
    """
    import subprocess
    import sys

    from orchestrator.store.tracking import resolve_tracking_uri, ui_address

    uri = resolve_tracking_uri(tracking_uri)
    console.print(f"MLflow UI for {uri} at {ui_address(uri, f'http://127.0.0.1:{port}')} (Ctrl-C stops it)")
    subprocess.run(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    )
