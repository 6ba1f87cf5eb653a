"""Bad input over the commands: one `error:` line (or typer's usage error), exit 2, no MLflow run."""

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app

RUN = ["run", "--dataset", "digits", "--iterations", "2", "--eval-epochs", "1", "--eval-seeds", "1", "--device", "cpu"]


@pytest.mark.parametrize(
    "args, message",
    [
        ([*RUN, "--batch-real", "0"], "batch_real and updates_per_network must be at least 1"),
        ([*RUN, "--lambda", "-1"], "lambda (mmd_weight) must be >= 0"),
        ([*RUN, "--set", "ipc=abc"], "ipc must be an integer, got 'abc'"),
        ([*RUN, "--set", "ipc=[1,2]"], "ipc must be an integer, got [1, 2]"),
        ([*RUN, "--set", "ipc={a=1}"], "ipc must be an integer"),
        ([*RUN, "--set", "bf16=1"], "bf16 must be true or false"),
        ([*RUN, "--ipc", "0"], "ipc must be at least 1"),
        (
            [*RUN, "--distill-seeds", "0"],
            "error: --distill-seeds must be at least 1 (the number of distilled sets), got 0",
        ),
        ([*RUN, "--distill-seeds", "-2"], "error: --distill-seeds must be at least 1"),
        (["results", "a'b"], "error: no sweep named"),
        (["sweep", "digits_datadam", "--resume", "--name", "never_ran"], "error: no sweep 'never_ran' to resume"),
        (["results", "x", "--tracking-uri", "http://127.0.0.1:9"], "unreachable"),
        (["baseline", "--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["ui", "--port", "-1"], "Invalid value for '--port'"),
        ([*RUN, "--tracking-uri", "bogus://x"], "error: tracking URI 'bogus://x' is not a store MLflow opens"),
        ([*RUN, "--output-dir", "/proc/x"], "Invalid value for '--output-dir'"),
        (["report", "0123abcd", "--output-dir", "/proc/x"], "Invalid value for '--output-dir'"),
        (["sweep", "digits_datadam", "--device", "tpu"], "Invalid value for '--device'"),
        (
            ["lossless", "--dataset", "digits", "--max-ipc", "50", "--address", "127.0.0.1:9"],
            "error: cannot reach the Ray cluster",
        ),
        (["lossless", "--dataset", "digits"], "less the validation part): pass --max-ipc 98 or less"),
        # Checked before the run exists (issue 34: each of these once left a FAILED run behind).
        ([*RUN, "--eval-models", "ConvNetD3,NoSuchNet"], "error: unknown model 'NoSuchNet'"),
        ([*RUN, "--dataset", "mnist", "--data-root", "/nonexistent/dir"], "error: MNIST not found"),
        ([*RUN, "--image-size", "-5"], "error: --image-size must be a positive number of pixels, got -5"),
        (["sweep", "mnist_datadam", "--data-root", "/nonexistent/dir"], "error: MNIST not found"),
        (["sweep", "digits_datadam", "--set", "model=NoSuchNet"], "error: unknown model 'NoSuchNet'"),
        (["sweep", "digits_datadam", "--set", "ipc=5000"], "ipc 5000 is more than the smallest class holds"),
        (["lossless", "--dataset", "mnist", "--data-root", "/nonexistent/dir"], "error: MNIST not found"),
        (["lossless", "--dataset", "digits", "--model", "NoSuchNet"], "error: unknown model 'NoSuchNet'"),
        (
            ["lossless", "--dataset", "digits", "--method", "datadam,random", "--preset", "paper"],
            "error: unknown preset 'paper' for random; known: default",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_is_recorded(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", "DDORCH_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert no_runs(tmp_path)  # not even a FAILED one


def no_runs(folder) -> bool:
    from mlflow.tracking import MlflowClient

    if not (folder / "mlflow.db").exists():
        return True
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    return not any(client.search_runs([e.experiment_id]) for e in client.search_experiments())


@pytest.mark.parametrize(
    "space, message",
    [
        ("", "the search space is empty"),
        ('[ipc]\ntype = "choice"\nvalues = [-1, 5]\n', "ipc must be at least 1, got -1"),
        ('[ipc]\ntype = "choice"\nvalues = ["ten"]\n', "ipc must be an integer, got 'ten'"),
        ('[lr_images]\ntype = "uniform"\nlow = -1.0\nhigh = 1.0\n', "lr_images must be positive"),
    ],
)
def test_bad_search_spaces_fail_before_the_sweep(tmp_path, monkeypatch, space, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.toml").write_text(space)
    result = CliRunner().invoke(
        app, ["sweep", "digits_datadam", "--space", str(tmp_path / "space.toml")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert no_runs(tmp_path)
