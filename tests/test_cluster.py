"""A sweep across a 2-node Ray cluster started in-process: trials land on both nodes and in MLflow;
a local instance listens on the loopback address only and is local whatever Ray's record of the last
`ray start` says; `--address auto` naming a cluster that is gone fails in one line."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from orchestrator.engine.cluster import connect
from tests.test_server import free_port
from tests.test_sweep import sweep, tiny_preset

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def test_sweep_spreads_over_two_nodes(tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        # Its workers import this checkout, as cluster nodes import their installed copy.
        ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        client, parent, rows = sweep(
            tmp_path, tiny_preset(num_samples=2), '[lr_images]\ntype = "choice"\nvalues = [1.0]\n', "two-nodes"
        )
        runs = client.search_runs(
            [client.get_experiment_by_name("ddorch").experiment_id], f"tags.`mlflow.parentRunId` = '{parent.run_id}'"
        )
        assert len(runs) == 2 and all(r.info.status in ("FINISHED", "KILLED") for r in runs)
        nodes = {r.data.tags["ddorch.node_id"] for r in runs}
        assert nodes == {node.node_id for node in cluster.list_all_nodes()}
    finally:
        ray.shutdown()
        cluster.shutdown()


def descendants(root: int) -> set[int]:
    """`root` and every process started under it (Ray's GCS, raylet, agents, workers)."""
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parents[int(pid)] = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, grown = {root}, True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grown = bool(more)
    return found


def listening_addresses(pids: set[int]) -> list[str]:
    """The local addresses of the TCP sockets these processes listen on (from `ss -ltne`)."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    lines = subprocess.run(["ss", "-ltne"], capture_output=True, text=True, check=True).stdout.splitlines()[1:]
    return [line.split()[3] for line in lines if (m := re.search(r"ino:(\d+)", line)) and m.group(1) in inodes]


@pytest.mark.skipif(not shutil.which("ss") or not os.path.isdir("/proc"), reason="needs Linux /proc and ss")
def test_a_local_instance_listens_on_the_loopback_address_only(workspace):
    if ray.is_initialized():
        ray.shutdown()
    connect(None, num_cpus=1)
    ray.get(ray.remote(lambda: None).remote())  # a worker too
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    addresses = listening_addresses(descendants(os.getpid()))
    assert addresses and all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in addresses), addresses


def processes_naming(marker: str) -> dict[int, str]:
    """pid -> command line of the live processes whose command line contains `marker`."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in command and state != "Z":
            found[int(pid)] = command
    return found


def stop_processes(marker: str, grace_s: float = 3.0) -> None:
    """Stop, by pid, the processes whose command line names `marker`: SIGTERM, then SIGKILL after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_naming(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while processes_naming(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not processes_naming(marker)


@pytest.fixture
def ray_temp(monkeypatch):
    """Ray's temp folder (`<temp>/ray`, where `ray start` records its cluster in `ray_current_cluster`)
    moved to a fresh one, so the machine's own /tmp/ray is never read or written: Ray takes <temp>
    from $RAY_TMPDIR at every look-up (`ray._common.utils.get_default_system_temp_dir`, Ray 2.60).
    Short, since Ray's socket paths under it must fit in 107 bytes. Every Ray process that names it
    (Ray's command lines name their temp folder) is stopped afterwards."""
    if ray.is_initialized():
        ray.shutdown()
    root = Path(tempfile.mkdtemp(prefix="ddray-"))
    monkeypatch.setenv("RAY_TMPDIR", str(root))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (root / "ray").mkdir()
    yield root / "ray"
    ray.shutdown()
    stop_processes(str(root))
    shutil.rmtree(root, ignore_errors=True)


def one_trial_sweep(tmp_path: Path, name: str):
    return sweep(tmp_path, tiny_preset(num_samples=1), '[lr_images]\ntype = "choice"\nvalues = [1.0]\n', name)


def test_a_stale_cluster_record_does_not_hold_up_a_local_sweep(ray_temp, tmp_path):
    from ray._private import services

    stale = f"127.0.0.1:{free_port()}"  # a cluster gone without `ray stop`: nothing listens there
    (ray_temp / "ray_current_cluster").write_text(stale)
    assert services.find_bootstrap_address(None) == stale  # what `ray.init()` without an address would join
    connect(None, num_cpus=2)
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    assert not ray.get_runtime_context().gcs_address.endswith(stale.rsplit(":")[1])
    _, _, rows = one_trial_sweep(tmp_path, "stale-record")
    assert len(rows) == 1 and rows[0].status == "finished"


@pytest.mark.parametrize("another_ray", [False, True], ids=["alone", "beside-another-ray"])
def test_address_auto_naming_a_cluster_that_is_gone_is_one_line_in_seconds(ray_temp, tmp_path, another_ray):
    stale = f"127.0.0.1:{free_port()}"
    record = ray_temp / "ray_current_cluster"
    record.write_text(stale)
    if another_ray:  # a live Ray of this machine (here, the test's own) must not be joined in the record's place
        connect(None, num_cpus=1)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "sweep", "digits_datadam", "--address", "auto"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started  # the interpreter's start and imports included
    assert done.returncode == 2 and done.stdout == "", done.stdout
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the Ray cluster at {stale} (from --address auto, {record}: "), line
    assert elapsed < 15, elapsed
    assert not (tmp_path / "mlflow.db").exists()


def test_a_local_sweep_does_not_join_the_cluster_this_machine_runs(ray_temp, tmp_path):
    port = free_port()
    subprocess.run(
        [Path(sys.executable).with_name("ray"), "start", "--head", "--port", str(port), "--temp-dir", str(ray_temp)]
        + ["--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats"],
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},  # no token written to ~/.ray
        check=True,
        capture_output=True,
        timeout=120,
    )
    recorded = (ray_temp / "ray_current_cluster").read_text().strip()
    assert recorded.endswith(f":{port}")  # `ray.init()` without an address would join it
    (cluster_node,) = {
        m.group(1) for c in processes_naming(str(ray_temp)).values() for m in [re.search(r"--node_id=(\w+)", c)] if m
    }
    connect(None, num_cpus=2)
    assert not ray.get_runtime_context().gcs_address.endswith(f":{port}")
    local_nodes = {node["NodeID"] for node in ray.nodes()}
    assert cluster_node not in local_nodes
    client, parent, rows = one_trial_sweep(tmp_path, "beside-a-cluster")
    assert len(rows) == 1 and rows[0].status == "finished"
    (run,) = client.search_runs(
        [client.get_experiment_by_name("ddorch").experiment_id], f"tags.`mlflow.parentRunId` = '{parent.run_id}'"
    )
    assert run.data.tags["ddorch.node_id"] in local_nodes
