"""A sweep across a 2-node Ray cluster started in-process: trials land on both nodes and in MLflow;
a local instance listens on the loopback address only."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from orchestrator.cluster import connect
from tests.test_sweep import sweep, tiny_preset

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
