"""The `ddorch` CLI: results on the embedded data set, one-line errors for bad input."""

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app

runner = CliRunner()


def invoke(args, tmp_path):
    env = {"COLUMNS": "200", "DDORCH_CACHE_DIR": str(tmp_path / "cache"), "DDORCH_DATA_ROOT": str(tmp_path / "data")}
    return runner.invoke(app, args, env=env)


@pytest.mark.slow
def test_baseline_on_digits_prints_accuracy_and_cache(tmp_path):
    result = invoke(["baseline", "--dataset", "digits", "--model", "ConvNetD2", "--device", "cpu"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "MFLOPs per image" in result.output
    assert list((tmp_path / "cache" / "baselines").glob("digits-8px_ConvNetD2-*_full-bs32_seed0.json"))
    again = invoke(["baseline", "--dataset", "digits", "--model", "ConvNetD2", "--device", "cpu"], tmp_path)
    assert again.exit_code == 0 and "yes" in again.output  # served from the cache


def test_models_lists_registry(tmp_path):
    result = invoke(["models"], tmp_path)
    assert result.exit_code == 0, result.output
    for name in ("MLP", "ConvNetD3", "LeNet", "AlexNet", "VGG11", "ResNet18"):
        assert name in result.output


def test_unknown_dataset_is_one_line(tmp_path):
    result = invoke(["baseline", "--dataset", "cifar99"], tmp_path)
    assert result.exit_code == 2
    assert "error: unknown data set 'cifar99'" in result.output
    assert "Traceback" not in result.output


def test_unknown_model_is_one_line(tmp_path):
    result = invoke(["baseline", "--dataset", "digits", "--model", "ResNet999"], tmp_path)
    assert result.exit_code == 2
    assert "error: unknown model 'ResNet999'; known models:" in result.output


def test_missing_mnist_files_is_one_line(tmp_path):
    result = invoke(["baseline", "--dataset", "mnist"], tmp_path)
    assert result.exit_code == 2
    assert result.output.startswith("error:") and "train-images-idx3-ubyte" in result.output
    assert "Traceback" not in result.output


def test_unknown_device(tmp_path):
    result = invoke(["baseline", "--device", "tpu"], tmp_path)
    assert result.exit_code == 2 and "unknown device 'tpu'" in result.output


def test_version_and_completion_options():
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"ddorch {version('ddorch')}"
    assert "--install-completion" in CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output


def test_experiments_open_in_mlflows_model_training_view(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.store.tracking import Tracker

    tracker = Tracker.start(f"sqlite:///{tmp_path / 'mlflow.db'}", "fresh")
    tags = MlflowClient(tracker.tracking_uri).get_experiment(tracker.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
