"""A sweep across a 2-node Ray cluster started in-process: trials land on both nodes and in MLflow."""

import ray
from ray.cluster_utils import Cluster

from tests.test_sweep import sweep, tiny_preset


def test_sweep_spreads_over_two_nodes(tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
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
