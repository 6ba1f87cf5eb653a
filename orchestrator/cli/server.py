"""`ddorch server`: the MLflow tracking server every node of a cluster logs to, artefacts proxied through it."""

from __future__ import annotations

import typer

from orchestrator.views.tables import console


def server(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface, for other machines)."
    ),
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="Port to listen on."),
    backend_store: str = typer.Option(
        "mlflow-server/mlflow.db",
        "--backend-store-uri",
        help="Runs, params and metrics: a SQLite file here or a database URI (postgresql://...).",
    ),
    artifacts: str = typer.Option(
        "mlflow-server/artifacts",
        "--artifacts-destination",
        help="Artefacts and ddorch's shared caches: a folder here or an object-store URI (s3://...).",
    ),
    allowed_hosts: str | None = typer.Option(
        None,
        "--allowed-hosts",
        help="Host names clients may use to reach it, comma-separated (MLflow refuses others; default: MLflow's).",
    ),
) -> None:
    """Start an MLflow tracking server with proxied artefacts: the one store every node of a Ray cluster reaches.

    Example: ddorch server --host 0.0.0.0 --port 5000 --allowed-hosts head,head:5000
    """
    import os
    import socket
    import sys
    from pathlib import Path

    from orchestrator.store.tracking import server_command

    if "://" not in backend_store:
        Path(backend_store).resolve().parent.mkdir(parents=True, exist_ok=True)
    command = server_command(host, port, backend_store, artifacts, allowed_hosts)
    store, destination = (
        command[command.index(flag) + 1] for flag in ("--backend-store-uri", "--artifacts-destination")
    )
    reach = socket.gethostname() if host in ("0.0.0.0", "::") else host
    console.print(
        f"MLflow tracking server on {host}:{port} (store {store}, artefacts {destination}); "
        f"on every machine pass --tracking-uri http://{reach}:{port} (Ctrl-C stops it)",
        soft_wrap=True,
        markup=False,
    )
    # The server replaces this process: its pid is the one to stop, and Ctrl-C reaches it directly.
    os.execv(sys.executable, [sys.executable, "-m", *command])
