"""Kill a sweep's driver at several points, resume it each time: every trial of the plan ends once,
with the settings it ran with; finished trials stay; no duplicate, mixed or RUNNING runs."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ddcore.errors import DDError
from orchestrator.engine.sweep import SweepContext, _child_runs, _resumed_parent, _supersede
from orchestrator.store.run_schema import Status, Tag
from orchestrator.store.tracking import Tracker

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 3
# A continuous space: a trial Ray re-samples on restore gets other settings under the same trial id.
SPACE = '[lr_images]\\ntype = "loguniform"\\nlow = 0.1\\nhigh = 10.0\\n'
DRIVER = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from orchestrator.engine.cluster import connect
from orchestrator.engine.experiments import AshaSettings
from tests.test_sweep import sweep, tiny_preset
connect(None, num_cpus=1)  # as `ddorch sweep` does: the workers run this checkout's code
# Trials long enough (seconds) and never stopped by ASHA: a trial that ended within one poll would
# let the sweep pass the point `kill_when` waits for (it did on a fast CI machine).
preset = tiny_preset(
    num_samples={samples}, max_concurrent=1, report_every=20, asha=AshaSettings(grace_period=60),
    fixed={{"iterations": 60, "ipc": 2, "batch_real": 8, "model": "ConvNetD2"}},
)
sweep(Path({tmp!r}), preset, '{space}', "resumable", resume={resume})
"""


def start(tmp_path: Path, resume: bool) -> subprocess.Popen:
    code = DRIVER.format(repo=str(REPO), tmp=str(tmp_path), resume=resume, samples=SAMPLES, space=SPACE)
    with open(tmp_path / "driver.log", "a") as log:  # the child writes its own copy of the handle
        return subprocess.Popen(
            [sys.executable, "-c", code], cwd=tmp_path, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )


def current_children(client) -> list:
    """The sweep's child runs that belong to a trial (not superseded by a re-sampled one)."""
    experiment = client.get_experiment_by_name("ddorch")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if Tag.PARENT in r.data.tags and Tag.SUPERSEDED not in r.data.tags]


def kill_when(tmp_path: Path, driver: subprocess.Popen, done: int) -> None:
    """Kill the driver (and the Ray processes it started) once `done` trials ended and one is running."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:
        time.sleep(0.1)
        if not (tmp_path / "mlflow.db").exists():
            continue
        statuses = [r.info.status for r in current_children(client)]
        ended = sum(s != Status.RUNNING for s in statuses)
        if ended == done and Status.RUNNING in statuses:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
            return
    raise AssertionError(f"never saw {done} trials ended and one running: {(tmp_path / 'driver.log').read_text()}")


@pytest.mark.integration
def test_sweep_killed_at_several_points_ends_every_trial_once_with_its_settings(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    kill_when(tmp_path, start(tmp_path, resume=False), done=0)  # no trial ended yet
    kill_when(tmp_path, start(tmp_path, resume=True), done=1)  # one ended, one running
    first = next(r for r in current_children(client) if r.info.status != Status.RUNNING)
    kill_when(tmp_path, start(tmp_path, resume=True), done=SAMPLES - 1)  # all but one ended
    assert start(tmp_path, resume=True).wait(timeout=400) == 0, (tmp_path / "driver.log").read_text()

    experiment = client.get_experiment_by_name("ddorch").experiment_id
    parent = next(r for r in client.search_runs([experiment]) if Tag.SWEEP in r.data.tags)
    assert parent.info.status == Status.FINISHED
    with open(client.download_artifacts(parent.info.run_id, "results.csv", str(tmp_path))) as file:
        rows = list(csv.DictReader(file))
    children = {r.info.run_id: r for r in current_children(client)}
    assert len(rows) == SAMPLES and sorted(children) == sorted(row["child_run_id"] for row in rows)
    for row in rows:  # each trial of the plan: one run, ended, with the settings results.csv lists
        run = children[row["child_run_id"]]
        assert row["status"] in ("finished", "stopped early")
        assert run.info.status == Status.FINISHED  # ASHA's early stops too (tagged), KILLED is for interruptions
        assert (run.data.tags.get(Tag.STOPPED_EARLY) == "true") == (row["status"] == "stopped early")
        assert run.data.tags[Tag.TRIAL_ID] == row["trial_id"]
        assert float(run.data.params["method_config.lr_images"]) == float(row["param.lr_images"])
    everything = client.search_runs([parent.info.experiment_id], f"tags.`{Tag.PARENT}` = '{parent.info.run_id}'")
    assert all(r.info.status != Status.RUNNING for r in everything)
    assert client.get_run(first.info.run_id).info.end_time == first.info.end_time  # an ended trial is not rerun


def test_a_trial_id_reused_with_other_settings_gets_its_own_run(tmp_path):
    """What a restored sweep does when Ray re-samples a trial: the old run is superseded, not reused."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = Tracker.start(uri, run_name="sweep")
    context = SweepContext(uri, "ddorch", parent.run_id, str(tmp_path), None)
    old = Tracker.start(uri, tags={Tag.TRIAL_ID: "t1", Tag.TRIAL_KEY: "old"}, parent_run_id=parent.run_id)

    assert _child_runs(context, "t1", "old")[0].info.run_id == old.run_id  # same settings: its own run
    existing, stale = _child_runs(context, "t1", "new")
    assert existing is None and [r.info.run_id for r in stale] == [old.run_id]
    new = Tracker.start(uri, tags={Tag.TRIAL_ID: "t1", Tag.TRIAL_KEY: "new"}, parent_run_id=parent.run_id)
    _supersede(new, stale, "t1")

    again = parent.client.get_run(old.run_id)
    assert again.info.status == Status.KILLED and again.data.tags[Tag.SUPERSEDED] == new.run_id
    existing, stale = _child_runs(context, "t1", "new")
    assert existing.info.run_id == new.run_id and stale == []
    existing, stale = _child_runs(context, "t1", "old")  # re-sampled back: a superseded run is not revived
    assert existing is None and [r.info.run_id for r in stale] == [new.run_id]


def test_resuming_a_sweep_whose_parent_run_is_elsewhere_is_one_error(tmp_path):
    """Another store or experiment than the sweep's: its finished trials' runs would be out of reach."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracker.start(uri, run_name="not-a-sweep").finish()
    with pytest.raises(DDError, match="sweep 'gone' has no parent run in MLflow experiment 'ddorch'"):
        _resumed_parent("gone", uri, "ddorch")
    with pytest.raises(DDError, match="has no parent run in MLflow experiment 'other'"):
        _resumed_parent("gone", uri, "other")


def crashes_once(config: dict, flag: str) -> None:
    """A trainable for the restore test: trial x=2 fails the first time it runs."""
    from ray import tune

    if config["x"] == 2 and not Path(flag).exists():
        Path(flag).touch()
        raise RuntimeError("crash")
    tune.report({"eval_accuracy": config["x"] / 10, "iteration": 10})


@pytest.mark.integration
def test_tuner_restore_brings_back_the_live_view_with_the_trials_seen_before(workspace, capsys):
    """`Tuner.restore` takes no callbacks: the live view comes back from the run config Tune pickled
    and its checkpointed state (`ddorch sweep --resume` relies on both; a Ray upgrade may not)."""
    from ray import tune
    from rich.console import Console

    from orchestrator.engine.cluster import connect
    from orchestrator.views.live import LiveView, SweepProgress

    connect(None, num_cpus=1)
    fn = tune.with_parameters(crashes_once, flag=str(workspace / "crashed"))
    view = LiveView(SweepProgress("restore", total=2, iterations=10), Console(file=open(os.devnull, "w")))  # noqa: SIM115
    tune.Tuner(
        fn,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(metric="eval_accuracy", mode="max"),
        run_config=tune.RunConfig(name="restore", storage_path=str(workspace), verbose=0, callbacks=[view]),
    ).fit()
    assert [t.state.value for t in view.progress.trials.values()] == ["finished", "failed"]
    capsys.readouterr()
    tune.Tuner.restore(str(workspace / "restore"), trainable=fn, resume_errored=True).fit()
    drawn = " ".join(capsys.readouterr().out.split())  # off a terminal: printed at the end, on the CLI's console
    assert "Sweep restore: 0 running, 2 finished, 0 stopped early, 0 failed, 0 waiting of 2 trials" in drawn
    assert "best so far: 20.00 %" in drawn
