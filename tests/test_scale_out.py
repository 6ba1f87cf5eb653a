"""The README's "Scale out" recipe on a real multi-process cluster whose nodes share nothing but the network.

`ray start --head` on 127.0.0.1 and a second `ray start` whose processes run in their own mount namespace
(`unshare -m`, tmpfs over the driver's working folder and ~/.cache: that node sees none of the driver's
files, as a second machine), Ray's token authentication on, and `ddorch server` (MLflow with proxied
artefacts) on 127.0.0.1. The driver is the `ddorch` command line. Skipped with the reason where
`unshare` is not allowed (it needs root or user namespaces). Every process the fixture starts is stopped
by its id. Tiny sizes: digits, a few iterations and epochs, two trials.
"""

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.test_cluster import descendants, processes_naming
from tests.test_server import free_port, healthy

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))

TINY_DATADAM = """
dataset = "digits"
method = "datadam"
space = "tiny_space.toml"
num_samples = 2
max_concurrent = 2
cpus_per_trial = 1
eval_models = ["ConvNetD1"]
eval_seeds = 1
eval_epochs = 2
report_every = 4

[fixed]
iterations = 8
ipc = 1
batch_real = 8
model = "ConvNetD1"

[asha]
grace_period = 8
reduction_factor = 2
"""

# Long enough to kill a node mid-trial: an evaluation and a checkpoint every 10 iterations, no early stop.
TINY_LONG = TINY_DATADAM.replace("iterations = 8", "iterations = 120").replace("report_every = 4", "report_every = 10")
TINY_LONG = TINY_LONG.replace("grace_period = 8", "grace_period = 120")

TINY_SPACE = """
[lr_images]
type = "choice"
values = [0.5, 1.0]
"""

# The experts' settings on both sides (`ddorch experts` flags, the preset's fixed values) make one cache key.
EXPERTS = {"model": "ConvNetD1", "num_experts": 2, "trajectory_epochs": 2}

TINY_PAD = f"""
dataset = "digits"
method = "pad"
space = "tiny_space.toml"
num_samples = 2
max_concurrent = 2
cpus_per_trial = 1
eval_models = ["ConvNetD1"]
eval_seeds = 1
eval_epochs = 2
report_every = 2

[fixed]
iterations = 2
ipc = 1
syn_steps = 2
expert_epochs = 1
max_start_epoch = 1
current_max_start_epoch = 1
model = "{EXPERTS["model"]}"
num_experts = {EXPERTS["num_experts"]}
trajectory_epochs = {EXPERTS["trajectory_epochs"]}

[asha]
grace_period = 2
reduction_factor = 2
"""


def _stop(pids: set[int], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`, to each pid (and whatever it started), by id."""
    pids = set().union(*(descendants(pid) for pid in pids)) if pids else set()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_server(command: list[str], folder: Path, env: dict[str, str]) -> subprocess.Popen:
    """`ddorch server` in a session of its own (its pid is the group of its workers too)."""
    with open(folder / "server.log", "a") as log:
        return subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not healthy(url) and time.monotonic() < deadline and server.poll() is None:
        time.sleep(0.5)
    if not healthy(url):
        pytest.fail(f"ddorch server did not answer: {log.read_text()[-500:]}")


def _unshare_allowed() -> str | None:
    """Why a private mount namespace with a tmpfs cannot be made here, or None."""
    if not shutil.which("unshare"):
        return "unshare is not installed"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else f"unshare -m with a tmpfs mount is not allowed: {probe.stderr.strip()}"


class ScaleOut:
    """The cluster, the server and the driver's environment; `ddorch(...)` runs the command line as a driver."""

    def __init__(self, work: Path, shared: Path, env: dict[str, str], address: str, tracking_uri: str) -> None:
        self.work, self.shared, self.env, self.address, self.tracking_uri = work, shared, env, address, tracking_uri

    def ddorch(self, *args: str, timeout: int = 420, env: dict[str, str] | None = None):
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            cwd=self.work,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def restart_server(self, down_s: float = 3.0) -> None:
        """Stop the tracking server (by its pid), leave it down `down_s`, start it again on the same store."""
        _stop({self.server.pid})
        self.server.wait(timeout=30)
        time.sleep(down_s)
        self.server = _start_server(self.server_command, self.shared, self.env)
        self.started.add(self.server.pid)
        _wait_healthy(self.tracking_uri, self.server, self.shared / "server.log")

    def kill_second_node(self) -> int:
        """SIGKILL the processes of the node in its own mount namespace (its Ray processes, named by the
        cluster's temp folder, and their workers), as a machine dies; how many."""
        ours = os.readlink("/proc/self/ns/mnt")
        theirs = set()
        for pid in processes_naming(self.marker):
            try:
                if os.readlink(f"/proc/{pid}/ns/mnt") != ours:
                    theirs |= descendants(pid)
            except OSError:
                continue
        for pid in theirs:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(theirs)


@pytest.fixture(scope="module")
def scale_out():
    reason = _unshare_allowed()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="ddso-"))  # short: Ray's socket paths under it must fit in 107 bytes
    work, shared, home_cache = root / "driver", root / "shared", Path.home() / ".cache"
    for folder in (work, shared / "presets" / "experiments", shared / "presets" / "tune_spaces", root / "ray"):
        folder.mkdir(parents=True)
    (shared / "presets" / "experiments" / "tiny_datadam.toml").write_text(TINY_DATADAM)
    (shared / "presets" / "experiments" / "tiny_pad.toml").write_text(TINY_PAD)
    (shared / "presets" / "experiments" / "tiny_long.toml").write_text(TINY_LONG)
    (shared / "presets" / "tune_spaces" / "tiny_space.toml").write_text(TINY_SPACE)
    port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",  # the README's recipe: the same two on every node and the driver
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_TMPDIR": str(root),  # never this machine's own /tmp/ray
        "PYTHONPATH": str(REPO),  # every node runs this checkout, as cluster nodes run their installed copy
        "DDORCH_PRESETS": str(shared / "presets"),
        "DDORCH_CACHE_DIR": str(work / "cache"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "COLUMNS": "200",
    }
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    started: set[int] = set()
    cluster = None
    try:
        server_command = [sys.executable, "-m", "orchestrator.cli", "server", "--port", str(mlflow_port)]
        server_command += ["--backend-store-uri", str(shared / "mlflow" / "mlflow.db")]
        server_command += ["--artifacts-destination", str(shared / "mlflow" / "artifacts")]
        server = _start_server(server_command, shared, env)
        started.add(server.pid)
        head = [RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1"]
        head += ["--temp-dir", str(root / "ray"), "--num-cpus", "1", "--include-dashboard", "false"]
        subprocess.run(head + ["--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
        hidden = f"mount -t tmpfs tmpfs {work} && mount -t tmpfs tmpfs {home_cache}"
        worker = f"{RAY} start --address 127.0.0.1:{port} --num-cpus 1 --disable-usage-stats"
        subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{hidden} && {worker}"],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        started |= set(processes_naming(str(root / "ray")))
        url = f"http://127.0.0.1:{mlflow_port}"
        _wait_healthy(url, server, shared / "server.log")
        cluster = ScaleOut(work, shared, env, f"127.0.0.1:{port}", url)
        cluster.server, cluster.server_command, cluster.started = server, server_command, started
        cluster.marker = str(root / "ray")
        yield cluster
    finally:
        if cluster is not None:
            started.add(cluster.server.pid)  # the latest server, if restarted
        started |= set(processes_naming(str(root / "ray")))  # workers the nodes started since
        _stop(started)
        assert not processes_naming(str(root / "ray"))
        shutil.rmtree(root, ignore_errors=True)


def child_runs(client: MlflowClient, parent_id: str) -> list:
    experiment = client.get_experiment_by_name("ddorch")
    return client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")


def parent_of(output: str) -> str:
    return re.search(r"MLflow parent run (\w+)", output).group(1)


def test_a_digits_sweep_runs_trials_on_both_nodes_and_logs_through_the_server(scale_out):
    done = scale_out.ddorch(
        "sweep", "tiny_datadam", "--address", scale_out.address, "--tracking-uri", scale_out.tracking_uri,
        "--storage-path", str(scale_out.shared / "ray_results"), "--device", "cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    runs = child_runs(scale_out.client, parent_of(done.stdout))
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["ddorch.node_id"] for r in runs}) == 2  # one trial on each node
    for run in runs:  # the artefacts reached the server, whichever node made them
        assert {a.path for a in scale_out.client.list_artifacts(run.info.run_id)} >= {"summary.json", "grids"}
    # cross-arch of a trial the other node ran: its files exist only in the server
    remote = [r for r in runs if not (scale_out.work / "runs" / r.info.run_id).exists()]
    assert remote, "no trial ran on the node without the driver's files"
    analysed = scale_out.ddorch(
        "cross-arch", remote[0].info.run_id, "--tracking-uri", scale_out.tracking_uri,
        "--eval-models", "MLP", "--eval-seeds", "1", "--epochs", "1", "--device", "cpu",
    )  # fmt: skip
    assert analysed.returncode == 0, analysed.stderr[-3000:]


def test_experts_trained_once_serve_a_pad_sweep_on_both_nodes(scale_out):
    experts = scale_out.ddorch(
        "experts", "--dataset", "digits", "--selection", "val", "--model", EXPERTS["model"], "--num-experts", str(EXPERTS["num_experts"]),
        "--epochs", str(EXPERTS["trajectory_epochs"]), "--address", scale_out.address,
        "--tracking-uri", scale_out.tracking_uri, "--device", "cpu",
    )  # fmt: skip
    assert experts.returncode == 0, experts.stderr[-3000:]
    assert "2 trained now (as Ray tasks)" in experts.stdout
    done = scale_out.ddorch(
        "sweep", "tiny_pad", "--address", scale_out.address, "--tracking-uri", scale_out.tracking_uri,
        "--storage-path", str(scale_out.shared / "ray_results"), "--device", "cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    runs = child_runs(scale_out.client, parent_of(done.stdout))
    assert len(runs) == 2 and len({r.data.tags["ddorch.node_id"] for r in runs}) == 2
    assert [r.data.metrics["experts_trained_now"] for r in runs] == [0, 0]


def lossless(scale_out, *args: str):
    return scale_out.ddorch(
        "lossless", "--method", "random,datadam", "--max-ipc", "1", "--iterations", "2", "--eval-epochs", "2",
        "--eval-seeds", "1", "--model", "ConvNetD1", "--target-accuracy", "99", "--address", scale_out.address,
        "--tracking-uri", scale_out.tracking_uri, "--device", "cpu", *args,
    )  # fmt: skip


def lossless_children(scale_out, output: str) -> list:
    return child_runs(scale_out.client, re.search(r"parent run (\w+)", output).group(1))


def test_a_lossless_search_runs_trials_on_both_nodes(scale_out):
    done = lossless(scale_out, "--dataset", "digits")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = lossless_children(scale_out, done.stdout)
    assert len(runs) == 2 and len({r.data.tags["ddorch.node_id"] for r in runs}) == 2


def test_a_data_set_missing_on_a_node_names_the_node_the_path_and_the_fix(scale_out):
    from tests.test_data import write_idx_release

    data = scale_out.work / "data"  # the driver's folder: the other node does not have it
    write_idx_release(data / "MNIST" / "raw", n_train=200)
    done = lossless(
        scale_out, "--dataset", "mnist", "--data-root", str(data), "--selection", "test"
    )  # 200 images: no val part
    assert done.returncode == 1, done.stderr[-3000:]  # a failed trial: the search is incomplete
    failures = [r.data.tags.get("ddorch.failure", "") for r in lossless_children(scale_out, done.stdout)]
    failed = [f for f in failures if f]
    assert len(failed) == 1, failures
    assert re.match(r"on node \S+ \(\d+\.\d+\.\d+\.\d+\): MNIST not found: ", failed[0]), failed[0]
    assert f"{data}/MNIST/raw" in failed[0] and "--download" in failed[0] and "--data-root" in failed[0]


def test_a_sqlite_store_on_a_cluster_of_two_nodes_is_refused_before_any_run(scale_out):
    done = scale_out.ddorch("sweep", "tiny_datadam", "--address", scale_out.address, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: the Ray cluster has 2 nodes but the tracking store sqlite:///"), line
    assert "`ddorch server`" in line and "--tracking-uri http://" in line
    assert not (scale_out.work / "mlflow.db").exists()


@pytest.mark.parametrize(
    "auth", [{"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_TOKEN": "0" * 64}], ids=["no-mode", "wrong"]
)
def test_a_cluster_that_refuses_the_token_is_one_line_naming_what_to_set(scale_out, auth):
    started = time.monotonic()
    done = scale_out.ddorch("sweep", "tiny_datadam", "--address", scale_out.address, env=auth, timeout=120)
    assert time.monotonic() - started < 60  # a guard against a hang; one stderr line shows ray.init never retried
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: the Ray cluster at {scale_out.address} (from --address) refused this driver's")
    assert "RAY_AUTH_MODE=token" in line and "RAY_AUTH_TOKEN" in line


def test_a_sweep_survives_a_dead_node_and_a_server_restart(scale_out):
    """Last: the second node is gone afterwards. Its trial is retried on the head from its last checkpoint
    (Tune's `max_failures`) in its own MLflow run; trials' logging rides out the server's restart (MLflow's
    client retries)."""
    head = subprocess.run(
        [sys.executable, "-c", f"import ray; ray.init(address={scale_out.address!r}, log_to_driver=False); "
         "print(next(n['NodeID'] for n in ray.nodes() if 'node:__internal_head__' in n['Resources']))"],
        env=scale_out.env, capture_output=True, text=True, timeout=120,
    ).stdout.split()[-1]  # fmt: skip
    sweep = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "sweep", "tiny_long", "--address", scale_out.address,
         "--tracking-uri", scale_out.tracking_uri, "--storage-path", str(scale_out.shared / "ray_results"),
         "--device", "cpu", "--name", "faults"],
        cwd=scale_out.work, env=scale_out.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        remote = _wait_for_checkpoint(scale_out, head, sweep)
        scale_out.restart_server()
        assert scale_out.kill_second_node() > 0
        out, err = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, err[-3000:]
    runs = child_runs(scale_out.client, parent_of(out))
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)  # every trial once, none superseded
    retried = next(r for r in runs if r.info.run_id == remote)
    assert retried.data.tags["ddorch.node_id"] == head  # it ended on the head
    for run in runs:  # no evaluation lost: every 10th iteration's, through the restart and the retry
        steps = {m.step for m in scale_out.client.get_metric_history(run.info.run_id, "eval_accuracy")}
        assert steps >= set(range(10, 121, 10)), sorted(steps)


def _wait_for_checkpoint(scale_out, head: str, sweep: subprocess.Popen, timeout_s: float = 300) -> str:
    """The run of the trial on the second node, once it has checkpointed (reported an evaluation)."""
    experiment = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sweep.poll() is None:
        experiment = experiment or scale_out.client.get_experiment_by_name("ddorch")
        query = "tags.`ddorch.sweep` = 'faults'"
        parents = experiment and scale_out.client.search_runs([experiment.experiment_id], query)
        for run in child_runs(scale_out.client, parents[0].info.run_id) if parents else []:
            on_other = run.data.tags.get("ddorch.node_id", head) != head
            if on_other and len(scale_out.client.get_metric_history(run.info.run_id, "eval_accuracy")) >= 2:
                return run.info.run_id
        time.sleep(1)
    pytest.fail(f"no trial checkpointed on the second node: {sweep.stderr.read()[-2000:] if sweep.poll() else ''}")
