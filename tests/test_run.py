"""`ddorch run`: a digits trial lands in MLflow with every artefact; bad input is one line."""

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.store.run_schema import Tag

runner = CliRunner()
QUICK = [
    "--dataset",
    "digits",
    "--preset",
    "paper",
    "--ipc",
    "2",
    "--iterations",
    "4",
    "--eval-seeds",
    "1",
    "--eval-epochs",
    "3",
    "--device",
    "cpu",
]


def invoke(args):
    return runner.invoke(app, args, env={"COLUMNS": "200"})


def summary(workspace, run_id):
    return json.loads((workspace / "runs" / run_id / "summary.json").read_text())


def only_run(workspace):
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ddorch")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def artefact_paths(client, run_id, folder=None):
    paths = []
    for entry in client.list_artifacts(run_id, folder):
        paths += artefact_paths(client, run_id, entry.path) if entry.is_dir else [entry.path]
    return paths


@pytest.mark.slow
def test_run_on_digits_logs_everything(workspace):
    result = invoke(["run", *QUICK, "--eval-models", "ConvNetD3,MLP"])
    assert result.exit_code == 0, result.output
    assert "MLflow run" in result.output
    client, run = only_run(workspace)
    assert run.info.status == "FINISHED"
    assert run.data.params["method_config.ipc"] == "2" and run.data.params["dataset"] == "digits"
    assert run.data.tags["ddorch.method"] == "datadam"
    assert run.data.tags[Tag.SETTINGS_FROM] == "device: flags, ipc: flags, iterations: flags"
    assert len(client.get_metric_history(run.info.run_id, "loss")) >= 1
    for name in ("acc_ConvNetD3_mean", "acc_MLP_std", "baseline_acc_ConvNetD3", "distill_seconds", "flops_MLP"):
        assert name in run.data.metrics
    assert 0 <= run.data.metrics["acc_ConvNetD3_mean"] <= 1
    paths = artefact_paths(client, run.info.run_id)
    for expected in (
        "synthetic.pt",
        "summary.json",
        "loss_curve.png",
        "grids/grid_all_classes.png",
        "grids/grid_class_0_0.png",
    ):
        assert expected in paths


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "magic"], "unknown method 'magic'; known methods: datadam"),
        (["--model", "Nope"], "unknown model 'Nope'"),
        (["--eval-models", "Nope"], "unknown model 'Nope'"),
        (["--preset", "weird"], "unknown preset 'weird' for datadam; known: paper, official, course"),
        (["--method", "random"], "unknown preset 'paper' for random; known: default"),  # QUICK names paper
        (["--ipc", "0"], "ipc must be at least 1"),
        (["--ipc", "100000"], "more than the smallest class holds"),
        (["--lr-images", "-1"], "lr_images must be positive"),
        (["--iterations", "0"], "iterations must be positive"),
        (["--init", "zeros"], "init must be 'real' or 'noise'"),
        (["--tracking-uri", "http://127.0.0.1:9"], "unreachable"),
        (["--eval-protocol", "weekly"], "unknown evaluation protocol 'weekly'; known: full, dc, dc-aug, datadam, datm"),
    ],
)
def test_bad_input_is_one_line(workspace, args, message):
    result = invoke(["run", *QUICK, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_unknown_protocol_is_one_error_line_and_records_nothing(workspace):
    result = invoke(["run", *QUICK, "--eval-protocol", "weekly"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: unknown evaluation protocol 'weekly'; known: full, dc, dc-aug, datadam, datm"
    ]
    assert not (workspace / "mlflow.db").exists()  # checked before a run is recorded


def test_eval_protocol_reaches_the_trial_and_is_logged(workspace, amx_cpu):
    flags = ["--eval-protocol", "datadam", "--eval-batch-size", "32", "--eval-precision", "bf16", "--no-baseline"]
    result = invoke(["run", *QUICK, *flags])
    assert result.exit_code == 0, result.output
    _, run = only_run(workspace)
    params = run.data.params
    assert params["eval_protocol"] == "datadam" and params["eval_batch_size"] == "32"
    assert params["eval_precision"] == "bf16" and params["protocol.precision"] == "bf16"
    assert params["protocol.name"] == "datadam-bs32-3ep-bf16" and params["protocol.batch_size"] == "32"
    assert params["protocol.epochs"] == "3" and params["protocol.use_learned_lr"] == "False"
    assert run.data.metrics["eval_lr"] == pytest.approx(0.01)
    assert "--eval-precision bf16" in run.data.tags[Tag.NOTE]  # the reproduce command keeps it
    assert summary(workspace, run.info.run_id)["eval_protocol"]["name"] == "datadam-bs32-3ep-bf16"
    assert summary(workspace, run.info.run_id)["evaluations"]["ConvNetD3"]["protocol"] == "datadam-bs32-3ep-bf16"


def test_best_checkpoint_is_logged_apart_from_the_final_mean(workspace):
    # log_every is 10 by default: the trial makes every second iteration a reporting one
    result = invoke(["run", *QUICK, "--eval-seeds", "2", "--checkpoint-eval-every", "2", "--no-baseline"])
    assert result.exit_code == 0, result.output
    assert "best checkpoint (ConvNetD3, selected on the test set)" in result.output
    client, run = only_run(workspace)
    history = client.get_metric_history(run.info.run_id, "checkpoint_acc_ConvNetD3_mean")
    assert sorted(m.step for m in history) == [2, 4]  # every 2 iterations and the final set
    final = run.data.metrics["acc_ConvNetD3_mean"]
    best = run.data.metrics["acc_ConvNetD3_best_checkpoint_test_selected"]
    assert {m.step: m.value for m in history}[4] == pytest.approx(final)
    assert best == pytest.approx(max(m.value for m in history)) and best >= final
    assert run.data.metrics["acc_ConvNetD3_best_checkpoint_iteration"] in (2, 4)
    checkpoints = summary(workspace, run.info.run_id)["checkpoints"]
    assert checkpoints["best_mean"] == pytest.approx(best) and len(checkpoints["mean_by_iteration"]) == 2


def test_nan_loss_marks_run_failed_and_keeps_logs(workspace):
    result = invoke(["run", *QUICK, "--iterations", "30", "--lr-images", "1e30", "--init", "noise"])
    assert result.exit_code == 2, result.output
    assert "became" in result.output
    client, run = only_run(workspace)
    assert run.info.status == "FAILED"
    assert "became" in run.data.tags["ddorch.failure"]
    assert not (workspace / "runs" / run.info.run_id / "synthetic.pt").exists()


def test_compare_two_runs_side_by_side(workspace):
    for init in ("real", "noise"):
        assert invoke(["run", *QUICK, "--init", init, "--no-baseline"]).exit_code == 0
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    result = invoke(["compare", *(r.info.run_id[:6] for r in runs), "--output-dir", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "ConvNetD3 accuracy %" in result.output and "noise" in result.output and "real" in result.output
    assert (workspace / "compare.png").stat().st_size > 0


def test_compare_unknown_run_is_one_line(workspace):
    assert invoke(["run", *QUICK, "--no-baseline"]).exit_code == 0
    result = invoke(["compare", "deadbeef", "cafebabe"])
    assert result.exit_code == 2 and "no run 'deadbeef'" in result.output
