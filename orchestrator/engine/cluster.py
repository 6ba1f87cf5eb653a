"""Ray in one place: joining or starting a cluster, resource checks, the code path workers import,
and one task pool for everything that fans out (PAD's experts, the lossless search's trials).

Ray Tune sweeps (`orchestrator.engine.sweep`) schedule their own trials but connect through here too.
`ddcore` never imports Ray: it takes a `parallel_map` function, which `TaskPool.map_unordered` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ddcore.errors import DDError


def cluster_resources(address: str | None = None) -> dict[str, float]:
    """CPUs and GPUs trials can use: the Ray cluster's (joined at `address`, or already connected),
    else this machine's, without starting Ray (a dry run)."""
    import os

    import ray

    if requested_address(address)[0]:
        connect(address)
    if ray.is_initialized():
        return dict(ray.cluster_resources())
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def preset_resources(
    preset_cpus: float,
    preset_gpus: float,
    flag_cpus: float | None,
    flag_gpus: float | None,
    available: dict[str, float],
) -> tuple[float, float, str | None]:
    """CPUs and GPUs per trial, and one line saying so when a preset's request was fitted to the cluster.

    A preset's request applies where the cluster has it; on a CPU-only (or smaller) cluster its
    trials run on CPU with the CPUs there, so the same command runs anywhere. A flag is kept as
    given, and `check_resources` refuses it if the cluster cannot hold it: the user asked for it.
    """
    cpus, gpus, changed = preset_cpus, preset_gpus, []
    has_gpus, has_cpus = available.get("GPU", 0), available.get("CPU", 0)
    if flag_gpus is not None:
        gpus = flag_gpus
    elif preset_gpus > has_gpus:
        gpus = 0.0
        changed.append(f"{preset_gpus:g} GPU")
    if flag_cpus is not None:
        cpus = flag_cpus
    elif preset_cpus > has_cpus > 0:
        cpus = has_cpus
        changed.append(f"{preset_cpus:g} CPUs")
    if not changed:
        return cpus, gpus, None
    where = "on CPU" if gpus == 0 else "on GPU"
    return (
        cpus,
        gpus,
        (
            f"the Ray cluster has {has_gpus:g} GPUs and {has_cpus:g} CPUs: trials run {where} with {cpus:g} CPUs each "
            f"(the preset asks for {' and '.join(changed)} per trial; --gpus-per-trial / --cpus-per-trial insist)"
        ),
    )


def check_resources(
    cpus_per_trial: float, gpus_per_trial: float, available: dict[str, float] | None = None, per: str = "trial"
) -> None:
    """Before submitting: a GPU request on a cluster without GPUs would pend forever.
    `available`: the resources to check against (default: the connected cluster's); `per`: what the
    flags are per (`--cpus-per-trial`, `--cpus-per-part`)."""
    if available is None:
        import ray

        available = ray.cluster_resources()
    if gpus_per_trial > 0 and available.get("GPU", 0) < gpus_per_trial:
        raise DDError(f"--gpus-per-{per} {gpus_per_trial:g} but the Ray cluster has {available.get('GPU', 0):g} GPUs")
    if available.get("CPU", 0) < cpus_per_trial:
        raise DDError(f"--cpus-per-{per} {cpus_per_trial:g} but the Ray cluster has {available.get('CPU', 0):g} CPUs")


def quiet_ray() -> None:
    """Silence what Ray prints on its own: our live view and tables report a sweep."""
    import os

    # Tune's newer console output prints its configuration box and a TensorBoard hint even at verbose=0.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"


def requested_address(address: str | None) -> tuple[str | None, str]:
    """The Ray cluster a command joins and where that came from: `--address`, else `$RAY_ADDRESS`
    (as `ray.init` reads it), else (None, ""): a local instance of its own.

    Never Ray's record of the last `ray start` here (`ray_current_cluster` in Ray's temp folder),
    which `ray.init()` without an address joins: when that cluster is gone Ray retries it for
    minutes, and when it is alive a "local" command would run on it.
    """
    import os

    if address:
        return address, "--address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    return None, ""


def check_address(address: str | None) -> str | None:
    """The cluster to join (`auto` resolved), or None for a local instance. A cluster that does not
    answer is one line naming its address and where that came from, before anything is started or logged."""
    address, source = requested_address(address)
    if not address or address.startswith("ray://"):
        return address
    if address == "auto":
        address, source = _auto_address(source)
    _check_port(address, source)
    _check_token(address, source)
    return address


AUTH_FIX = (
    "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token; "
    "`ray get-auth-token` prints it on the head) here and on every node"
)


def _check_token(address: str, source: str):
    """A cluster that refuses this driver's token is one line naming what to set, in a second; else a
    client of its GCS (for `node_count`).

    Ray 2.60's `ray start --head` turns token authentication on; every other node and every driver
    joining it by address needs `RAY_AUTH_MODE=token` and the same token (`RAY_AUTH_TOKEN`, a file at
    `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`): https://docs.ray.io/en/latest/ray-security/token-auth.html.
    `ray.init` retries a refused token for 20 s, printing Ray's warning every second; one GCS client
    (`ray._raylet.GcsClient`, which asks the cluster's id on creation) raises `AuthenticationError` at once.
    """
    import os

    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        with _native_stderr_silenced():  # the C++ client's own warning line
            return GcsClient(address=address)
    except AuthenticationError:
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        raise DDError(
            f"the Ray cluster at {address} (from {source}) refused this driver's token (RAY_AUTH_MODE is {mode}): "
            f"{AUTH_FIX}"
        ) from None


def node_count(address: str | None) -> int:
    """Live nodes of the cluster this command runs on: the connected one's, else the one at `address`
    (asked without joining it), else 1 (a local instance). A Ray Client address (ray://) counts as 1
    until connected."""
    import ray

    if ray.is_initialized():
        return sum(1 for node in ray.nodes() if node["Alive"])
    address, source = requested_address(address)
    if not address or address.startswith("ray://"):
        return 1
    if address == "auto":
        address, source = _auto_address(source)
    alive = 0  # GcsNodeInfo.GcsNodeState.ALIVE (src/ray/protobuf/gcs.proto)
    return sum(
        1 for info in _check_token(address, source).get_all_node_info(timeout=10).values() if info.state == alive
    )


def check_shared_store(tracking_uri: str, address: str | None) -> None:
    """Refuse, before any run is created, a store on this machine's disk for a cluster of several nodes:
    trials on the other nodes cannot open it (they fail inside Ray with no reason given)."""
    from orchestrator.store.tracking import is_local_store

    if not is_local_store(tracking_uri):
        return
    nodes = node_count(address)
    if nodes > 1:
        raise DDError(
            f"the Ray cluster has {nodes} nodes but the tracking store {tracking_uri} is a file on this machine, "
            "out of the other nodes' reach: start a tracking server (`ddorch server`, or `mlflow server "
            "--artifacts-destination ...`) and pass --tracking-uri http://HOST:PORT"
        )


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null inside the block: Ray's C++ code writes there, past Python's sys.stderr."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _worker_system_config() -> dict[str, int]:
    """A local instance's workers at this process's own priority, not Ray's nice 15.

    Ray nices workers "so that the OS prioritizes CPU for other processes over worker" (Ray's
    src/ray/common/ray_config_def.h, `worker_niceness`, valid 0..19, posix only; `_system_config` is
    how `ray.init` sets such values, as Ray's object-spilling guide does). A local instance's workers
    are this command's own trials, which `ddorch run` runs at the caller's priority; at 15 any other
    busy process starves them (measured: a `digits_datadam` trial got 20 % of a core on 2 busy cores).
    """
    import os

    if not hasattr(os, "nice"):
        return {}
    return {"worker_niceness": min(19, max(0, os.nice(0)))}


def connect(address: str | None, num_cpus: int | None = None, verbose: bool = False) -> None:
    """Join a running cluster (`requested_address`) or start a local Ray instance sized to this machine;
    `verbose` shows the workers' output and Ray's own log lines here (else only its errors: the
    token-auth notice, "Started a local Ray instance" and Tune's warnings are not ours to show).

    A local instance listens on 127.0.0.1 only: anyone who reaches a Ray port can run code on it.
    """
    import logging

    import ray

    if ray.is_initialized():
        return
    address = check_address(address)  # `auto` joins what was checked, not what Ray would pick again
    level = logging.INFO if verbose else logging.ERROR
    try:
        if address:
            ray.init(address=address, log_to_driver=verbose, logging_level=level)
        else:
            with _loopback_only():
                ray.init(
                    address="local",  # a new instance, whatever `ray_current_cluster` names
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    log_to_driver=verbose,
                    logging_level=level,
                    runtime_env={"env_vars": {"PYTHONPATH": _driver_code_path()}},
                    _node_ip_address="127.0.0.1",
                    _system_config=_worker_system_config(),
                )
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise DDError(
            f"cannot connect to the Ray cluster at {address or 'local'}: {str(error).splitlines()[0]}"
        ) from None


def _auto_address(source: str) -> tuple[str, str]:
    """The cluster `auto` means, in the order Ray documents, and where it was found.

    Ray 2.60 (`ray._private.services.get_ray_address_from_environment`'s docstring): `$RAY_ADDRESS`,
    else the address in `<temp>/ray/ray_current_cluster` (written by `ray start --head`, removed by
    `ray stop`; <temp> is `$RAY_TMPDIR`, else `$TMPDIR`, else /tmp:
    `ray._common.utils.get_default_system_temp_dir`), else a GCS process running on this machine. Its
    code prefers a lone running GCS to the record (any other Ray of this machine, a test's or another
    user's, would win over the cluster `ray start` named): the record comes first here.
    """
    import os

    from ray._common.utils import get_ray_address_file
    from ray._private import services

    if os.environ.get("RAY_ADDRESS", "auto") != "auto":
        return os.environ["RAY_ADDRESS"], f"{source} auto, RAY_ADDRESS"
    recorded = services.find_bootstrap_address(None)
    if recorded:
        return recorded, f"{source} auto, {get_ray_address_file(None)}"
    running = services.find_gcs_addresses()
    if not running:
        raise DDError(
            f"{source} auto: no Ray cluster runs on this machine; start one with `ray start --head` "
            f"or {_local_instead(source)}"
        )
    return next(iter(running)), f"{source} auto, a Ray process running here"


def _local_instead(source: str) -> str:
    """How to get a local instance instead of the cluster `source` named."""
    return f"{'unset RAY_ADDRESS' if source.startswith('RAY_ADDRESS') else 'leave out --address'} for a local instance"


@contextmanager
def _loopback_only() -> Iterator[None]:
    """Keep `_node_ip_address="127.0.0.1"`, the address Ray's servers bind to.

    Ray 2.60 replaces a loopback node address with the machine's own (then its servers listen on
    every interface) unless it runs as a non-cluster machine, its mode on macOS and Windows
    (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`, read once at import): switched on for `ray.init` only,
    so a later `--address` connection in this process still finds the machine's address.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _driver_code_path() -> str:
    """PYTHONPATH for local workers: the folder this driver imports ddorch from, first.

    Workers otherwise see only the driver's working directory and the installed package, so a
    checkout run with `python -m` (another branch, a worktree) would run its trials on the
    installed copy's code. Clusters (`--address`) run the code installed on their nodes.
    """
    import os

    import ddcore

    here = str(Path(ddcore.__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)


def _check_port(address: str, source: str, timeout_s: float = 3.0) -> None:
    """Ray retries an unreachable head for minutes: test its GCS port first, fail in one line."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as error:
        raise DDError(
            f"cannot reach the Ray cluster at {address} (from {source}: {error}); start it with `ray start --head` "
            f"or {_local_instead(source)}"
        ) from None


def on_node() -> str:
    """`on node HOST (IP): ` inside a Ray worker, to start a message with the machine it comes from; else ''."""
    import socket

    import ray

    if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return ""
    return f"on node {socket.gethostname()} ({ray.util.get_node_ip_address()}): "


def node_id() -> str | None:
    """The Ray node this runs on (None outside Ray): a trial's run records it."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _located(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a task; a one-line error says which node it comes from."""
    try:
        return function(*args)
    except DDError as error:
        raise DDError(f"{on_node()}{error}") from None


class TaskFailed(Exception):
    """A task that failed for another reason than bad input: its tag and the reason in one line."""

    def __init__(self, tag: Any, reason: str) -> None:
        super().__init__(reason)
        self.tag, self.reason = tag, reason


class TaskPool:
    """Runs functions as Ray tasks with fixed resources; results are collected as they complete.

    A task that raises a `DDError` re-raises it here as one line; any other failure (a killed
    worker, an unexpected exception) as `TaskFailed`, which names the task's tag and the reason.
    """

    def __init__(self, cpus: float = 1, gpus: float = 0, max_retries: int = 1) -> None:
        import ray

        if not ray.is_initialized():
            raise DDError("a task pool needs a Ray instance: call orchestrator.engine.cluster.connect first")
        self._ray = ray
        self._options = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": max_retries}
        self._remote = None  # `_located` as a Ray remote function, made on the first submit
        self._running: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._running)

    def submit(self, function: Callable[..., Any], tag: Any, *args: Any, gpus: float | None = None) -> None:
        """Start `function(*args)` as a task; `tag` comes back with its result. `gpus`: this task's
        GPUs instead of the pool's."""
        if self._remote is None:
            self._remote = self._ray.remote(_located)
        options = self._options if gpus is None else {**self._options, "num_gpus": gpus}
        self._running[self._remote.options(**options).remote(function, *args)] = tag

    def wait_one(self) -> tuple[Any, Any]:
        """(tag, result) of the next task to finish; raises `DDError` or `TaskFailed` for a failed one."""
        tag, result, error = self.wait_settled()
        if error is not None:
            raise error
        return tag, result

    def wait_settled(self) -> tuple[Any, Any, Exception | None]:
        """(tag, result, None) of the next task to finish, or (tag, None, error) for a failed one: a
        `DDError` (its one line) or `TaskFailed`; the other tasks go on."""
        (ready,), _ = self._ray.wait(list(self._running), num_returns=1)
        tag = self._running.pop(ready)
        try:
            return tag, self._ray.get(ready), None
        except self._ray.exceptions.RayError as error:
            cause = error.as_instanceof_cause() if isinstance(error, self._ray.exceptions.RayTaskError) else error
            if isinstance(cause, DDError):
                return tag, None, DDError(str(cause).splitlines()[-1])
            # the exception's own last line, without Ray's header
            failed = TaskFailed(tag, [line for line in str(error).splitlines() if line.strip()][-1])
            failed.__cause__ = error
            return tag, None, failed

    def interrupt(self, timeout_s: float = 30) -> None:
        """Interrupt the running tasks and give them `timeout_s` to record it: `ray.cancel` (force=False)
        raises a KeyboardInterrupt in a running task, as Ctrl-C does in a process, so their MLflow runs end
        FAILED, not RUNNING (https://docs.ray.io/en/latest/ray-core/api/doc/ray.cancel.html)."""
        tasks = list(self._running)
        for task in tasks:
            self._ray.cancel(task)
        if tasks:
            self._ray.wait(tasks, num_returns=len(tasks), timeout=timeout_s)
        self._running.clear()

    def map_unordered(self, function: Callable[..., Any], arguments: Iterable[tuple]) -> Iterator[Any]:
        """`function(*args)` for every tuple, results in completion order (what ddcore calls `parallel_map`)."""
        for args in arguments:
            self.submit(function, None, *args)
        while self._running:
            yield self.wait_one()[1]
