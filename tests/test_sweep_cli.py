"""`ddorch sweep` / `ddorch results` from the command line: a tiny digits sweep, and bad input."""

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app

runner = CliRunner()
TINY = [
    "--num-samples",
    "2",
    "--max-concurrent",
    "2",
    "--set",
    "iterations=10",
    "--set",
    "ipc=2",
    "--set",
    "batch_real=8",
    "--device",
    "cpu",
]


def invoke(args):
    return runner.invoke(app, args, env={"COLUMNS": "200"})


def test_sweep_then_results(workspace):
    result = invoke(["sweep", "digits_datadam", *TINY, "--name", "cli-sweep"])
    assert result.exit_code == 0, result.output
    assert "Sweep cli-sweep: 2 trials" in result.output and "MLflow parent run" in result.output
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    assert len(runs) == 3  # parent + 2 children
    again = invoke(["results", "cli-sweep"])
    assert again.exit_code == 0 and "eval accuracy" not in again.output and "accuracy" in again.output
    missing = invoke(["results", "no-such-sweep"])
    assert missing.exit_code == 2 and "no sweep named 'no-such-sweep'" in missing.output


def test_gpus_without_gpu_refused_before_submitting(workspace):
    result = invoke(["sweep", "digits_datadam", *TINY, "--gpus-per-trial", "1"])
    assert result.exit_code == 2 and "--gpus-per-trial 1 but the Ray cluster has 0 GPUs" in result.output


def test_unreachable_address_is_one_line(workspace):
    result = invoke(["sweep", "digits_datadam", *TINY, "--address", "127.0.0.1:1"])
    assert result.exit_code == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in result.output


def test_bad_space_file_is_one_line(workspace):
    (workspace / "space.toml").write_text('[lr_images]\ntype = "uniform"\nlow = 2.0\nhigh = 1.0\n')
    result = invoke(["sweep", "digits_datadam", "--space", str(workspace / "space.toml")])
    assert result.exit_code == 2 and "empty range" in result.output and "Traceback" not in result.output
