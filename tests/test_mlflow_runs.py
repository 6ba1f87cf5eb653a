"""Runs as a person reads them in MLflow: names, MLflow's own tags, stepped accuracy and images,
and trials stopped early on purpose ending FINISHED (KILLED is for interruptions)."""

import re

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ddcore.evaluate import EvalSpec
from orchestrator.cli import app
from orchestrator.engine.resolve import Layers, resolve_trial
from orchestrator.engine.trial import TrialConfig, TrialStopped, run_trial
from orchestrator.store.run_schema import EVAL_ACCURACY, GRID_IMAGE, Tag, run_name
from orchestrator.store.tracking import Tracker

RUN = ["run", "--dataset", "digits", "--ipc", "2", "--iterations", "4", "--eval-seeds", "1", "--eval-epochs", "2"]


def tiny_trial(iterations: int = 6) -> TrialConfig:
    flags = dict(iterations=iterations, batch_real=8, model="ConvNetD1", device="cpu", log_every=1)
    evaluation = EvalSpec(("ConvNetD1",), seeds=1, epochs=2)
    return resolve_trial("datadam", "digits", "paper", 1, evaluation, Layers(flags=flags), baseline=False)


def image_steps(client: MlflowClient, run_id: str) -> list[str]:
    """The stepped images MLflow stored for the grid key (its `images/` folder names carry the step)."""
    return [a.path for a in client.list_artifacts(run_id, "images") if GRID_IMAGE in a.path]


def test_run_names_say_what_the_run_is():
    assert run_name("mnist", "datadam", 10, {"lr_images": 1.0}) == "mnist-datadam-ipc10 lr_images=1.0"
    assert run_name("mhist", "pad", 50, {"ipc": 50, "mmd_weight": 0.012345, "batch_real": 64}) == (
        "mhist-pad-ipc50 mmd_weight=0.0123 batch_real=64"
    )
    assert run_name("digits", "random", 1) == "digits-random-ipc1"


def test_plain_run_has_mlflows_tags_a_description_stepped_accuracy_and_images(workspace, monkeypatch):
    args = [*RUN, "--set", "lr_images=0.5", "--no-baseline", "--device", "cpu"]
    monkeypatch.setattr("sys.argv", ["/usr/bin/ddorch", *args])  # as the console script sees it
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    assert run.info.run_name == "digits-datadam-ipc2 init=real lr_images=0.5"
    tags = run.data.tags
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", tags["mlflow.source.git.commit"])
    assert (
        tags["mlflow.source.name"].startswith("ddorch run --dataset digits")
        and tags["mlflow.source.type"] == "LOCAL"
        and tags["mlflow.user"]
    )
    note = tags["mlflow.note.content"]
    assert "datadam on digits, IPC 2" in note and "ddorch run --dataset digits" in note and "--iterations 4" in note
    history = client.get_metric_history(run.info.run_id, EVAL_ACCURACY)
    assert [m.step for m in history] == [4]  # the final set at the last iteration
    assert history[0].value == pytest.approx(run.data.metrics["acc_ConvNetD3_mean"])
    assert len(image_steps(client, run.info.run_id)) >= 1


def test_a_trial_stopped_on_purpose_is_finished_and_says_where(workspace):
    uri = f"sqlite:///{workspace / 'mlflow.db'}"

    def give_up(iteration, _synthetic, _accuracy):
        raise TrialStopped(f"hopeless at iteration {iteration}")

    tracker = Tracker.start(uri)
    with pytest.raises(TrialStopped):
        run_trial(tiny_trial(), tracker, progress=False, report_every=3, on_checkpoint=give_up)
    run = MlflowClient(uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[Tag.STOPPED_EARLY] == "true" and run.data.tags[Tag.STOPPED_AT] == "3"
    assert run.data.tags[Tag.STOPPED] == "hopeless at iteration 3"
    assert [m.step for m in MlflowClient(uri).get_metric_history(tracker.run_id, EVAL_ACCURACY)] == [3]
    assert len(image_steps(MlflowClient(uri), tracker.run_id)) >= 1  # the grid at iteration 3


def test_a_scheduler_stop_is_finished_and_an_outside_exit_before_any_evaluation_is_killed(workspace):
    uri = f"sqlite:///{workspace / 'mlflow.db'}"

    def asha(_iteration, _synthetic, _accuracy):
        raise SystemExit(0)  # how Ray Tune ends a trial that ASHA stopped, inside its report

    stopped = Tracker.start(uri)
    with pytest.raises(SystemExit):
        run_trial(tiny_trial(), stopped, progress=False, report_every=2, on_checkpoint=asha)
    run = MlflowClient(uri).get_run(stopped.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[Tag.STOPPED_AT] == "2"
    assert run.data.tags[Tag.STOPPED] == "stopped early by the scheduler"

    class Interrupted(TrialConfig):
        def protocol(self):
            raise SystemExit(0)  # an exit before the trial evaluated anything: an interruption

    interrupted = Tracker.start(uri)
    with pytest.raises(SystemExit):
        run_trial(Interrupted(**vars(tiny_trial())), interrupted, progress=False)
    run = MlflowClient(uri).get_run(interrupted.run_id)
    assert run.info.status == "KILLED" and Tag.STOPPED_EARLY not in run.data.tags
