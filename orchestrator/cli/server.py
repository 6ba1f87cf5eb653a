"""`ddorch server`: the MLflow tracking server every node of a cluster logs to, artefacts proxied through it."""

from __future__ import annotations

from orchestrator.cli import options
from orchestrator.views.tables import console

# Where the server listens and keeps what it is sent (flags.toml's [server]).
ServerSettings = options.group("server")


def server(settings: ServerSettings = ServerSettings()) -> None:
    """Start an MLflow tracking server with proxied artefacts: the one store every node of a Ray cluster reaches.

    Example: ddorch server --host 0.0.0.0 --port 5000 --allowed-hosts head,head:5000
    """
    import os
    import socket
    import sys
    from pathlib import Path

    from orchestrator.store.tracking import server_command

    host, port = settings.host, settings.port
    if "://" not in settings.backend_store:
        Path(settings.backend_store).resolve().parent.mkdir(parents=True, exist_ok=True)
    command = server_command(host, port, settings.backend_store, settings.artifacts, settings.allowed_hosts)
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
