"""MLflow tracking: where every trial's params, metrics and artefacts go.

Embedded default: the local SQLite store MLflow 3 uses (`mlflow.db` in the working directory),
no server needed. `--tracking-uri` / `MLFLOW_TRACKING_URI` point elsewhere (e.g. a server).
Experiments are passed by id, never through `mlflow.set_experiment` (it sets an environment
variable that Ray's MLflow helpers read first).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddcore.errors import DDError
from orchestrator.store.run_schema import Status, Tag

DEFAULT_EXPERIMENT = "ddorch"
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
TRAINING_VIEW = "workflowType=machine_learning"  # MLflow UI's model-training view, asked for in the address


# Stores MLflow opens (sqlite/SQL databases, its server, Databricks); `postgresql+psycopg2` counts as postgresql.
STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """Flag > `MLFLOW_TRACKING_URI` > `sqlite:///<cwd>/mlflow.db` (absolute: Ray trials run elsewhere)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    scheme = uri.split("://")[0].split("+")[0] if "://" in uri else ""
    if scheme not in STORE_SCHEMES:
        raise DDError(f"tracking URI {uri!r} is not a store MLflow opens; use one of {', '.join(STORE_SCHEMES)}://...")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def is_local_store(uri: str) -> bool:
    """Whether the store is a file on this machine (SQLite, a `file:` or plain path): no other machine reaches it."""
    return "://" not in uri or uri.split("://")[0] in ("sqlite", "file")


def check_reachable(uri: str, timeout_s: float = 3.0) -> None:
    """Fail fast with one line on a server that does not answer (MLflow itself retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s)
    except Exception as error:  # URLError, timeouts, refused connections
        raise DDError(
            f"MLflow tracking server {uri} is unreachable ({error}); start it or pass another --tracking-uri"
        ) from None


def server_command(
    host: str, port: int, backend_store: str, artifacts: str, allowed_hosts: str | None = None
) -> list[str]:
    """`mlflow server` with proxied artefacts: clients upload and download through the server
    (`mlflow-artifacts:/` URIs), so no node needs the artefact store's path or credentials.
    `--artifacts-destination` takes a folder or an object-store URI (s3://, gs://, ...); it implies
    `--serve-artifacts` (MLflow's "Tracking server" guide, https://mlflow.org/docs/latest/self-hosting/).
    A plain folder or SQLite path is made absolute: the server runs wherever it was started."""
    store = backend_store if "://" in backend_store else f"sqlite:///{Path(backend_store).resolve()}"
    destination = artifacts if "://" in artifacts else str(Path(artifacts).resolve())
    command = ["mlflow", "server", "--host", host, "--port", str(port), "--backend-store-uri", store]
    command += ["--artifacts-destination", destination, "--serve-artifacts"]
    return command + (["--allowed-hosts", allowed_hosts] if allowed_hosts else [])


COMMIT_ENV = "DDORCH_GIT_COMMIT"  # the commit of a copy without .git (the GPU suite's bundle sets it)


def git_commit(short: bool = True) -> str:
    """This checkout's commit (the full hash is what MLflow's `mlflow.source.git.commit` holds); in a
    copy without git, `DDORCH_GIT_COMMIT`'s."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", *(["--short"] if short else []), "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ""
    given = os.environ.get(COMMIT_ENV, "")
    return found or (given[:7] if short else given) or "unknown"


VERSIONED_PACKAGES = ("torch", "torchvision", "numpy", "mlflow", "ray", "fvcore")


def command_line() -> str:
    """The command that is running, as MLflow's `mlflow.source.name` (`ddorch sweep mnist_datadam ...`)."""
    import shlex
    import sys

    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return "unknown"


def package_versions() -> str:
    """`python 3.11.2, torch 2.14.1, ...`: recorded on every run so a report can say what produced it."""
    import platform
    from importlib import metadata

    found = [f"python {platform.python_version()}"]
    for name in VERSIONED_PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def flatten(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """Nested config dicts to MLflow's flat `a.b` parameter names."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flatten(name, value))
        else:
            flat[name] = value
    return flat


@functools.cache
def open_store(uri: str) -> None:
    """Create a new SQLite store under a lock (once per process).

    MLflow creates the tables of an empty database on first use without a lock: several
    processes starting together on a new store would each create them, and all but one fail
    ("table ... already exists"). The lock is on the database's folder: no extra file.
    """
    import fcntl

    from mlflow.tracking import MlflowClient

    if not uri.startswith("sqlite:///"):
        return
    folder = Path(uri.removeprefix("sqlite:///")).parent
    folder.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    lock = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(uri).search_experiments(max_results=1)  # MLflow's store (cached per process) creates the tables
    finally:
        os.close(lock)  # releases the lock


def ui_address(uri: str, server: str, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """The page of MLflow's UI at `server` to open first: the experiment's runs in the model-training view.
    MLflow 3.17's UI shows every experiment in its GenAI view unless the address asks for this one (the
    experiment's `mlflow.experimentKind` tag does not decide it); links inside the UI keep the choice."""
    from mlflow.tracking import MlflowClient

    found = MlflowClient(uri).get_experiment_by_name(experiment)
    page = f"experiments/{found.experiment_id}" if found else "experiments"
    return f"{server}/#/{page}?{TRAINING_VIEW}"


def ensure_experiment(client, name: str) -> str:
    """The experiment's id, created if new (tagged so MLflow 3's UI opens its model-training view, not GenAI's)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    try:
        return client.create_experiment(name, tags=EXPERIMENT_TAGS)
    except MlflowException:  # another process created it in between
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@dataclass
class Tracker:
    """One MLflow run: params, stepped metrics, artefacts, final status."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    @classmethod
    def start(
        cls,
        tracking_uri: str | None = None,
        experiment: str = DEFAULT_EXPERIMENT,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        source: str | None = None,
        description: str | None = None,
    ) -> Tracker:
        """A new run; `source`: the command that records it (default: this process's); `description`:
        MLflow's run description (what the run is, how to reproduce it)."""
        from mlflow.tracking import MlflowClient

        uri = resolve_tracking_uri(tracking_uri)
        check_reachable(uri)
        open_store(uri)
        client = MlflowClient(uri)
        experiment_id = ensure_experiment(client, experiment)
        all_tags = {**provenance_tags(source), **(tags or {})}
        if parent_run_id:
            all_tags[Tag.PARENT] = parent_run_id
        if description:
            all_tags[Tag.NOTE] = description
        run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        return cls(uri, experiment_id, run.info.run_id)

    @property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in logged_params(params).items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_image(self, path: str | Path, key: str, step: int) -> None:
        """An image as a step of `key`: MLflow's UI shows the steps one after the other."""
        from PIL import Image

        with Image.open(path) as image:
            self.client.log_image(self.run_id, image.convert("RGB"), key=key, step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def finish(self, failure: str | None = None, stopped: str | None = None, stopped_at: int | None = None) -> None:
        """FINISHED; FAILED with the reason; stopped early on purpose at iteration `stopped_at` (a result:
        FINISHED, tagged so); or KILLED when stopped without one (interrupted). What was logged stays."""
        status, tags = final_status(failure, stopped, stopped_at)
        self.set_tags(tags)
        self.client.set_terminated(self.run_id, status=status)


def provenance_tags(source: str | None = None) -> dict[str, str]:
    """Where a run came from, as MLflow's UI shows it: commit, command (`source`: default this process's),
    user, package versions. Both trackers record them."""
    return {
        Tag.GIT_COMMIT: git_commit(short=False),
        Tag.SOURCE_NAME: source or command_line(),
        Tag.SOURCE_TYPE: "LOCAL",
        Tag.USER: user_name(),
        Tag.VERSIONS: package_versions(),
    }


def logged_params(params: dict[str, Any]) -> dict[str, str]:
    """Params as MLflow keeps them: flat names, string values cut to its 6,000-character limit."""
    return {k: str(v)[:6000] for k, v in flatten("", params).items()}


def final_status(failure: str | None, stopped: str | None, stopped_at: int | None) -> tuple[str, dict[str, str]]:
    """A run's final status and the tags that say why (see `Tracker.finish`)."""
    tags = {}
    if failure:
        tags[Tag.FAILURE] = failure[:5000]
    if stopped:
        tags[Tag.STOPPED] = stopped
    if stopped_at is not None:
        tags.update({Tag.STOPPED_EARLY: "true", Tag.STOPPED_AT: str(stopped_at)})
    interrupted = stopped and stopped_at is None
    return (Status.FAILED if failure else Status.KILLED if interrupted else Status.FINISHED), tags


@dataclass
class FolderTracker:
    """`Tracker`'s interface written to a folder, for machines without MLflow (the GPU suite's device
    carries no MLflow: its wheels and their needs are about 35 MB of a call's 64 MiB). A run is
    `meta.json` (id, name, status, times, as MLflow's file store keeps them), `params.json`,
    `tags.json`, `metrics.jsonl` (key, value, step, timestamp), `artifacts/` and `images/<key>/<step>.png`."""

    folder: Path
    run_id: str

    @classmethod
    def start(cls, root: str | Path, run_name: str, tags: dict[str, str] | None = None) -> FolderTracker:
        run_id = uuid.uuid4().hex
        tracker = cls(Path(root) / f"{run_name}-{run_id[:8]}", run_id)
        tracker.folder.mkdir(parents=True)
        now = int(time.time() * 1000)
        tracker._update(
            "meta.json", {"run_id": run_id, "run_name": run_name, "status": Status.RUNNING, "start_time": now}
        )
        tracker.set_tags({**provenance_tags(), **(tags or {})})
        return tracker

    def _update(self, name: str, values: dict) -> None:
        path = self.folder / name
        path.write_text(json.dumps({**(json.loads(path.read_text()) if path.exists() else {}), **values}, indent=1))

    def log_params(self, params: dict[str, Any]) -> None:
        self._update("params.json", logged_params(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        with (self.folder / "metrics.jsonl").open("a") as handle:
            for key, value in metrics.items():
                handle.write(
                    json.dumps({"key": key, "value": float(value), "step": step or 0, "timestamp": now}) + "\n"
                )

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        target = self.folder / "artifacts" / (folder or "")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)

    def log_image(self, path: str | Path, key: str, step: int) -> None:
        target = self.folder / "images" / key
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / f"{step}.png")

    def set_tags(self, tags: dict[str, str]) -> None:
        self._update("tags.json", {k: str(v) for k, v in tags.items()})

    def finish(self, failure: str | None = None, stopped: str | None = None, stopped_at: int | None = None) -> None:
        status, tags = final_status(failure, stopped, stopped_at)
        self.set_tags(tags)
        self._update("meta.json", {"status": status, "end_time": int(time.time() * 1000)})
