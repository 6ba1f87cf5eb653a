"""Runs anywhere (a preset's resources fitted to the cluster) and `--dry-run` plans read back."""

import re

import pytest
from typer.testing import CliRunner

from ddcore.errors import DDError
from orchestrator.cli import app
from orchestrator.engine import cluster
from orchestrator.engine.cluster import check_resources, preset_resources
from orchestrator.engine.plan import Calibration, asha_shares, lossless_ipcs

CPU_ONLY = {"CPU": 2.0, "GPU": 0.0}
WITH_GPUS = {"CPU": 16.0, "GPU": 2.0}
GPU_PRESET = """dataset = "digits"
method = "datadam"
space = "datadam_quick.toml"
num_samples = 3
max_concurrent = 4
cpus_per_trial = 4
gpus_per_trial = 0.5
eval_models = ["ConvNetD1"]
eval_seeds = 1
eval_epochs = 3
report_every = 5
[fixed]
iterations = 10
model = "ConvNetD1"
batch_real = 8
"""


def invoke(args):
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


@pytest.fixture
def cpu_only(monkeypatch):
    """The cluster as a CPU-only machine, whatever this one holds."""
    monkeypatch.setattr(cluster, "cluster_resources", lambda address=None: dict(CPU_ONLY))


@pytest.fixture
def gpu_preset(workspace, monkeypatch):
    (workspace / "presets" / "experiments").mkdir(parents=True)
    (workspace / "presets" / "experiments" / "gpu_digits.toml").write_text(GPU_PRESET)
    monkeypatch.setenv("DDORCH_PRESETS", str(workspace / "presets"))
    return "gpu_digits"


def plan_value(output: str, label: str) -> str:
    match = re.search(rf"^{label}: (.*)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_a_presets_gpu_request_applies_where_gpus_exist_and_runs_on_cpu_elsewhere():
    assert preset_resources(4, 0.5, None, None, WITH_GPUS) == (4, 0.5, None)
    cpus, gpus, note = preset_resources(4, 0.5, None, None, CPU_ONLY)
    assert (cpus, gpus) == (2, 0)
    assert "trials run on CPU with 2 CPUs each" in note and "\n" not in note


def test_an_explicit_gpu_request_is_kept_and_refused_without_gpus():
    cpus, gpus, note = preset_resources(4, 0.5, 1, 1, CPU_ONLY)
    assert (cpus, gpus, note) == (1, 1, None)
    with pytest.raises(DDError, match="--gpus-per-trial 1 but the Ray cluster has 0 GPUs"):
        check_resources(cpus, gpus, CPU_ONLY)


def test_asha_shares_follow_the_rungs():
    # rungs at 1 and 2 of 4 iterations: everyone runs 1, half run the next 1, a quarter the last 2
    assert asha_shares(1, 2, 4) == (0.5, 0.25)
    assert asha_shares(10, 3, 10) == (1.0, 1.0)  # grace period = max_t: nothing stopped


def test_lossless_grid_and_worst_case_bisection():
    assert lossless_ipcs(100) == ([1, 2, 5, 10, 20, 50, 100], 6)
    assert lossless_ipcs(1) == ([1], 0)


def test_trial_seconds_scale_with_iterations_images_and_epochs():
    from ddcore.evaluate import EvalSpec
    from orchestrator.engine.resolve import Layers, resolve_trial

    flags = Layers(flags={"iterations": 100, "batch_real": 8})
    trial = resolve_trial("datadam", "digits", "paper", 2, EvalSpec(("ConvNetD1",), seeds=3, epochs=50), flags)
    calibration = Calibration({"datadam": 0.01}, train_per_image=0.001, test_seconds=2.0, threads=1)
    iteration = 0.01 * 10 * (2 + 8)  # per image x classes x (synthetic + real batch)
    evaluation = 50 * 2 * 10 * 0.001 + 2.0
    assert calibration.trial_seconds(trial, 10, quick_evaluations=1) == pytest.approx(100 * iteration + 4 * evaluation)


def test_sweep_dry_run_on_a_cpu_machine_runs_on_cpu_and_starts_nothing(gpu_preset, cpu_only, workspace):
    result = invoke(["sweep", gpu_preset, "--dry-run", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "trials run on CPU with 2 CPUs each" in lines[0]
    assert plan_value(result.output, "trials") == "3"
    assert plan_value(result.output, "resources").startswith("2 CPU and 0 GPU per trial, 1 at a time")
    assert "ipc choice [5, 10]" in plan_value(result.output, "searched")
    assert re.match(
        r"at most [\d.]+ (s|min|h|days) \(every trial to the end\), about ",
        plan_value(result.output, "estimated wall time"),
    )
    assert "more than a day" not in result.output
    assert not (workspace / "mlflow.db").exists() and not (workspace / "ray_results").exists()
    import ray

    assert not ray.is_initialized()


def test_sweep_dry_run_with_explicit_gpus_fails_in_one_line(gpu_preset, cpu_only):
    result = invoke(["sweep", gpu_preset, "--dry-run", "--gpus-per-trial", "0.5"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --gpus-per-trial 0.5 but the Ray cluster has 0 GPUs"


def test_lossless_dry_run_lists_the_ipcs_and_says_when_it_takes_more_than_a_day(workspace, cpu_only):
    args = ["lossless", "--dataset", "digits", "--model", "ConvNetD1", "--max-ipc", "20", "--eval-epochs", "3"]
    result = invoke([*args, "--iterations", "5", "--device", "cpu", "--target-accuracy", "95", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert plan_value(result.output, "IPCs to try").startswith("1, 2, 5, 10, 20 (up to the first lossless one)")
    assert plan_value(result.output, "resources").startswith("1 CPU and 0 GPU per trial, 2 at a time")
    assert "more than a day" not in result.output and not (workspace / "mlflow.db").exists()
    # a hundred million iterations: the same plan, now over a day, with the way out
    longer = invoke([*args, "--iterations", "100000000", "--device", "cpu", "--target-accuracy", "95", "--dry-run"])
    assert longer.exit_code == 0, longer.output
    assert "days" in plan_value(longer.output, "estimated wall time")
    assert "--budget-hours" in plan_value(longer.output, "more than a day")


def test_calibration_times_the_precision_that_will_run(monkeypatch):
    """A bf16 trial's evaluation is calibrated under bf16 autocast, its test pass included; fp32 stays fp32."""
    import torch
    from torch import nn

    import ddcore.models
    from ddcore.data import load_dataset
    from ddcore.evaluate import EvalSpec
    from orchestrator.engine.plan import _evaluation_rates
    from orchestrator.engine.resolve import Layers, resolve_trial

    seen: list[tuple[bool, bool]] = []  # (training, under bf16 autocast) of every forward

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            seen.append((self.training, torch.is_autocast_enabled("cpu")))
            return self.linear(x.flatten(1))

    monkeypatch.setattr(ddcore.models, "get_model", lambda *args: Probe())
    data = load_dataset("digits")
    for precision in ("fp32", "bf16"):
        seen.clear()
        evaluation = EvalSpec(precision=precision)
        _evaluation_rates(
            data, resolve_trial("datadam", "digits", "paper", 1, evaluation, Layers(flags={"device": "cpu"}))
        )
        assert {training for training, _ in seen} == {True, False}
        assert {autocast for _, autocast in seen} == {precision == "bf16"}
