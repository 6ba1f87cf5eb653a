"""Ray + MLflow overhead of a sweep, against the same trials run one after another like `ddorch run`.

Both sides run the same trial function on the same configs (a grid over lr_images on digits), one
trial at a time with all CPUs, and log to MLflow; the sweep adds Ray's start-up, scheduling,
checkpoint/result plumbing and the parent run. Intermediate ASHA evaluations are switched off
(report_every > iterations) so that both sides do the same work.

    python benchmarks/sweep_overhead.py [--iterations 300] [--trials 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddcore.evaluate import EvalSpec  # noqa: E402
from orchestrator.engine.cluster import connect  # noqa: E402
from orchestrator.engine.experiments import AshaSettings, Distribution, ExperimentPreset, SearchSpace  # noqa: E402
from orchestrator.engine.sweep import SweepContext, SweepSettings, build_trial, record_in_parent, run_sweep, summarize  # noqa: E402
from orchestrator.engine.trial import run_trial  # noqa: E402
from orchestrator.store.tracking import Tracker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="sweep overhead vs sequential runs")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    import os

    cpus = os.cpu_count() or 1
    values = tuple(round(0.5 * 2**k, 3) for k in range(args.trials))
    preset = ExperimentPreset(
        name="overhead",
        dataset="digits",
        method="datadam",
        space="inline",
        num_samples=1,
        max_concurrent=1,
        cpus_per_trial=cpus,
        eval=EvalSpec(("ConvNetD3",), seeds=2, epochs=300),
        report_every=args.iterations + 1,
        fixed={"iterations": args.iterations, "ipc": 10},
        asha=AshaSettings(grace_period=args.iterations, reduction_factor=2),
    )
    space = SearchSpace("inline", (Distribution("lr_images", "grid", values=values),))
    work = Path(tempfile.mkdtemp(prefix="ddorch-overhead-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"

    started = time.perf_counter()
    context = SweepContext(uri, "sequential", "", str(work / "runs"), None, "cpu")
    for value in values:
        tracker = Tracker.start(uri, "sequential", run_name=f"lr_images={value}")
        run_trial(build_trial(preset, {"lr_images": value}, context), tracker, progress=False, output_dir=work / "runs")
    sequential = time.perf_counter() - started

    started = time.perf_counter()
    connect(None)
    settings = SweepSettings("overhead", 1, 1, cpus, 0, str(work / "ray"))
    results, parent, iterations = run_sweep(
        preset,
        space,
        settings,
        {
            "tracking_uri": uri,
            "experiment": "sweep",
            "output_dir": str(work / "runs"),
            "data_root": None,
            "device": "cpu",
        },
    )
    record_in_parent(parent, summarize(results, iterations), space, work / "runs")
    swept = time.perf_counter() - started

    print(f"{len(values)} trials of {args.iterations} DataDAM iterations on digits, {cpus} CPUs, one trial at a time")
    print(f"sequential run_trial + MLflow: {sequential:.1f} s")
    print(f"ddorch sweep (Ray Tune + MLflow parent/children, incl. ray.init): {swept:.1f} s")
    print(f"overhead: {100 * (swept / sequential - 1):+.1f} % (goal < 5 %)")


if __name__ == "__main__":
    main()
