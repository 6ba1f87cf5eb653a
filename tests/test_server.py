"""`ddorch run` against a real MLflow tracking server (HTTP, proxied artefacts), read back with MlflowClient."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/health", timeout=1).status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free local port with its own store; skipped if it does not answer within 30 s."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    quiet = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes: starts faster
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=quiet)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + START_TIMEOUT_S
    while not healthy(url) and time.time() < deadline and server.poll() is None:
        time.sleep(0.5)
    try:
        if not healthy(url):
            pytest.skip(
                f"mlflow server did not start within {START_TIMEOUT_S} s: {(folder / 'server.log').read_text()[-500:]}"
            )
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers
        server.wait(timeout=30)


def test_run_logs_params_metrics_and_artefacts_to_a_tracking_server(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", "--dataset", "digits", "--iterations", "2", "--ipc", "1", "--model", "ConvNetD1"]
    args += [
        "--eval-models",
        "ConvNetD1",
        "--eval-epochs",
        "1",
        "--eval-seeds",
        "1",
        "--no-baseline",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(
        app,
        [*args, "--tracking-uri", mlflow_server, "--output-dir", str(tmp_path / "runs")],
        env={"COLUMNS": "200", "DDORCH_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.exit_code == 0, result.output

    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["method_config.iterations"] == "2" and "acc_ConvNetD1_mean" in run.data.metrics
    summary = json.loads(open(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path))).read())
    assert summary["run_id"] == run.info.run_id
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
