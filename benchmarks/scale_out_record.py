"""Issue 35's measurement as a results.jsonl line: read from the MLflow server the sweeps that
`benchmarks/scale_out_digits.sh` ran (parents `one-node`, `two-nodes`, `pad-two-nodes`) and append
what they measured: the two wall times and their ratio, each trial's node and seconds, and for the
PAD sweep, per trial, the experts it trained (`experts_trained_now`) and the seconds it spent before
distilling (`prepare_seconds`: fetching the experts from the shared cache when none are trained).

    python benchmarks/scale_out_record.py --tracking-uri http://127.0.0.1:5000 \
        --one-node-seconds S1 --two-nodes-seconds S2 --load-start L0 --load-end L1

The sh script calls it while its server is still up; `ddorch bench table` shows the line in
RESULTS.md's "scale out" table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ddcore.hardware import machine  # noqa: E402
from orchestrator.engine.bench import BenchFolder, append  # noqa: E402
from orchestrator.store.run_schema import Tag  # noqa: E402
from orchestrator.store.tracking import git_commit  # noqa: E402
from orchestrator.views.bench_tables import SCALE_OUT  # noqa: E402

EXPERIMENT = "ddorch"  # where `ddorch sweep` logs


def trials(client, experiment_id: str, sweep: str) -> list[dict]:
    """The child runs of the newest parent run named `sweep`: node, seconds and PAD's expert figures."""
    parent = client.search_runs(
        [experiment_id], f"tags.`mlflow.runName` = '{sweep}'", order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    out = []
    for run in sorted(children, key=lambda r: r.info.start_time):
        metrics = run.data.metrics
        out.append(
            {
                "node": run.data.tags.get(Tag.NODE_ID, "")[:8],
                "seconds": (run.info.end_time - run.info.start_time) / 1000,
                **{k: metrics[k] for k in ("experts_trained_now", "prepare_seconds") if k in metrics},
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--one-node-seconds", type=float, required=True)
    parser.add_argument("--two-nodes-seconds", type=float, required=True)
    parser.add_argument("--load-start", type=float, required=True)
    parser.add_argument("--load-end", type=float, required=True)
    args = parser.parse_args()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(args.tracking_uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    one, two, pad = (trials(client, experiment_id, name) for name in ("one-node", "two-nodes", "pad-two-nodes"))
    head = {t["node"] for t in one}
    line = {
        "name": "scale_out_digits_sweep",
        "kind": SCALE_OUT,
        "key": "scale_out_digits_sweep",
        "group": "scale out",
        "sweep": "digits_datadam --seed 0 --max-concurrent 2",
        "commit": git_commit(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "one_node_seconds": args.one_node_seconds,
        "two_nodes_seconds": args.two_nodes_seconds,
        "ratio": args.one_node_seconds / args.two_nodes_seconds,
        "one_node_trials": one,
        "two_nodes_trials": two,
        "pad_trials": pad,
        "second_node_trials": sum(t["node"] not in head for t in two),
        "pad_second_node_prepare_seconds": [t.get("prepare_seconds") for t in pad if t["node"] not in head],
        "pad_second_node_experts_trained": int(
            sum(t.get("experts_trained_now", 0) for t in pad if t["node"] not in head)
        ),
        "load_start": args.load_start,
        "load_end": args.load_end,
    }
    append(line, BenchFolder(ROOT / "benchmarks").results)
    print(
        f"1 node {args.one_node_seconds:.1f} s, 2 nodes {args.two_nodes_seconds:.1f} s: {line['ratio']:.2f}x; "
        f"{line['second_node_trials']} of {len(two)} trials on the second node; PAD trials there trained "
        f"{line['pad_second_node_experts_trained']} experts (seconds before distilling: {line['pad_second_node_prepare_seconds']})"
    )


if __name__ == "__main__":
    main()
