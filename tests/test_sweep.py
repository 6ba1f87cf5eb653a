"""Ray Tune sweeps on a local Ray instance: parent/child MLflow runs, ASHA, failures, resources."""

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ddcore.errors import DDError
from ddcore.evaluate import EvalSpec
from orchestrator.engine.cluster import check_resources, connect
from orchestrator.engine.experiments import AshaSettings, ExperimentPreset, load_space
from orchestrator.engine.sweep import SweepSettings, record_in_parent, run_sweep, summarize


@pytest.fixture(scope="module")
def ray_session():
    import ray

    connect(None, num_cpus=2)  # as `ddorch sweep` does: the trials run this checkout's code
    yield
    ray.shutdown()


def tiny_preset(precision: str = "fp32", **changes) -> ExperimentPreset:
    values = dict(
        name="tiny",
        dataset="digits",
        method="datadam",
        space="unused",
        num_samples=3,
        max_concurrent=2,
        cpus_per_trial=1,
        eval=EvalSpec(("ConvNetD2",), seeds=1, epochs=2, precision=precision),
        report_every=5,
        fixed={"iterations": 10, "ipc": 2, "batch_real": 8, "model": "ConvNetD2"},
        asha=AshaSettings(grace_period=5, reduction_factor=2),
    )
    values.update(changes)
    return ExperimentPreset(**values)


def sweep(tmp_path: Path, preset: ExperimentPreset, space_text: str, name: str, resume: bool = False):
    (tmp_path / "space.toml").write_text(space_text)
    space = load_space(tmp_path / "space.toml", "datadam")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = SweepSettings(
        name=name,
        num_samples=preset.num_samples,
        max_concurrent=preset.max_concurrent,
        cpus_per_trial=1,
        gpus_per_trial=0,
        storage_path=str(tmp_path / "ray"),
        max_failures=1,
    )
    context = {
        "tracking_uri": uri,
        "experiment": "ddorch",
        "output_dir": str(tmp_path / "runs"),
        "data_root": None,
        "device": "cpu",
    }
    results, parent, iterations = run_sweep(preset, space, settings, context, resume=resume)
    rows = summarize(results, iterations, preset.selection)
    record_in_parent(parent, rows, space, tmp_path / "runs")
    return MlflowClient(uri), parent, rows


def children(client, parent):
    experiment = client.get_experiment_by_name("ddorch")
    return client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.run_id}'")


@pytest.mark.slow
def test_tiny_sweep_logs_parent_and_one_child_per_trial(ray_session, tmp_path):
    client, parent, rows = sweep(
        tmp_path, tiny_preset(), '[lr_images]\ntype = "choice"\nvalues = [0.5, 1.0, 2.0]\n', "tiny"
    )
    assert len(rows) == 3 and all(r.status in ("finished", "stopped early") for r in rows)
    runs = children(client, parent)
    assert len(runs) == 3 and {r.info.run_id for r in runs} == {r.child_run_id for r in rows}
    # ASHA's stops are results: FINISHED, tagged with the iteration reached (as the results table says)
    assert all(r.info.status == "FINISHED" for r in runs)
    by_run = {r.child_run_id: r for r in rows}
    for run in runs:  # stopped trials too keep their latest synthetic set and grids
        assert {"synthetic.pt", "grids"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        assert re.fullmatch(r"digits-datadam-ipc2 lr_images=(0\.5|1\.0|2\.0)", run.info.run_name)
        row = by_run[run.info.run_id]
        if row.status == "stopped early":
            assert run.data.tags["ddorch.stopped_early"] == "true"
            assert run.data.tags["ddorch.stopped_at_iteration"] == str(row.iteration)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval_accuracy")]
        assert steps == list(range(5, row.iteration + 1, 5))  # every report, and the final set's at 10
        assert run.data.tags["mlflow.note.content"].count("ddorch run --dataset digits") == 1
    parent_run = client.get_run(parent.run_id)
    assert parent_run.info.status == "FINISHED" and "best_val_eval_accuracy" in parent_run.data.metrics
    names = {a.path for a in client.list_artifacts(parent.run_id)}
    assert {"results.csv", "plots", "best_trial"} <= names


@pytest.mark.slow
def test_failing_trial_is_retried_then_failed_and_others_finish(ray_session, tmp_path):
    # lr_images 1e30 makes the loss infinite: that trial raises, is retried once, then gives up.
    client, parent, rows = sweep(
        tmp_path, tiny_preset(num_samples=1), '[lr_images]\ntype = "grid"\nvalues = [1.0, 1e30]\n', "failing"
    )
    statuses = sorted(r.status for r in rows)
    assert statuses == ["failed", "finished"]
    runs = children(client, parent)
    assert len(runs) == 2  # the retry reused the failed trial's child run
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and "became" in failed[0].data.tags["ddorch.failure"]


def test_local_workers_run_at_the_callers_priority(ray_session):
    import os

    import ray

    @ray.remote
    def niceness():
        return os.nice(0)

    assert ray.get(niceness.remote()) == os.nice(0)  # Ray's own default is nice 15


def test_gpu_request_without_gpu_is_refused_before_submitting(ray_session):
    with pytest.raises(DDError, match="--gpus-per-trial 1 but the Ray cluster has 0 GPUs"):
        check_resources(1, 1)


def test_children_left_running_take_rays_outcome(tmp_path):
    from orchestrator.engine.sweep import TrialRow, close_children, failures
    from orchestrator.store.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = Tracker.start(uri, "ddorch", run_name="sweep")
    failed, stopped, finished = (Tracker.start(uri, "ddorch", parent_run_id=parent.run_id) for _ in range(3))
    finished.finish()
    rows = [
        TrialRow("a", {}, None, 3, "failed", failed.run_id, error="ValueError: boom"),
        TrialRow("b", {}, 0.5, 5, "stopped early", stopped.run_id),
        TrialRow("c", {}, 0.9, 10, "finished", finished.run_id),
    ]
    close_children(parent, rows)
    client = MlflowClient(uri)
    assert client.get_run(failed.run_id).info.status == "FAILED"
    assert client.get_run(failed.run_id).data.tags["ddorch.failure"] == "ValueError: boom"
    assert client.get_run(stopped.run_id).info.status == "FINISHED"  # ASHA stopped it: a result
    assert client.get_run(stopped.run_id).data.tags["ddorch.stopped_at_iteration"] == "5"
    assert client.get_run(finished.run_id).info.status == "FINISHED"
    assert failures(rows) == "1 of 3 trials failed (first: ValueError: boom)"
    assert failures(rows[1:]) is None
