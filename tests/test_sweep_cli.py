"""`ddorch sweep` / `ddorch results` from the command line: a tiny digits sweep, and bad input."""

import pytest
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


def sampled(client, sweep: str) -> list[dict]:
    experiment = client.get_experiment_by_name("ddorch").experiment_id
    parent = client.search_runs([experiment], f"tags.`ddorch.sweep` = '{sweep}'")[0]
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return sorted((r.data.params["method_config.lr_images"], r.data.params["method_config.ipc"]) for r in children)


@pytest.mark.slow
def test_sweep_then_results(workspace):
    result = invoke(["sweep", "digits_datadam", *TINY, "--name", "cli-sweep", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "Sweep cli-sweep: 2 trials" in result.output and "MLflow parent run" in result.output
    # The live view's final state, the UI command first, and none of Ray's own chatter.
    assert result.output.startswith(f"follow it in MLflow: ddorch ui --tracking-uri sqlite:///{workspace}")
    assert "Sweep cli-sweep: 0 running, 2 finished, 0 stopped early, 0 failed, 0 waiting of 2 trials" in result.output
    assert "best so far: " in result.output and " on 1 distilled set (" in result.output
    for chatter in ("Token authentication", "Configuration for experiment", "tensorboard", "INFO"):
        assert chatter not in result.output
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddorch").experiment_id])
    assert len(runs) == 3  # parent + 2 children
    # The same search seed samples the same trial settings.
    assert invoke(["sweep", "digits_datadam", *TINY, "--name", "again", "--seed", "7"]).exit_code == 0
    assert sampled(client, "again") == sampled(client, "cli-sweep")
    # The report over the sweep: its searched settings as columns, its plots, its seed to reproduce it.
    assert invoke(["report", "cli-sweep", "--output-dir", str(workspace / "report")]).exit_code == 0
    markdown = (workspace / "report" / "report.md").read_text()
    assert "## Sweep cli-sweep" in markdown and "2 trials: 2 finished." in markdown
    assert "| lr_images | mmd_weight |" in markdown and "_plots_accuracy_vs_lr_images.png" in markdown
    assert "ddorch sweep digits_datadam --name cli-sweep --seed 7" in markdown
    again = invoke(["results", "cli-sweep"])
    assert again.exit_code == 0 and "eval accuracy" not in again.output and "accuracy" in again.output
    assert "distill_sets" in again.output  # what each trial's accuracy rests on: one set
    missing = invoke(["results", "no-such-sweep"])
    assert missing.exit_code == 2 and "no sweep named 'no-such-sweep'" in missing.output


def test_gpus_without_gpu_refused_before_submitting(workspace):
    result = invoke(["sweep", "digits_datadam", *TINY, "--gpus-per-trial", "1"])
    assert result.exit_code == 2 and "--gpus-per-trial 1 but the Ray cluster has 0 GPUs" in result.output


def test_unreachable_address_is_one_line(workspace):
    result = invoke(["sweep", "digits_datadam", *TINY, "--address", "127.0.0.1:1"])
    assert result.exit_code == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in result.output


def test_ray_address_is_joined_as_address_is_and_said_so(workspace):
    from tests.test_server import free_port

    gone = f"127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["sweep", "digits_datadam", *TINY], env={"COLUMNS": "200", "RAY_ADDRESS": gone})
    assert result.exit_code == 2
    joining, error = result.output.splitlines()
    assert joining == f"joining the Ray cluster at {gone} from RAY_ADDRESS"
    assert error.startswith(f"error: cannot reach the Ray cluster at {gone} (from RAY_ADDRESS: ")
    assert error.endswith("or unset RAY_ADDRESS for a local instance")
    # --address wins over it, as over any default.
    flag = runner.invoke(app, ["sweep", "digits_datadam", *TINY, "--address", "127.0.0.1:1"], env={"RAY_ADDRESS": gone})
    assert flag.exit_code == 2 and flag.output.startswith(
        "error: cannot reach the Ray cluster at 127.0.0.1:1 (from --address: "
    )
    assert not (workspace / "mlflow.db").exists()


def test_bad_space_file_is_one_line(workspace):
    (workspace / "space.toml").write_text('[lr_images]\ntype = "uniform"\nlow = 2.0\nhigh = 1.0\n')
    result = invoke(["sweep", "digits_datadam", "--space", str(workspace / "space.toml")])
    assert result.exit_code == 2 and "empty range" in result.output and "Traceback" not in result.output
